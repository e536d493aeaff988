"""A validated sweep spec turned into the trials to run, each with a stable identity.

One trial is one HCT row: a query type profiled on one engine configuration
(model, hardware, clock, batch size, variant). Trials that share an engine
configuration are grouped so the engine, the expensive part, starts once for
all of their query types.

A trial's id is a hash of everything that shapes its measurement, so re-running
a sweep can recognise finished trials by id alone: an unchanged trial keeps its
id even when the spec around it grows, and any change that would alter its
numbers (SLO, load, engine arguments) gives it a new one.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from pydantic import BaseModel, ConfigDict

from oasis_ray.config import EngineSettings
from oasis_ray.profiling.sweep_spec import (
    GpuTarget,
    HardwareTarget,
    LoadSettings,
    MigTarget,
    QueryLengths,
    SearchSettings,
    SloSpec,
    SweepModel,
    SweepSpec,
    Variant,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineConfig(_Frozen):
    """Everything one engine start depends on."""

    model: SweepModel
    hardware: HardwareTarget
    clock_mhz: int | None
    max_num_seqs: int
    variant: Variant
    engine: EngineSettings
    env_vars: dict[str, str]

    def label(self) -> str:
        clock = f" @{self.clock_mhz}MHz" if self.clock_mhz is not None else ""
        return (
            f"{self.model.model_id} | {self.hardware.label()}{clock} | batch {self.max_num_seqs} | {self.variant.value}"
        )


class Trial(_Frozen):
    trial_id: str
    engine_config: EngineConfig
    query: QueryLengths
    slo: SloSpec
    load: LoadSettings
    search: SearchSettings
    timeout_s: float

    def label(self) -> str:
        return f"{self.engine_config.label()} | {self.query.label()}"


def expand_trials(spec: SweepSpec) -> list[Trial]:
    """Trials in a stable order: by model, hardware, knob setting, then query type."""
    trials = []
    for model in spec.models:
        for hardware in spec.hardware:
            for clock, batch, variant in _knob_settings(spec, hardware):
                config = EngineConfig(
                    model=model,
                    hardware=hardware,
                    clock_mhz=clock,
                    max_num_seqs=batch,
                    variant=variant,
                    engine=spec.engine_settings(batch, variant),
                    env_vars=spec.engine_env_vars,
                )
                for query in spec.query_types:
                    fields: dict[str, Any] = {
                        "engine_config": config,
                        "query": query,
                        "slo": spec.slo,
                        "load": spec.load,
                        "search": spec.search,
                    }
                    trials.append(Trial(trial_id=_trial_id(fields), timeout_s=spec.trial_timeout_s, **fields))
    return trials


def _knob_settings(spec: SweepSpec, hardware: HardwareTarget) -> list[tuple[int | None, int, Variant]]:
    """(clock, batch, variant) settings; one-at-a-time varies each knob alone from the first values."""
    clocks: list[int | None] = list(hardware.clocks_mhz) if isinstance(hardware, GpuTarget) else []
    clocks = clocks or [None]
    if spec.sweep_mode == "grid":
        return list(itertools.product(clocks, spec.max_num_seqs, spec.variants))
    base_clock, base_batch, base_variant = clocks[0], spec.max_num_seqs[0], spec.variants[0]
    return [
        (base_clock, base_batch, base_variant),
        *((clock, base_batch, base_variant) for clock in clocks[1:]),
        *((base_clock, batch, base_variant) for batch in spec.max_num_seqs[1:]),
        *((base_clock, base_batch, variant) for variant in spec.variants[1:]),
    ]


def _trial_id(fields: dict[str, Any]) -> str:
    """The timeout is left out: it decides whether a trial finishes, not what it measures."""
    canonical = "|".join(
        f"{name}={value.model_dump_json() if isinstance(value, BaseModel) else value!r}"
        for name, value in sorted(fields.items())
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def group_by_engine(trials: list[Trial]) -> list[tuple[EngineConfig, list[Trial]]]:
    """Trials sharing an engine configuration, in first-seen order."""
    groups: dict[str, tuple[EngineConfig, list[Trial]]] = {}
    for trial in trials:
        config = trial.engine_config
        groups.setdefault(config.model_dump_json(), (config, []))[1].append(trial)
    return list(groups.values())


def trial_resources(hardware: HardwareTarget) -> dict[str, Any]:
    """Ray actor options asking for exactly the device the trial profiles, and nothing else.

    A trial holds its device for its whole engine lifetime, so two trials
    never share a GPU or a MIG slice and their measurements cannot disturb
    each other; on CPU, Ray packs trials by `num_cpus`.
    """
    if isinstance(hardware, GpuTarget):
        options: dict[str, Any] = {"num_cpus": hardware.num_cpus, "num_gpus": 1}
        if hardware.accelerator_type:
            options["accelerator_type"] = hardware.accelerator_type
        return options
    if isinstance(hardware, MigTarget):
        return {"num_cpus": hardware.num_cpus, "num_gpus": 1, "resources": {f"MIG-{hardware.mig_profile}": 1}}
    return {"num_cpus": hardware.num_cpus, "num_gpus": 0}
