"""One load level's requests and power readings reduced to a LoadPoint: percentiles, rates, energy.

Pure arithmetic over timestamps, so every figure in the cost table can be
checked by hand from made-up records.

The measurement window opens when the first measured request is sent and
closes when the last measured one completes. Rates count every completion
inside the window, warm-up and filler requests included, because in a closed
loop they all share the engine; latencies come from the measured requests
only. Energy comes from the GPU's total-energy counter read at the window's
two ends, never from a sampled power reading multiplied by time, and a power
figure that was not measured is NaN with `power_available = False`, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from oasis_ray.telemetry.energy import EnergyMeter

PERCENTILES = (50, 95, 99)


class MeasurementError(RuntimeError):
    """A load level whose numbers would be wrong, e.g. requests that did not produce the asked length."""


@dataclass(frozen=True)
class RequestRecord:
    """One request's timeline on a single monotonic clock."""

    index: int
    start_s: float
    first_token_s: float
    end_s: float
    output_tokens: int


class PowerReading(BaseModel):
    """The device's meters at one instant; None where the device has no such meter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timestamp_s: float
    energy_mj: int | None
    sm_clock_mhz: int | None


class EngineIdlePower(BaseModel):
    """The board's mean power with the trial's engine loaded and no request in it; NaN with the reason if unknown."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    watts: float
    note: str | None


def engine_idle_power(first: PowerReading, last: PowerReading, unavailable_reason: str | None) -> EngineIdlePower:
    """Mean power between two readings of the energy counter, taken while the engine sits idle."""
    if unavailable_reason is not None:
        return EngineIdlePower(watts=math.nan, note=unavailable_reason)
    meter = EnergyMeter()
    meter.add(first.timestamp_s, first.energy_mj)
    meter.add(last.timestamp_s, last.energy_mj)
    if meter.mean_power_w is None:
        return EngineIdlePower(watts=math.nan, note="the energy counter gave no interval to measure")
    return EngineIdlePower(watts=meter.mean_power_w, note=None)


class LoadPoint(BaseModel):
    """Everything measured at one closed-loop concurrency."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    concurrency: int
    warmup_requests: int
    measured_requests: int
    window_s: float
    e2e_p50_s: float
    e2e_p95_s: float
    e2e_p99_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p95_s: float
    tpot_p99_s: float
    requests_per_s: float
    output_tokens_per_s: float
    power_available: bool
    mean_power_w: float
    energy_j: float
    energy_per_token_j: float
    sm_clock_mhz: float


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (math.nan,) * len(PERCENTILES)
    p50, p95, p99 = (float(v) for v in np.percentile(np.asarray(values, dtype=float), PERCENTILES))
    return p50, p95, p99


def summarize_level(
    *,
    concurrency: int,
    records: list[RequestRecord],
    warmup: int,
    measured: int,
    output_tokens: int,
    window_open: PowerReading,
    window_close: PowerReading,
) -> LoadPoint:
    """Reduce one level's completed records (any order) to its LoadPoint.

    Requests with index < `warmup` are warm-up; the next `measured` are
    measured; any others were fillers that kept the concurrency constant
    until the last measured request finished. Energy per token is per
    generated (output) token: the unit the paper's energy comparisons use.
    """
    measured_records = [r for r in records if warmup <= r.index < warmup + measured]
    if len(measured_records) != measured:
        raise MeasurementError(f"expected {measured} measured requests, got {len(measured_records)}")
    short = [r for r in measured_records if r.output_tokens != output_tokens]
    if short:
        raise MeasurementError(
            f"{len(short)} measured request(s) produced {short[0].output_tokens} tokens instead of {output_tokens}"
        )
    window_start = next(r.start_s for r in measured_records if r.index == warmup)
    window_end = max(r.end_s for r in measured_records)
    window_s = window_end - window_start
    if window_s <= 0:
        raise MeasurementError(f"measurement window of {window_s} s; the clock did not advance")
    completions = sum(1 for r in records if window_start < r.end_s <= window_end)
    requests_per_s = completions / window_s
    output_tokens_per_s = requests_per_s * output_tokens

    e2e = _percentiles([r.end_s - r.start_s for r in measured_records])
    ttft = _percentiles([r.first_token_s - r.start_s for r in measured_records])
    tpot = _percentiles(
        [(r.end_s - r.first_token_s) / (r.output_tokens - 1) for r in measured_records if r.output_tokens > 1]
    )

    meter = EnergyMeter()
    meter.add(window_open.timestamp_s, window_open.energy_mj)
    meter.add(window_close.timestamp_s, window_close.energy_mj)
    power_available = meter.mean_power_w is not None
    mean_power_w = meter.mean_power_w if meter.mean_power_w is not None else math.nan
    clocks = [c for c in (window_open.sm_clock_mhz, window_close.sm_clock_mhz) if c is not None]
    return LoadPoint(
        concurrency=concurrency,
        warmup_requests=warmup,
        measured_requests=measured,
        window_s=window_s,
        e2e_p50_s=e2e[0],
        e2e_p95_s=e2e[1],
        e2e_p99_s=e2e[2],
        ttft_p50_s=ttft[0],
        ttft_p95_s=ttft[1],
        ttft_p99_s=ttft[2],
        tpot_p50_s=tpot[0],
        tpot_p95_s=tpot[1],
        tpot_p99_s=tpot[2],
        requests_per_s=requests_per_s,
        output_tokens_per_s=output_tokens_per_s,
        power_available=power_available,
        mean_power_w=mean_power_w,
        energy_j=meter.total_j if power_available else math.nan,
        energy_per_token_j=mean_power_w / output_tokens_per_s if power_available else math.nan,
        sm_clock_mhz=sum(clocks) / len(clocks) if clocks else math.nan,
    )
