"""A small analytic GPU cost model for LLM serving, fitted to published figures; it derives the paper table's rows.

See the README section "The GPU model" and `python -m oasis_ray.gpu_model --help`.
"""
