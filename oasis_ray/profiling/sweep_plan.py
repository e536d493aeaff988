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
import json
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
    power_limit_w: int | None = None
    tensor_parallel_size: int = 1
    max_num_seqs: int
    variant: Variant
    engine: EngineSettings
    env_vars: dict[str, str]

    def label(self) -> str:
        clock = f" @{self.clock_mhz}MHz" if self.clock_mhz is not None else ""
        cap = f" cap {self.power_limit_w}W" if self.power_limit_w is not None else ""
        tensor_parallel = f" x{self.tensor_parallel_size} TP" if self.tensor_parallel_size > 1 else ""
        return (
            f"{self.model.model_id} | {self.hardware.label()}{tensor_parallel}{clock}{cap} | "
            f"batch {self.max_num_seqs} | {self.variant.value}"
        )

    def engine_kwargs(self) -> dict[str, Any]:
        """vLLM's arguments: the engine settings, plus the tensor-parallel degree where it is above 1."""
        extra = {"tensor_parallel_size": self.tensor_parallel_size} if self.tensor_parallel_size > 1 else {}
        return {**self.engine.engine_kwargs(), **extra}

    def identity_json(self) -> str:
        """The JSON a trial id hashes: the knobs added after version 1 of the sweep (power limit, tensor
        parallelism, a CPU target's custom resources) are left out at their defaults, so trials measured
        before they existed keep their ids."""
        dump = self.model_dump(mode="json")
        for key, default in (("power_limit_w", None), ("tensor_parallel_size", 1)):
            if dump[key] == default:
                del dump[key]
        for key, default in (("power_limits_w", []), ("tensor_parallel_sizes", [1]), ("custom_resources", {})):
            if dump["hardware"].get(key, default) == default:
                dump["hardware"].pop(key, None)
        return json.dumps(dump, separators=(",", ":"), ensure_ascii=False)


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
            for clock, power_limit, tensor_parallel, batch, variant in _knob_settings(spec, hardware):
                config = EngineConfig(
                    model=model,
                    hardware=hardware,
                    clock_mhz=clock,
                    power_limit_w=power_limit,
                    tensor_parallel_size=tensor_parallel,
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


Knobs = tuple[int | None, int | None, int, int, Variant]
"""(clock, power limit, tensor-parallel degree, batch size, variant)."""


def _knob_settings(spec: SweepSpec, hardware: HardwareTarget) -> list[Knobs]:
    """Knob settings; one-at-a-time varies each knob alone from the first values (the baseline)."""
    gpu = hardware if isinstance(hardware, GpuTarget) else None
    clocks: list[int | None] = [*gpu.clocks_mhz] if gpu else []
    limits: list[int | None] = [*gpu.power_limits_w] if gpu else []
    degrees: list[int] = [*gpu.tensor_parallel_sizes] if gpu else [1]
    axes: tuple[list[Any], ...] = (clocks or [None], limits or [None], degrees, [*spec.max_num_seqs], [*spec.variants])
    if spec.sweep_mode == "grid":
        return [(c, p, t, b, v) for c, p, t, b, v in itertools.product(*axes)]
    base = tuple(axis[0] for axis in axes)
    settings = [base]
    for position, axis in enumerate(axes):
        settings += [base[:position] + (value,) + base[position + 1:] for value in axis[1:]]
    return settings  # type: ignore[return-value]


def _trial_id(fields: dict[str, Any]) -> str:
    """The timeout is left out: it decides whether a trial finishes, not what it measures."""

    def text(value: Any) -> str:
        if isinstance(value, EngineConfig):
            return value.identity_json()
        return value.model_dump_json() if isinstance(value, BaseModel) else value

    # The repr of the JSON text, as the first ids were hashed.
    canonical = "|".join(f"{name}={text(value)!r}" for name, value in sorted(fields.items()))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def group_by_engine(trials: list[Trial]) -> list[tuple[EngineConfig, list[Trial]]]:
    """Trials sharing an engine configuration, in first-seen order."""
    groups: dict[str, tuple[EngineConfig, list[Trial]]] = {}
    for trial in trials:
        config = trial.engine_config
        groups.setdefault(config.model_dump_json(), (config, []))[1].append(trial)
    return list(groups.values())


def trial_resources(hardware: HardwareTarget, tensor_parallel_size: int = 1) -> dict[str, Any]:
    """Ray actor options asking for exactly the devices the trial profiles, and nothing else.

    A trial holds its devices for its whole engine lifetime, so two trials
    never share a GPU or a MIG slice and their measurements cannot disturb
    each other; on CPU, Ray packs trials by `num_cpus`. A tensor-parallel
    trial holds its N GPUs in one actor, so they are on one node.
    """
    if isinstance(hardware, GpuTarget):
        options: dict[str, Any] = {"num_cpus": hardware.num_cpus, "num_gpus": tensor_parallel_size}
        if hardware.accelerator_type:
            options["accelerator_type"] = hardware.accelerator_type
        return options
    if isinstance(hardware, MigTarget):
        return {"num_cpus": hardware.num_cpus, "num_gpus": 1, "resources": {f"MIG-{hardware.mig_profile}": 1}}
    options = {"num_cpus": hardware.num_cpus, "num_gpus": 0}
    return {**options, "resources": dict(hardware.custom_resources)} if hardware.custom_resources else options
