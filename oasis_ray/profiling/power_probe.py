"""Meter readings for the device a trial profiles: the GPU's NVML counters, or nothing, said plainly.

A trial reads its device at the two ends of each measurement window. On a
whole GPU that is NVML's total-energy counter and SM clock; on CPU and on a
MIG slice there is no meter for the trial's own share (NVML meters a MIG
slice's parent GPU, which other slices share), so readings carry None and the
cost table records power as unavailable rather than as a number that
describes something else.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

from oasis_ray.profiling.measurement import EngineIdlePower, PowerReading, engine_idle_power
from oasis_ray.telemetry.nvml import NvmlReader, NvmlUnavailable


CPU_POWER_NOTE = "CPU target: no power meter"
MIG_POWER_NOTE = "MIG slice: NVML meters only the whole GPU, which other slices share"


class PowerProbe(Protocol):
    device_name: str | None
    driver_version: str | None
    unavailable_reason: str | None

    def read(self) -> PowerReading: ...

    def close(self) -> None: ...


class NoPowerProbe:
    """A device without a meter of its own; `unavailable_reason` says why."""

    def __init__(self, reason: str, device_name: str | None = None, driver_version: str | None = None) -> None:
        self.unavailable_reason: str | None = reason
        self.device_name = device_name
        self.driver_version = driver_version

    def read(self) -> PowerReading:
        return PowerReading(timestamp_s=time.time(), energy_mj=None, sm_clock_mhz=None)

    def close(self) -> None:
        return None


class NvmlPowerProbe:
    """Whole GPUs through an open NvmlReader: one, or a tensor-parallel trial's N, metered together.

    The energy of N GPUs is the sum of their own counters (None if any has
    none: a partial sum would read as a low figure); the SM clock is the first
    GPU's, since a trial sets all of them alike.
    """

    def __init__(self, reader: NvmlReader, gpu_indices: int | tuple[int, ...]) -> None:
        self._reader = reader
        self._indices = (gpu_indices,) if isinstance(gpu_indices, int) else tuple(gpu_indices)
        if not self._indices:
            raise ValueError("gpu_indices: a GPU probe needs at least one GPU")
        first = [reader.sample(index) for index in self._indices]
        self.device_name: str | None = first[0].name
        self.driver_version: str | None = reader.driver_version
        self.unavailable_reason: str | None = (
            "this GPU has no total-energy counter" if any("energy_mj" in s.unsupported for s in first) else None
        )

    def read(self) -> PowerReading:
        samples = [self._reader.sample(index) for index in self._indices]
        energies = [sample.energy_mj for sample in samples]
        return PowerReading(
            timestamp_s=samples[0].timestamp_s,
            energy_mj=None if any(e is None for e in energies) else sum(e for e in energies if e is not None),
            sm_clock_mhz=samples[0].sm_clock_mhz,
        )

    def close(self) -> None:
        self._reader.close()


def open_gpu_probe(gpu_indices: int | tuple[int, ...], nvml: ModuleType | None = None) -> PowerProbe:
    """The GPUs' probe, or a NoPowerProbe carrying NVML's reason when NVML cannot be used."""
    try:
        reader = NvmlReader(nvml)
    except NvmlUnavailable as error:
        return NoPowerProbe(f"NVML unavailable: {error}")
    return NvmlPowerProbe(reader, gpu_indices)


def sample_engine_idle(probe: PowerProbe, seconds: float, sleep: Callable[[float], None] = time.sleep) -> EngineIdlePower:
    """The board's power over `seconds` with the engine loaded and idle; without a meter, NaN at once, with why."""
    if probe.unavailable_reason is not None:
        return EngineIdlePower(watts=float("nan"), note=probe.unavailable_reason)
    first = probe.read()
    sleep(seconds)
    return engine_idle_power(first, probe.read(), None)
