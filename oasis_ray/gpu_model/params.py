"""The GPU model's fitted parameters: a versioned, typed file and the bounds the fit keeps them in.

`params_v1.json` beside this module is the committed fit. Its
`schema_version` says which layout this code reads; `provenance` says how it
was made (the fit command, the figures it used, the objective it reached and
a hash of the published figures), so a table built from it can name the
parameter version it came from. A file of another schema version is refused
with the field named, never half-read.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PARAMS_SCHEMA_VERSION = 1
PARAMS_FILE = Path(__file__).parent / "params_v1.json"


class StackParams(BaseModel):
    """How well one vLLM version uses the hardware; each version has its own, never a shared fit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flop_efficiency: float = Field(gt=0, le=1, description="Achieved share of the slice's peak bf16 FLOP rate.")
    bandwidth_efficiency: float = Field(gt=0, le=1, description="Achieved share of the slice's HBM bandwidth.")
    kv_bandwidth_efficiency: float = Field(
        gt=0, le=1, description="Achieved share of the bandwidth when attention reads the paged KV cache."
    )
    host_step_s: float = Field(ge=0, description="Host (CPU) time per engine step: scheduling, launch, sampling.")
    host_seq_s: float = Field(ge=0, description="Host time per running sequence per step.")
    gpu_step_s: float = Field(ge=0, description="Fixed GPU time per step at the maximum clock; scales as 1/clock.")
    latency_sigma: float = Field(ge=0, description="Log-normal spread of closed-loop latency about its mean.")


class Chip(BaseModel):
    """A chip's power terms at its maximum clock, for the whole chip (a slice draws its share of each), and
    the clock below which its SMs can no longer keep the HBM busy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bandwidth_knee: float = Field(
        gt=0, le=1, description="Below this share of f_max, achievable bandwidth falls in proportion to the clock."
    )
    resident_w: float = Field(ge=0, description="An engine loaded and clocks up, nothing executing.")
    active_w: float = Field(ge=0, description="While kernels execute, whatever they do.")
    compute_w: float = Field(ge=0, description="At 100% of the peak FLOP rate, on top of active_w.")
    memory_w: float = Field(ge=0, description="At 100% of the HBM bandwidth, on top of active_w.")


class ClockCurve(BaseModel):
    """Dynamic power scales as f x V(f)^2; V sits at a floor up to `knee` x f_max and reaches 1 at `saturation`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    voltage_floor: float = Field(gt=0, le=1)
    knee: float = Field(gt=0, lt=1)
    saturation: float = Field(gt=0, le=1)


class Provenance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    fitted_by: str
    figures_used: int
    parameters_fitted: int
    objective: float
    figures_sha256: str
    note: str


class GpuModelParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int
    model_version: str
    provenance: Provenance
    stacks: dict[str, StackParams]
    chips: dict[str, Chip]
    clock_curve: ClockCurve
    engine_fixed_share: float = Field(
        ge=0, le=1, description="Share of an engine's resident power that does not shrink with its slice."
    )
    board_idle_w: dict[str, float] = Field(description="Board power with no engine, MIG on or off.")
    workloads: dict[str, float] = Field(
        description="Conditions no source states, fitted: concurrencies of Tables 3 and 5, mean prompt lengths."
    )


class ParamsError(ValueError):
    """A parameter file this code cannot use; the message names the file and the field."""


def parse_params(text: str, origin: str) -> GpuModelParams:
    import json

    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ParamsError(f"{origin}: not JSON ({error})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != PARAMS_SCHEMA_VERSION:
        raise ParamsError(f"{origin}: schema_version {version!r}, but this code reads {PARAMS_SCHEMA_VERSION}")
    try:
        return GpuModelParams.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ParamsError(f"{origin}: {field}: {first['msg']}") from None


@functools.cache
def committed_params() -> GpuModelParams:
    """The committed fit (params_v1.json); read once per process."""
    return parse_params(PARAMS_FILE.read_text(), str(PARAMS_FILE))
