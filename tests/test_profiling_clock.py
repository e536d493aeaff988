"""Clock locking that always restores, and the trial's power probe, through a fake pynvml."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pynvml
import pytest

from oasis_ray.profiling.clock_control import ClockLock, locked_sm_clock
from oasis_ray.telemetry.nvml import NvmlReader
from oasis_ray.profiling.measurement import EngineIdlePower
from oasis_ray.profiling.power_probe import (
    CPU_POWER_NOTE,
    MIG_POWER_NOTE,
    NoPowerProbe,
    NvmlPowerProbe,
    open_gpu_probe,
    sample_engine_idle,
)
from tests.fake_nvml import DEFAULT_SM_MHZ, FakeGpu, FakeNvmlForUnitTests, not_supported


def test_clock_is_locked_inside_the_block_and_reset_after() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    with locked_sm_clock(1, 1410, nvml=fake) as lock:
        assert lock == ClockLock(requested_mhz=1410, locked=True, observed_sm_mhz=1410, note=None)
        assert fake.gpus[1].locked == (1410, 1410) and fake.gpus[0].locked is None
    assert fake.gpus[1].locked is None
    assert fake.calls == [("lock", 1, 1410, 1410), ("reset", 1)]
    assert not fake.initialised


def test_clock_is_reset_even_when_the_trial_fails() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    with pytest.raises(RuntimeError, match="engine OOM"), locked_sm_clock(0, 1200, nvml=fake):
        raise RuntimeError("engine OOM")
    assert fake.calls == [("lock", 0, 1200, 1200), ("reset", 0)]
    assert fake.gpus[0].locked is None and not fake.initialised


@pytest.mark.parametrize(
    ("error", "reason"),
    [(pynvml.NVMLError_NoPermission(), "Insufficient Permissions"), (pynvml.NVMLError_NotSupported(), "Not Supported")],
)
def test_a_refused_lock_runs_unlocked_and_says_so_with_the_observed_clock(error: pynvml.NVMLError, reason: str) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", errors={"nvmlDeviceSetGpuLockedClocks": error})])
    with locked_sm_clock(0, 1410, nvml=fake) as lock:
        assert lock == ClockLock(
            requested_mhz=1410,
            locked=False,
            observed_sm_mhz=DEFAULT_SM_MHZ,
            note=f"clock lock refused by NVML: {reason}",
        )
    assert fake.calls == [("lock", 0, 1410, 1410)], "nothing was locked, so nothing is reset"


def test_without_nvml_the_trial_runs_unlocked_with_nvmls_reason() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")], init_error=pynvml.NVMLError_DriverNotLoaded())
    with locked_sm_clock(0, 1410, nvml=fake) as lock:
        assert not lock.locked and lock.observed_sm_mhz is None
        assert lock.note == "nvmlInit failed: Driver Not Loaded"
    assert fake.calls == []


def test_no_requested_clock_only_observes() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", sm_mhz=1755)])
    with locked_sm_clock(0, None, nvml=fake) as lock:
        assert lock == ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=1755, note=None)
    assert fake.calls == [] and not fake.initialised


def test_a_clock_the_gpu_cannot_run_fails_the_trial_and_leaves_nothing_locked() -> None:
    out_of_range = FakeGpu("GPU-0", errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVMLError_InvalidArgument()})
    fake = FakeNvmlForUnitTests([out_of_range])
    with pytest.raises(pynvml.NVMLError_InvalidArgument), locked_sm_clock(0, 99_999, nvml=fake):
        pytest.fail("the block must not run")
    assert fake.gpus[0].locked is None and not fake.initialised


def test_gpu_probe_reads_the_energy_counter_and_clock() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", name="NVIDIA A100-SXM4-80GB", sm_mhz=1500)])
    probe = open_gpu_probe(0, nvml=fake)
    first = probe.read()
    fake.gpus[0].energy_mj += 1_000
    second = probe.read()
    assert (probe.device_name, probe.driver_version, probe.unavailable_reason) == (
        "NVIDIA A100-SXM4-80GB",
        "550.54.15",
        None,
    )
    assert second.energy_mj - first.energy_mj == 1_000
    assert second.timestamp_s >= first.timestamp_s and first.sm_clock_mhz == 1500
    probe.close()
    assert not fake.initialised


def test_gpu_without_an_energy_counter_says_so() -> None:
    no_counter = FakeGpu("GPU-0", errors=not_supported("nvmlDeviceGetTotalEnergyConsumption"))
    probe = NvmlPowerProbe(NvmlReader(FakeNvmlForUnitTests([no_counter])), 0)
    assert probe.unavailable_reason == "this GPU has no total-energy counter"
    assert probe.read().energy_mj is None


def test_without_nvml_the_probe_reads_nothing_and_keeps_the_reason() -> None:
    probe = open_gpu_probe(0, nvml=FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_LibraryNotFound()))
    assert isinstance(probe, NoPowerProbe)
    assert probe.unavailable_reason == "NVML unavailable: nvmlInit failed: NVML Shared Library Not Found"
    reading = probe.read()
    assert (reading.energy_mj, reading.sm_clock_mhz) == (None, None)


def test_engine_idle_power_is_the_energy_counter_over_the_sampled_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", name="NVIDIA A100-SXM4-80GB")])
    clock = [1_000.0]
    monkeypatch.setattr("oasis_ray.telemetry.nvml.time", SimpleNamespace(time=lambda: clock[0]))
    probe = open_gpu_probe(0, nvml=fake)

    def sleep(seconds: float) -> None:  # the engine sits idle at 85 W
        clock[0] += seconds
        fake.gpus[0].energy_mj += int(85 * 1000 * seconds)

    idle = sample_engine_idle(probe, 3.0, sleep=sleep)
    assert idle == EngineIdlePower(watts=85.0, note=None)
    probe.close()


@pytest.mark.parametrize("note", [CPU_POWER_NOTE, MIG_POWER_NOTE])
def test_cpu_and_mig_trials_record_no_engine_idle_power_and_say_why(note: str) -> None:
    slept: list[float] = []
    idle = sample_engine_idle(NoPowerProbe(note), 3.0, sleep=slept.append)
    assert math.isnan(idle.watts) and idle.note == note and slept == []


def test_a_gpu_without_an_energy_counter_has_no_engine_idle_power() -> None:
    no_counter = FakeGpu("GPU-0", errors=not_supported("nvmlDeviceGetTotalEnergyConsumption"))
    probe = NvmlPowerProbe(NvmlReader(FakeNvmlForUnitTests([no_counter])), 0)
    idle = sample_engine_idle(probe, 3.0, sleep=lambda seconds: None)
    assert math.isnan(idle.watts) and idle.note == "this GPU has no total-energy counter"


def test_power_limit_is_set_inside_the_block_and_put_back_even_when_the_trial_fails() -> None:
    from oasis_ray.profiling.clock_control import PowerCap, capped_power
    from tests.fake_nvml import DEFAULT_POWER_LIMIT_MW

    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    with pytest.raises(RuntimeError, match="engine OOM"), capped_power(1, 300, nvml=fake) as cap:
        assert cap == PowerCap(requested_w=300, set=True, note=None)
        assert fake.gpus[1].power_limit_mw == 300_000 and fake.gpus[0].power_limit_mw == DEFAULT_POWER_LIMIT_MW
        raise RuntimeError("engine OOM")
    assert fake.calls == [("power", 1, 300_000), ("power", 1, DEFAULT_POWER_LIMIT_MW)]
    assert not fake.initialised


def test_a_refused_or_unasked_power_limit_changes_nothing_and_says_why() -> None:
    from oasis_ray.profiling.clock_control import PowerCap, capped_power

    refusing = FakeGpu("GPU-0", errors={"nvmlDeviceSetPowerManagementLimit": pynvml.NVMLError_NoPermission()})
    fake = FakeNvmlForUnitTests([refusing])
    with capped_power(0, 250, nvml=fake) as cap:
        assert cap == PowerCap(requested_w=250, set=False, note="power limit refused by NVML: Insufficient Permissions")
    with capped_power(0, None, nvml=fake) as unasked:
        assert unasked == PowerCap(requested_w=None, set=False, note=None)
    assert fake.calls == [("power", 0, 250_000)], "nothing was set, so nothing is put back"
    no_driver = FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_DriverNotLoaded())
    with capped_power(0, 250, nvml=no_driver) as cap:
        assert not cap.set and cap.note == "nvmlInit failed: Driver Not Loaded"


def test_a_tensor_parallel_probe_sums_its_gpus_energy_counters() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0", energy_mj=1_000), FakeGpu("GPU-1", energy_mj=2_000)])
    probe = open_gpu_probe((0, 1), nvml=fake)
    first = probe.read()
    fake.gpus[1].energy_mj += 500
    assert first.energy_mj == 3_000 and probe.read().energy_mj == 3_500
    probe.close()
    no_counter = FakeGpu("GPU-1", errors=not_supported("nvmlDeviceGetTotalEnergyConsumption"))
    partial = NvmlPowerProbe(NvmlReader(FakeNvmlForUnitTests([FakeGpu("GPU-0"), no_counter])), (0, 1))
    assert partial.unavailable_reason == "this GPU has no total-energy counter" and partial.read().energy_mj is None
