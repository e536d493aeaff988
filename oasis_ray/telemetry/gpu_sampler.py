"""Periodic NVML sampling and per-interval GPU energy, for one node.

The energy of an interval is the delta of each GPU's own energy counter
(EnergyMeter, which handles wrap and restart), never power integrated in
software. Anything that breaks the chain of readings (NVML failing, a GPU
appearing, the wall clock stepping back) makes the affected interval lost
(None), because the counter delta across the break is unknowable.

NVML is opened lazily and reopened after a failure, so a sampler started
before the driver is ready, or across a driver reload, recovers on its own
instead of reporting "unavailable" forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pynvml

from oasis_ray.telemetry.energy import EnergyMeter, measured_total
from oasis_ray.telemetry.nvml import GpuSample, NvmlReader, NvmlUnavailable

UNAVAILABLE = "unavailable"

GpuReading = list[GpuSample] | str
"""What a sampler returns: samples, or "unavailable: why"."""

ReaderFactory = Callable[[], NvmlReader]


def unavailable(reason: str) -> str:
    """The one spelling of "no measurement", so every reader of a status can match it."""
    return reason if reason.startswith(UNAVAILABLE) else f"{UNAVAILABLE}: {reason}"


@dataclass(frozen=True)
class EnergyInterval:
    """Energy each GPU (by UUID) used from t_start_s to t_end_s (wall time); None where it was not measured.

    t_start_s is None for the first interval: nothing before it was metered.
    """

    t_start_s: float | None
    t_end_s: float
    energy_j_by_gpu: Mapping[str, float | None]

    @property
    def total_j(self) -> float | None:
        """The node's energy, or None if any GPU's share is unknown: a partial sum would read as a low figure."""
        return measured_total(self.energy_j_by_gpu.values())


class GpuSampler:
    """Samples one node's GPUs through NVML; no Ray here, so a Ray actor, a replica or a test can host it.

    `reader_factory` is called whenever NVML must be (re)opened; tests pass
    one that builds NvmlReader over a fake pynvml.
    """

    def __init__(
        self,
        reader_factory: ReaderFactory = NvmlReader,
        period_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s: must be > 0, got {period_s}")
        self.period_s = period_s
        self._reader_factory = reader_factory
        self._clock = clock
        self._reader: NvmlReader | None = None
        self._meters: dict[str, EnergyMeter] = {}
        self._last_end_s: float | None = None
        self.last_interval: EnergyInterval | None = None

    def sample_once(self) -> GpuReading:
        """Samples every GPU and closes an energy interval (see `last_interval`)."""
        reading, _ = self.sample_with_interval()
        return reading

    def sample_with_interval(self) -> tuple[GpuReading, EnergyInterval]:
        """What a host publishes each period: the reading, and the energy interval it closed (for EnergyLedger)."""
        try:
            if self._reader is None:
                self._reader = self._reader_factory()
            samples = self._reader.sample_all()
        except NvmlUnavailable as error:
            return unavailable(str(error)), self._close_lost()
        except pynvml.NVMLError as error:
            self._drop_reader()
            return unavailable(f"NVML error while sampling: {error}"), self._close_lost()
        if not samples:
            self._drop_reader()
            return unavailable("NVML lists no GPU any more"), self._close_lost()
        return samples, self._close_measured(samples)

    def meters(self) -> dict[str, EnergyMeter]:
        """Each GPU's meter since it was last (re)discovered: metered joules and lost intervals so far."""
        return dict(self._meters)

    async def run(self, on_reading: Callable[[GpuReading, EnergyInterval], None], stop: asyncio.Event) -> None:
        """Samples every period_s until `stop` is set, on a fixed schedule so sampling time does not add drift.

        A sample that overruns its slot is followed at once by the next, with
        the schedule restarted, rather than by a burst catching up.
        """
        next_s = time.monotonic()
        while not stop.is_set():
            on_reading(*self.sample_with_interval())
            next_s += self.period_s
            now = time.monotonic()
            if next_s < now:
                next_s = now
            try:
                await asyncio.wait_for(stop.wait(), timeout=next_s - now)
            except TimeoutError:
                continue

    def close(self) -> None:
        self._drop_reader()

    def _drop_reader(self) -> None:
        """Forgets the meters too: the readings after a reopen do not continue the old chain."""
        reader, self._reader = self._reader, None
        self._meters = {}
        if reader is not None:
            # Shutting down a session whose GPU or driver is gone can fail too; there is nothing left to release.
            with contextlib.suppress(pynvml.NVMLError):
                reader.close()

    def _close_measured(self, samples: list[GpuSample]) -> EnergyInterval:
        meters: dict[str, EnergyMeter] = {}
        energy: dict[str, float | None] = {}
        for sample in samples:
            meter = self._meters.get(sample.uuid)
            last_s = meter.last_timestamp_s if meter is not None else None
            if meter is None or (last_s is not None and sample.timestamp_s <= last_s):
                meter = EnergyMeter()
            energy[sample.uuid] = meter.add(sample.timestamp_s, sample.energy_mj)
            meters[sample.uuid] = meter
        self._meters = meters
        return self._close(max(sample.timestamp_s for sample in samples), energy)

    def _close_lost(self) -> EnergyInterval:
        return self._close(self._clock(), {})

    def _close(self, t_end_s: float, energy: dict[str, float | None]) -> EnergyInterval:
        self.last_interval = EnergyInterval(self._last_end_s, t_end_s, energy)
        self._last_end_s = t_end_s
        return self.last_interval
