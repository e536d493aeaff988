"""GpuSampler on the real NvmlReader over a fake pynvml: interval energy from counters, and explicit unavailability."""

from __future__ import annotations

import asyncio
import itertools
import math
from types import ModuleType
from typing import cast

import pynvml
import pytest

from oasis_ray.telemetry.energy_ledger import EnergyLedger
from oasis_ray.telemetry.gpu_sampler import EnergyInterval, GpuSampler
from oasis_ray.telemetry.nvml import GpuSample, NvmlReader
from tests.fake_nvml import FakeGpu, FakeNvmlForUnitTests, not_supported

MJ = 1000


class WallClock:
    """The time NvmlReader stamps samples with, set by the test."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    clock = WallClock()
    monkeypatch.setattr("oasis_ray.telemetry.nvml.time", clock)
    return clock


def open_reader(fake: FakeNvmlForUnitTests) -> NvmlReader:
    return NvmlReader(cast(ModuleType, fake))


def sampler_for(fake: FakeNvmlForUnitTests, wall: WallClock) -> GpuSampler:
    return GpuSampler(lambda: open_reader(fake), period_s=1.0, clock=wall.time)


def step(sampler: GpuSampler, wall: WallClock, seconds: float = 1.0) -> tuple[list[GpuSample] | str, EnergyInterval]:
    wall.now += seconds
    return sampler.sample_with_interval()


def test_interval_energy_is_each_gpus_counter_delta(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0"), FakeGpu("GPU-1", energy_mj=7_000_000)])
    sampler = sampler_for(fake, wall)
    samples, first = step(sampler, wall)
    assert not isinstance(samples, str)
    assert [s.uuid for s in samples] == ["GPU-0", "GPU-1"]
    assert (first.t_start_s, first.energy_j_by_gpu, first.total_j) == (None, {"GPU-0": None, "GPU-1": None}, None)
    fake.gpus[0].energy_mj += 300 * MJ
    fake.gpus[1].energy_mj += 120 * MJ
    _, interval = step(sampler, wall)
    assert interval.energy_j_by_gpu == {"GPU-0": 300.0, "GPU-1": 120.0}
    assert interval.total_j == 420.0
    assert (interval.t_start_s, interval.t_end_s) == (first.t_end_s, wall.now)
    assert sampler.last_interval == interval
    assert sampler.meters()["GPU-0"].total_j == 300.0


def test_without_nvml_the_sampler_says_unavailable_with_the_reason(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")], init_error=pynvml.NVMLError_LibraryNotFound())
    sampler = sampler_for(fake, wall)
    reading, interval = step(sampler, wall)
    assert isinstance(reading, str)
    assert reading.startswith("unavailable: nvmlInit failed")
    assert (interval.energy_j_by_gpu, interval.total_j, interval.t_end_s) == ({}, None, wall.now)


def test_the_sampler_recovers_once_nvml_comes_up_and_measures_from_the_next_interval(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")], init_error=pynvml.NVMLError_DriverNotLoaded())
    sampler = sampler_for(fake, wall)
    assert isinstance(sampler.sample_once(), str)
    fake.init_error = None
    _, first_after = step(sampler, wall)
    fake.gpus[0].energy_mj += 100 * MJ
    _, measured = step(sampler, wall)
    assert (first_after.total_j, measured.total_j) == (None, 100.0)


def test_a_gpu_lost_mid_session_breaks_the_chain_and_closes_nvml(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus[0].errors["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVMLError_GpuIsLost()
    reading, lost = step(sampler, wall)
    assert reading == f"unavailable: NVML error while sampling: {pynvml.NVMLError_GpuIsLost()}"
    assert (lost.total_j, fake.initialised) == (None, False)
    fake.gpus[0].errors.clear()
    _, reopened = step(sampler, wall)
    fake.gpus[0].energy_mj += 50 * MJ
    _, measured = step(sampler, wall)
    assert (reopened.total_j, measured.total_j) == (None, 50.0)


def test_one_gpu_without_an_energy_counter_leaves_the_node_total_unknown(wall: WallClock) -> None:
    no_counter = FakeGpu("GPU-1", errors=not_supported("nvmlDeviceGetTotalEnergyConsumption"))
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0"), no_counter])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus[0].energy_mj += 80 * MJ
    _, interval = step(sampler, wall)
    assert interval.energy_j_by_gpu == {"GPU-0": 80.0, "GPU-1": None}
    assert interval.total_j is None


def test_a_counter_restart_loses_the_interval_instead_of_counting_from_zero(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", energy_mj=9_000_000)])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus[0].energy_mj = 40 * MJ
    _, restarted = step(sampler, wall)
    fake.gpus[0].energy_mj += 10 * MJ
    _, measured = step(sampler, wall)
    assert (restarted.total_j, measured.total_j) == (None, 10.0)


def test_a_wall_clock_stepping_back_loses_the_interval(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus[0].energy_mj += 100 * MJ
    _, stepped_back = step(sampler, wall, seconds=-5.0)
    fake.gpus[0].energy_mj += 30 * MJ
    _, measured = step(sampler, wall)
    assert (stepped_back.total_j, measured.total_j) == (None, 30.0)


def test_a_gpu_that_appears_has_no_energy_for_its_first_interval(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus.append(FakeGpu("GPU-1"))
    fake.gpus[0].energy_mj += 10 * MJ
    _, interval = step(sampler, wall)
    assert interval.energy_j_by_gpu == {"GPU-0": 10.0, "GPU-1": None}


@pytest.mark.parametrize("period_s", [0.0, -1.0, math.nan])
def test_the_period_must_be_positive(period_s: float) -> None:
    with pytest.raises(ValueError, match="period_s"):
        GpuSampler(lambda: open_reader(FakeNvmlForUnitTests([])), period_s=period_s)


def test_the_ledger_attributes_exactly_the_metered_counter_deltas(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    sampler = sampler_for(fake, wall)
    ledger = EnergyLedger()
    _, first = step(sampler, wall)
    settled = ledger.close_interval(first.t_end_s, first.total_j)
    for served, (delta0, delta1) in enumerate([(210, 190), (333, 17), (50, 50)]):
        ledger.add_tokens("a", 10 + served, t=wall.now + 0.5)
        ledger.add_tokens("b", 30, t=wall.now + 0.5)
        fake.gpus[0].energy_mj += delta0 * MJ
        fake.gpus[1].energy_mj += delta1 * MJ
        _, interval = step(sampler, wall)
        settled += ledger.close_interval(interval.t_end_s, interval.total_j)
    ledger.finish("a")
    ledger.finish("b")
    _, idle = step(sampler, wall)
    settled += ledger.close_interval(idle.t_end_s, idle.total_j)
    energies = {record.request_id: record.energy_j for record in settled}
    assert energies["a"] is not None and energies["b"] is not None
    assert energies["a"] + energies["b"] == pytest.approx(210 + 190 + 333 + 17 + 50 + 50)


def test_run_samples_on_schedule_until_stopped(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    sampler = GpuSampler(lambda: open_reader(fake), period_s=0.01, clock=wall.time)
    intervals: list[EnergyInterval] = []

    async def main() -> None:
        stop = asyncio.Event()

        def on_reading(reading: list[GpuSample] | str, interval: EnergyInterval) -> None:
            assert not isinstance(reading, str)
            intervals.append(interval)
            wall.now += 1.0
            fake.gpus[0].energy_mj += 5 * MJ
            if len(intervals) == 4:
                stop.set()

        await asyncio.wait_for(sampler.run(on_reading, stop), timeout=10)

    asyncio.run(main())
    assert [interval.total_j for interval in intervals] == [None, 5.0, 5.0, 5.0]
    assert all(later.t_start_s == earlier.t_end_s for earlier, later in itertools.pairwise(intervals))


def test_gpus_that_all_disappear_leave_the_node_unavailable(wall: WallClock) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    sampler = sampler_for(fake, wall)
    step(sampler, wall)
    fake.gpus.clear()
    reading, interval = step(sampler, wall)
    assert (reading, interval.total_j) == ("unavailable: NVML lists no GPU any more", None)
