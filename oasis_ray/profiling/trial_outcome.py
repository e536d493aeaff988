"""A finished trial as it is stored and merged into the HCT: its row plus the load points behind it.

Both a measured and a crashed trial become an outcome, so a crash is as
visible in the table as a result: the row keeps the trial's identity and
NVML-free defaults, and carries the error text instead of figures. A trial
estimated rather than run (from fingerprints) becomes an outcome too, marked
`provenance = derived`, with its predicted load points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

from oasis_ray.profiling.clock_control import ClockLock, PowerCap
from oasis_ray.profiling.hct import (
    HCT_SCHEMA_VERSION,
    HardwareCostTable,
    HctMetadata,
    HctRow,
    LoadPointRow,
    msrr_columns,
)
from oasis_ray.profiling.measurement import EngineIdlePower
from oasis_ray.profiling.msrr_search import SearchResult, meets_slo
from oasis_ray.profiling.sweep_plan import Trial
from oasis_ray.profiling.sweep_spec import GpuTarget, MigTarget, SweepSpec, spec_hash

ESTIMATED_POWER_NOTE = (
    "not estimated: fingerprints extrapolate latency only (iServe leaves power to further work, seed 003 §9)"
)


class TrialOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    row: HctRow
    load_points: list[LoadPointRow]


class DeviceInfo(BaseModel):
    """What the trial's process learnt about its device and meters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    device_name: str | None
    driver_version: str | None
    power_note: str | None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _identity(trial: Trial, run_id: str) -> dict[str, object]:
    config = trial.engine_config
    hardware = config.hardware
    return {
        "trial_id": trial.trial_id,
        "run_id": run_id,
        "model_id": config.model.model_id,
        "model_source": config.model.source,
        "hardware_kind": hardware.kind,
        "hardware": hardware.label(),
        "accelerator_type": hardware.accelerator_type if isinstance(hardware, GpuTarget) else None,
        "mig_profile": hardware.mig_profile if isinstance(hardware, MigTarget) else None,
        "num_cpus": hardware.num_cpus,
        "clock_mhz": config.clock_mhz,
        "power_limit_w": config.power_limit_w,
        "tensor_parallel_size": config.tensor_parallel_size,
        "max_num_seqs": config.max_num_seqs,
        "variant": config.variant,
        "query_type": trial.query.type,
        "input_tokens": trial.query.input_tokens,
        "output_tokens": trial.query.output_tokens,
        "slo_p95_e2e_s": trial.slo.p95_e2e_s,
        "search_mode": trial.search.mode,
    }


def measured_outcome(
    trial: Trial,
    *,
    run_id: str,
    result: SearchResult,
    clock: ClockLock,
    cap: PowerCap,
    device: DeviceInfo,
    engine_idle: EngineIdlePower,
    engine_start_s: float,
    search_wall_s: float,
    started_at: str,
) -> TrialOutcome:
    best = result.best
    power_available = best is not None and best.power_available
    row = HctRow(
        **_identity(trial, run_id),
        **msrr_columns(best),
        provenance="measured",
        provenance_note=None,
        status="ok",
        error=None,
        engine_idle_power_w=engine_idle.watts,
        engine_idle_power_note=engine_idle.note,
        device_name=device.device_name,
        driver_version=device.driver_version,
        clock_locked=clock.locked,
        clock_note=clock.note,
        power_limit_set=cap.set,
        power_limit_note=cap.note,
        msrr_capped=result.capped,
        power_available=power_available,
        power_note=None if power_available else device.power_note or "no power reading at the MSRR",
        load_points=len(result.points),
        search_wall_s=search_wall_s,
        engine_start_s=engine_start_s,
        started_at=started_at,
        finished_at=utc_now(),
    )
    points = [
        LoadPointRow(**point.model_dump(), trial_id=trial.trial_id, order=order, meets_slo=meets_slo(point, trial.slo),
                     provenance="measured", provenance_note=None)
        for order, point in enumerate(result.points)
    ]
    return TrialOutcome(row=row, load_points=points)


def estimated_outcome(
    trial: Trial, *, run_id: str, result: SearchResult, capped: bool, basis: Sequence[HctRow], note: str
) -> TrialOutcome:
    """The trial's row from a search over predicted load points, without running it.

    Device, driver and clock are those of the measured trials in `basis`
    (run on the same hardware), and so is the profiling cost: the load
    points, search and engine-start seconds the estimate actually spent.
    """
    row = HctRow(
        **_identity(trial, run_id),
        **msrr_columns(result.best),
        status="ok",
        error=None,
        device_name=basis[0].device_name,
        driver_version=basis[0].driver_version,
        clock_locked=all(row.clock_locked for row in basis),
        clock_note=next((row.clock_note for row in basis if row.clock_note), None),
        msrr_capped=capped,
        power_available=False,
        power_note=ESTIMATED_POWER_NOTE,
        engine_idle_power_w=math.nan,
        engine_idle_power_note=ESTIMATED_POWER_NOTE,
        provenance="derived",
        provenance_note=note,
        load_points=sum(row.load_points for row in basis),
        search_wall_s=sum(row.search_wall_s for row in basis),
        engine_start_s=sum(row.engine_start_s for row in basis),
        started_at=min(row.started_at for row in basis),
        finished_at=utc_now(),
    )
    points = [
        LoadPointRow(
            **point.model_dump(),
            trial_id=trial.trial_id,
            order=order,
            meets_slo=meets_slo(point, trial.slo),
            provenance="derived",
            provenance_note=note,
        )
        for order, point in enumerate(result.points)
    ]
    return TrialOutcome(row=row, load_points=points)


def failed_outcome(
    trial: Trial,
    *,
    run_id: str,
    error: str,
    started_at: str,
    provenance: Literal["measured", "derived"] = "measured",
    provenance_note: str | None = None,
) -> TrialOutcome:
    nan_figures = {
        name: math.nan
        for name, field in HctRow.model_fields.items()
        if field.annotation is float and name not in ("num_cpus", "slo_p95_e2e_s")
    }
    row = HctRow(
        **_identity(trial, run_id),
        **nan_figures,
        provenance=provenance,
        provenance_note=provenance_note,
        engine_idle_power_note="trial failed",
        status="failed",
        error=error,
        device_name=None,
        driver_version=None,
        clock_locked=False,
        clock_note=None,
        slo_feasible=False,
        msrr_concurrency=None,
        msrr_capped=False,
        power_available=False,
        power_note="trial failed",
        load_points=0,
        started_at=started_at,
        finished_at=utc_now(),
    )
    return TrialOutcome(row=row, load_points=[])


class SoftwareVersions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    vllm: str
    ray: str
    oasis_ray: str
    python: str


def merge_outcomes(spec: SweepSpec, outcomes: list[TrialOutcome], versions: SoftwareVersions) -> HardwareCostTable:
    """The cost table of these outcomes, in the order given (the sweep passes its trial order)."""
    rows = [outcome.row for outcome in outcomes]
    metadata = HctMetadata(
        schema_version=HCT_SCHEMA_VERSION,
        spec_name=spec.name,
        spec_hash=spec_hash(spec),
        created_at=utc_now(),
        sweep_mode=spec.sweep_mode,
        slo=spec.slo,
        load=spec.load,
        search=spec.search,
        trials=len(rows),
        failed_trials=sum(row.status == "failed" for row in rows),
        device_names=sorted({row.device_name for row in rows if row.device_name}),
        driver_versions=sorted({row.driver_version for row in rows if row.driver_version}),
        vllm_version=versions.vllm,
        ray_version=versions.ray,
        oasis_ray_version=versions.oasis_ray,
        python_version=versions.python,
    )
    points = [point for outcome in outcomes for point in outcome.load_points]
    return HardwareCostTable.from_models(rows, points, metadata)
