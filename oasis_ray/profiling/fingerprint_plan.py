"""The sweep that profiles a spec's fingerprints, and which fingerprint trials stand for which of the spec's trials.

A fingerprint trial is a trial like any other: the fingerprint sweep is the
spec itself with each model replaced by its fingerprints, so every engine
configuration (hardware, clock, batch size, variant) and every query type's
lengths, the SLO and the load settings stay as they are. Two things change:
the engine loads dummy weights (a fingerprint directory holds none), and the
search is the `ladder`, which measures the load curve the estimate needs
rather than the fingerprint's own MSRR.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from oasis_ray.profiling.fingerprint import fingerprint_model_id
from oasis_ray.profiling.sweep_plan import Trial, expand_trials
from oasis_ray.profiling.sweep_spec import SweepSpec, parse_spec


class FingerprintedModel(BaseModel):
    """A spec model, its depth and its fingerprints (hidden layers -> fingerprint directory)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    layers: int
    fingerprints: dict[int, str]


class TrialEstimate(BaseModel):
    """A spec trial to estimate, the fingerprint trials (by hidden layers) it is estimated from, and its depth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trial: Trial
    layers: int
    fingerprints: dict[int, Trial]


def fingerprint_spec(spec: SweepSpec, models: Sequence[FingerprintedModel]) -> SweepSpec:
    """The sweep of `spec`'s fingerprints; validated like any spec."""
    by_id = {model.model_id: model for model in models}
    missing = [m.model_id for m in spec.models if m.model_id not in by_id]
    if missing:
        raise ValueError(f"models: no fingerprints for {missing}")
    raw = spec.model_dump(mode="json")
    raw["name"] = f"{spec.name}-fingerprints"
    raw["models"] = [
        {"model_id": fingerprint_model_id(m.model_id, n), "source": path}
        for m in spec.models
        for n, path in sorted(by_id[m.model_id].fingerprints.items())
    ]
    raw["engine"] = {**spec.engine, "load_format": "dummy"}
    raw["search"] = {**raw["search"], "mode": "ladder"}
    return parse_spec(raw)


def pair_trials(spec: SweepSpec, fp_spec: SweepSpec, models: Sequence[FingerprintedModel]) -> list[TrialEstimate]:
    """Every trial of `spec`, in its order, with the fingerprint trials of the same configuration and query."""
    owner = {
        fingerprint_model_id(m.model_id, n): (m.model_id, n) for m in models for n in m.fingerprints
    }
    depth = {m.model_id: m.layers for m in models}
    found: dict[tuple[str, ...], dict[int, Trial]] = {}
    for fp_trial in expand_trials(fp_spec):
        model_id, layers = owner[fp_trial.engine_config.model.model_id]
        found.setdefault(_key(fp_trial, model_id), {})[layers] = fp_trial
    return [
        TrialEstimate(
            trial=trial,
            layers=depth[trial.engine_config.model.model_id],
            fingerprints=found[_key(trial, trial.engine_config.model.model_id)],
        )
        for trial in expand_trials(spec)
    ]


def _key(trial: Trial, model_id: str) -> tuple[str, ...]:
    """What a trial and its fingerprints' trials share: all but the model's source and engine weights."""
    config = trial.engine_config
    return (
        model_id,
        config.hardware.model_dump_json(),
        repr(config.clock_mhz),
        str(config.max_num_seqs),
        config.variant.value,
        trial.query.model_dump_json(),
    )
