"""Estimate a sweep's cost table from fingerprints of its models instead of the models themselves (iServe §5).

    oasis profile profiling_jobs/specs/fingerprint_cpu.yaml --fingerprint --embedded-layers 8 --out /tmp/hct-fp

For each model of the spec (a local model directory; `embedded` with
`--embedded-layers N` stands in the embedded model built N layers deep, for
a smoke run on CPU) it builds fingerprints with 1 and 2 hidden layers in
the oasis-ray cache, profiles them with the sweep's own machinery (the same
engine configurations and query lengths, dummy weights, the ladder search;
trials saved under OUT/fingerprints/, resumable like any sweep), then writes
OUT/hct.parquet and OUT/hct.csv: one row per trial of the spec, estimated
from its fingerprints' trials and marked `provenance = derived`, with the
method and the fingerprint trials named in `provenance_note`. A row that
cannot be estimated is a failed row carrying the reason.

Exit status: 0 when every row was estimated; 1 when some fingerprint trial
or estimate failed (the table is still written); 2 for a bad spec or a model
a fingerprint cannot be built from.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from oasis_ray.config import EMBEDDED_SOURCE
from oasis_ray.embedded_model import build_embedded_model
from oasis_ray.profiling.fingerprint import FINGERPRINT_LAYERS, FingerprintError, build_fingerprint, layer_count
from oasis_ray.profiling.fingerprint_estimate import estimate_outcome
from oasis_ray.profiling.fingerprint_plan import FingerprintedModel, TrialEstimate, fingerprint_spec, pair_trials
from oasis_ray.profiling.hct import write_hct
from oasis_ray.profiling.sweep_spec import SpecError, SweepModel, SweepSpec, load_spec, parse_spec
from oasis_ray.profiling.trial_outcome import TrialOutcome, merge_outcomes
from oasis_ray.profiling.trial_store import TrialStore
from profiling_jobs.sweep import EXIT_BAD_SPEC, EXIT_TRIALS_FAILED, run_sweep, software_versions

FINGERPRINTS_DIR = "fingerprints"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="the sweep spec to estimate (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="output directory; reuse it to resume")
    parser.add_argument(
        "--embedded-layers",
        type=int,
        default=None,
        help="estimate the embedded model built this many hidden layers deep wherever the spec names 'embedded'",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.embedded_layers is not None:
            spec = embedded_variant(spec, args.embedded_layers)
        models = [fingerprinted(model, f"models[{i}]") for i, model in enumerate(spec.models)]
        fp_spec = fingerprint_spec(spec, models)
    except (SpecError, FingerprintError) as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_SPEC
    for model in models:
        depths = ", ".join(f"{n} layer(s): {path}" for n, path in sorted(model.fingerprints.items()))
        print(f"[fingerprint] {model.model_id} has {model.layers} hidden layers; fingerprints {depths}", flush=True)
    run_sweep(fp_spec, args.out / FINGERPRINTS_DIR)
    plan = pair_trials(spec, fp_spec, models)
    fp_ids = [t.trial_id for item in plan for t in item.fingerprints.values()]
    measured, _ = TrialStore(args.out / FINGERPRINTS_DIR).load(fp_ids)
    outcomes = estimate_all(plan, measured, run_id=uuid.uuid4().hex[:12])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep_spec.json").write_text(spec.model_dump_json(indent=2) + "\n")
    table = merge_outcomes(spec, outcomes, software_versions())
    path = write_hct(table, args.out)
    failed = table.metadata.failed_trials
    print(
        f"[fingerprint] wrote {path} and {path.with_suffix('.csv').name}: {len(table.rows)} estimated rows, "
        f"{failed} failed"
    )
    return EXIT_TRIALS_FAILED if failed else 0


def embedded_variant(spec: SweepSpec, layers: int) -> SweepSpec:
    """The spec with each `embedded` model replaced by the embedded model built `layers` deep (its own model id)."""
    if layers < 1:
        raise SpecError(f"--embedded-layers: {layers} must be at least 1")
    raw = spec.model_dump(mode="json")
    raw["name"] = f"{spec.name}-{layers}L"
    raw["models"] = [
        {"model_id": f"{m.model_id}-{layers}L", "source": str(build_embedded_model(num_hidden_layers=layers))}
        if m.source == EMBEDDED_SOURCE
        else m.model_dump()
        for m in spec.models
    ]
    return parse_spec(raw)


def fingerprinted(model: SweepModel, where: str) -> FingerprintedModel:
    """Build (once) the model's fingerprints; `where` names the spec field in errors."""
    source_dir = build_embedded_model() if model.source == EMBEDDED_SOURCE else Path(model.source)
    config_path = source_dir / "config.json"
    if not config_path.is_file():
        raise FingerprintError(
            f"{where}.source: {model.source!r} is not a local model directory with a config.json "
            "(fingerprints are built from the config; download the model's config and tokenizer files first)"
        )
    try:
        layers = layer_count(json.loads(config_path.read_text()))
        if layers <= max(FINGERPRINT_LAYERS):
            other = "; or pass --embedded-layers" if model.source == EMBEDDED_SOURCE else ""
            raise FingerprintError(
                f"{layers} hidden layers: nothing to extrapolate to from fingerprints with {list(FINGERPRINT_LAYERS)} "
                f"(profile it with profiling_jobs.sweep{other})"
            )
        paths = {n: str(build_fingerprint(source_dir, n)) for n in FINGERPRINT_LAYERS}
    except (FingerprintError, json.JSONDecodeError) as error:
        raise FingerprintError(f"{where}.source: {error}") from None
    return FingerprintedModel(model_id=model.model_id, layers=layers, fingerprints=paths)


def estimate_all(plan: list[TrialEstimate], measured: Mapping[str, TrialOutcome], run_id: str) -> list[TrialOutcome]:
    """One estimated (or failed) outcome per trial of the plan, from the fingerprint trials measured (by id)."""
    outcomes = []
    for item in plan:
        found = {n: measured[t.trial_id] for n, t in item.fingerprints.items() if t.trial_id in measured}
        outcome = estimate_outcome(item.trial, found, item.layers, run_id)
        outcomes.append(outcome)
        print(f"[fingerprint] {item.trial.label()}: {_summary(outcome)}", flush=True)
    return outcomes


def _summary(outcome: TrialOutcome) -> str:
    row = outcome.row
    if row.status != "ok":
        return f"not estimated: {row.error}"
    return (
        f"estimated MSRR {row.msrr_req_s:.2f} req/s at concurrency {row.msrr_concurrency}, "
        f"TTFT P50 {row.ttft_p50_s * 1000:.1f} ms, TPOT P50 {row.tpot_p50_s * 1000:.2f} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
