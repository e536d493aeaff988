"""GPU metrics as OpenTelemetry observables, fed by the latest NVML samples of each node.

Observables report only what was measured: a node whose sampler says
"unavailable", a GPU that lacks a metric, or a reading older than the stale
limit yields no observation at all, so a dashboard shows a gap instead of a
0 W that would pass for a real (and implausibly good) figure. The reason for
the gap is kept as a status string for the status view and logs.

With MIG on, memory and utilisation are reported per MIG device as well
(oasis.gpu.mig.*), since that is the unit a replica is placed on; power and
energy stay per physical GPU, the only level at which NVML measures them.

Freshness is judged by when a reading arrived here (monotonic clock), not by
the sampler's timestamps, so clock skew between nodes cannot make a stalled
sampler look alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from oasis_ray.telemetry.energy import MJ_PER_J
from oasis_ray.telemetry.gpu_sampler import GpuReading, unavailable
from oasis_ray.telemetry.nvml import GpuSample, MigSample

HZ_PER_MHZ = 1_000_000

_Measured = TypeVar("_Measured", GpuSample, MigSample)
_Attributes = dict[str, str | int]


@dataclass(frozen=True)
class _NodeReading:
    samples: tuple[GpuSample, ...]
    unavailable_reason: str | None
    received_s: float


class GpuGauges:
    def __init__(self, meter: Meter, *, stale_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stale_after_s = stale_after_s
        self._clock = clock
        self._readings: dict[str, _NodeReading] = {}
        self._meter = meter
        self._gauge("oasis.gpu.power", "W", "Board power draw (NVML).", lambda s: s.power_w)
        # Hertz, the base unit, so Prometheus names them *_hertz like every other clock metric.
        self._gauge("oasis.gpu.sm_clock", "Hz", "SM clock (NVML).", _hertz(lambda s: s.sm_clock_mhz))
        self._gauge("oasis.gpu.memory_clock", "Hz", "Memory clock (NVML).", _hertz(lambda s: s.mem_clock_mhz))
        self._gauge("oasis.gpu.utilization", "%", "Time a kernel was running (NVML).", lambda s: s.gpu_util_pct)
        self._gauge("oasis.gpu.memory.used", "By", "Device memory in use (NVML).", lambda s: s.mem_used_bytes)
        self._meter.create_observable_counter(
            "oasis.gpu.energy",
            [self._callback(_energy_j)],
            unit="J",
            description="The GPU's own total-energy counter; rate() of it is the measured power.",
        )
        self._mig_gauge(
            "oasis.gpu.mig.memory.used", "By", "MIG device memory in use (NVML).", lambda m: m.mem_used_bytes
        )
        self._mig_gauge(
            "oasis.gpu.mig.utilization", "%", "Time a kernel was running on the MIG device (NVML).",
            lambda m: m.gpu_util_pct,
        )

    def _gauge(
        self, name: str, unit: str, description: str, metric: Callable[[GpuSample], float | None]
    ) -> None:
        self._meter.create_observable_gauge(name, [self._callback(metric)], unit=unit, description=description)

    def _mig_gauge(
        self, name: str, unit: str, description: str, metric: Callable[[MigSample], float | None]
    ) -> None:
        callback = _observer(self._fresh_mig_devices, metric)
        self._meter.create_observable_gauge(name, [callback], unit=unit, description=description)

    def update(self, node: str, reading: GpuReading) -> None:
        """Replaces the node's reading whole, so a collection running concurrently sees the old or the new one."""
        now = self._clock()
        if isinstance(reading, str):
            self._readings[node] = _NodeReading((), unavailable(reading), now)
        elif not reading:
            self._readings[node] = _NodeReading((), unavailable("the sampler reported no GPU"), now)
        else:
            self._readings[node] = _NodeReading(tuple(reading), None, now)

    def status(self) -> dict[str, str]:
        """Per node: "ok: N GPU(s)" or "unavailable: why"; empty until some sampler has reported."""
        now = self._clock()
        statuses = {}
        for node, reading in sorted(self._readings.items()):
            age_s = now - reading.received_s
            if reading.unavailable_reason is not None:
                statuses[node] = reading.unavailable_reason
            elif age_s > self._stale_after_s:
                statuses[node] = unavailable(f"no GPU sample for {age_s:.1f} s (limit {self._stale_after_s:g} s)")
            else:
                statuses[node] = f"ok: {len(reading.samples)} GPU(s)"
        return statuses

    def _fresh_samples(self) -> Iterable[tuple[str, GpuSample]]:
        now = self._clock()
        for node, reading in list(self._readings.items()):
            if now - reading.received_s <= self._stale_after_s:
                for sample in reading.samples:
                    yield node, sample

    def _fresh_gpus(self) -> Iterable[tuple[_Attributes, GpuSample]]:
        for node, sample in self._fresh_samples():
            yield _gpu_attributes(node, sample), sample

    def _fresh_mig_devices(self) -> Iterable[tuple[_Attributes, MigSample]]:
        for node, sample in self._fresh_samples():
            for device in sample.mig_devices:
                yield _mig_attributes(node, sample, device), device

    def _callback(
        self, metric: Callable[[GpuSample], float | None]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        return _observer(self._fresh_gpus, metric)


def _observer(
    fresh: Callable[[], Iterable[tuple[_Attributes, _Measured]]], metric: Callable[[_Measured], float | None]
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        observations = []
        for attributes, measured in fresh():
            value = metric(measured)
            if value is not None:
                observations.append(Observation(value, attributes))
        return observations

    return observe


def _hertz(mhz_of: Callable[[GpuSample], int | None]) -> Callable[[GpuSample], float | None]:
    def read(sample: GpuSample) -> float | None:
        mhz = mhz_of(sample)
        return None if mhz is None else mhz * HZ_PER_MHZ

    return read


def _energy_j(sample: GpuSample) -> float | None:
    return None if sample.energy_mj is None else sample.energy_mj / MJ_PER_J


def _gpu_attributes(node: str, sample: GpuSample) -> _Attributes:
    return {"node": node, "gpu_index": sample.index, "gpu_uuid": sample.uuid, "gpu_name": sample.name}


def _mig_attributes(node: str, sample: GpuSample, device: MigSample) -> _Attributes:
    return {
        "node": node, "gpu_index": sample.index, "gpu_uuid": sample.uuid,
        "mig_uuid": device.uuid, "mig_profile": device.profile,
    }
