"""Ray job entry points for profiling sweeps that produce the hardware cost table.

`sweep` runs a sweep spec on a Ray cluster and writes the table; `report`
draws it. `trial_runner` and `engine` run inside each trial's Ray actor, next
to the device being profiled. Every decision (spec validation, trial plan,
MSRR search, measurement, table schema) lives in `oasis_ray`, so the modules
here only adapt it to Ray and vLLM.
"""
