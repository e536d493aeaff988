"""Fingerprint profiling against a full profile of the same configurations, side by side in one run.

The full model is the embedded tiny Llama built `--layers` deep (8 by
default: same width, heads, vocabulary and tokenizer as the 2-layer default).
The configurations are those of a sweep spec (by default
profiling_jobs/specs/fingerprint_cpu.yaml: batch 8, standard, LISO 1000/50
and SILO 50/300, SLO 10 s), with its `embedded` model replaced by the deep
one. Both routes run the sweep's own trial code in this process, one engine
at a time:

- full sweep: one engine per configuration, the spec's search per query type;
- fingerprint route: the 1- and 2-layer fingerprints' engines per
  configuration, the ladder per query type, then the estimate
  (profiling_jobs/fingerprint.py does the same as a Ray job).

Printed: the engine-seconds of each route (engine alive: start-up plus
trials), split into start-up and search, the load points measured, and per
configuration the full and the estimated MSRR, TTFT and TPOT with the MSRR
error. Targets: the fingerprint route >= 4x cheaper in engine-seconds, MSRR
within 10%.

    .venv/bin/python benchmarks/fingerprint_profiling.py [--layers 8] [--spec SPEC]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from oasis_ray.profiling.fingerprint_estimate import split_by_layers
from oasis_ray.profiling.fingerprint_plan import fingerprint_spec, pair_trials
from oasis_ray.profiling.hct import HctRow
from oasis_ray.profiling.sweep_plan import expand_trials, group_by_engine
from oasis_ray.profiling.sweep_spec import SweepSpec, load_spec
from oasis_ray.profiling.trial_outcome import TrialOutcome
from profiling_jobs.fingerprint import embedded_variant, estimate_all, fingerprinted
from profiling_jobs.trial_runner import TrialRunner

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "profiling_jobs" / "specs" / "fingerprint_cpu.yaml"
TARGET_COST_RATIO = 4.0
TARGET_MSRR_ERROR = 0.10


@dataclass
class RouteCost:
    """What one route spent: engine-seconds (alive), of which start-up, and load points."""

    engines: int = 0
    alive_s: float = 0.0
    start_s: float = 0.0
    load_points: int = 0
    outcomes: dict[str, TrialOutcome] = field(default_factory=dict)

    @property
    def search_s(self) -> float:
        return self.alive_s - self.start_s


def run_route(spec: SweepSpec, run_id: str) -> RouteCost:
    """Every trial of `spec`, engine by engine, timed from engine start to the end of its last trial."""
    cost = RouteCost()
    for config, trials in group_by_engine(expand_trials(spec)):
        print(f"[benchmark] starting engine: {config.label()}", flush=True)
        started = time.perf_counter()
        runner = TrialRunner(config)
        try:
            cost.start_s += runner.start_engine()
            for trial in trials:
                cost.outcomes[trial.trial_id] = runner.run_trial(trial, run_id)
        finally:
            cost.alive_s += time.perf_counter() - started
            runner.shutdown()
        cost.engines += 1
    cost.load_points = sum(o.row.load_points for o in cost.outcomes.values())
    return cost


def _relative_error(estimate: float, truth: float) -> float:
    """Relative to the full profile; an MSRR of 0 (SLO never met) is matched only by 0."""
    if truth == 0:
        return 0.0 if estimate == 0 else float("inf")
    return abs(estimate - truth) / truth


def _show_cost(name: str, cost: RouteCost) -> str:
    return (
        f"{name:>18}: {cost.engines} engines, {cost.alive_s:7.1f} engine-s "
        f"(start-up {cost.start_s:6.1f} s, search {cost.search_s:6.1f} s), {cost.load_points} load points"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8, help="hidden layers of the full model (default 8)")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="sweep spec whose configurations to profile")
    args = parser.parse_args()

    spec = embedded_variant(load_spec(args.spec), args.layers)
    models = [fingerprinted(model, f"models[{i}]") for i, model in enumerate(spec.models)]
    fp_spec = fingerprint_spec(spec, models)
    os.environ.update(spec.engine_env_vars)
    run_id = uuid.uuid4().hex[:12]

    fingerprints = run_route(fp_spec, run_id)
    full = run_route(spec, run_id)
    plan = pair_trials(spec, fp_spec, models)
    estimates = {o.row.trial_id: o.row for o in estimate_all(plan, fingerprints.outcomes, run_id)}

    print(
        f"\nFingerprint profiling of {spec.models[0].model_id} ({args.layers} hidden layers) from 1- and 2-layer "
        f"fingerprints; spec '{args.spec.name}', SLO P95 e2e <= {spec.slo.p95_e2e_s:g} s\n"
    )
    print(
        f"{'configuration':<40} {'MSRR req/s full':>15} {'est':>6} {'error':>6}   "
        f"{'TTFT P50 ms full':>16} {'est':>6}   {'TPOT P50 ms full':>16} {'est':>6}   {'layer share':>11}"
    )
    errors = []
    for item in plan:
        measured = full.outcomes[item.trial.trial_id].row
        estimated = estimates[item.trial.trial_id]
        label = _label(measured)
        if measured.status != "ok" or estimated.status != "ok":
            print(f"{label:<40} not compared: full {measured.error or 'ok'}; estimate {estimated.error or 'ok'}")
            continue
        error = _relative_error(estimated.msrr_req_s, measured.msrr_req_s)
        errors.append(error)
        share = _layer_share({n: fingerprints.outcomes[t.trial_id] for n, t in item.fingerprints.items()}, item.layers)
        print(
            f"{label:<40} {measured.msrr_req_s:15.2f} {estimated.msrr_req_s:6.2f} {error:6.1%}   "
            f"{measured.ttft_p50_s * 1000:16.1f} {estimated.ttft_p50_s * 1000:6.1f}   "
            f"{measured.tpot_p50_s * 1000:16.2f} {estimated.tpot_p50_s * 1000:6.2f}   {share:11.0%}"
        )
    print(
        f"(layer share: of a {args.layers}-layer request's time at concurrency 1, the part its hidden layers take, "
        "from the fingerprints' split)"
    )
    print()
    print(_show_cost("full sweep", full))
    print(_show_cost("fingerprint route", fingerprints))
    ratio = full.alive_s / fingerprints.alive_s
    print(
        f"full/fingerprint: {ratio:.2f}x engine-seconds ({full.start_s / fingerprints.start_s:.2f}x start-up, "
        f"{full.search_s / fingerprints.search_s:.2f}x search), "
        f"{full.load_points / fingerprints.load_points:.2f}x load points"
    )
    worst = max(errors, default=float("inf"))
    if errors:
        print(f"MSRR error: median {sorted(errors)[len(errors) // 2]:.1%}, worst {worst:.1%} over {len(errors)} rows")
    print(
        f"target >= {TARGET_COST_RATIO:g}x cheaper: {'met' if ratio >= TARGET_COST_RATIO else 'MISSED'}; "
        f"MSRR within {TARGET_MSRR_ERROR:.0%}: {'met' if worst <= TARGET_MSRR_ERROR else 'MISSED'}"
    )


def _layer_share(fingerprints: dict[int, TrialOutcome], layers: int) -> float:
    """How much of the deep model's time at concurrency 1 the hidden layers take: what fingerprints can save."""
    at_one = {n: next(p for p in fp.load_points if p.concurrency == 1) for n, fp in fingerprints.items()}
    split = split_by_layers({n: p.concurrency / p.requests_per_s for n, p in at_one.items()})
    return layers * split.per_layer_s / split.at(layers)


def _label(row: HctRow) -> str:
    lengths = f"{row.input_tokens}/{row.output_tokens}"
    return f"batch {row.max_num_seqs} {row.variant.value} {row.query_type.value}({lengths})"


if __name__ == "__main__":
    main()
