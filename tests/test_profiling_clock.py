"""Clock locking that always restores, and the trial's power probe, through a fake pynvml."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml
import pytest

from oasis_ray.clock_control import ClockLock, locked_sm_clock
from oasis_ray.nvml import NvmlReader
from oasis_ray.power_probe import NoPowerProbe, NvmlPowerProbe, open_gpu_probe

DEFAULT_SM_MHZ = 1980


@dataclass(eq=False)
class FakeGpu:
    """Compared by identity: two GPUs with the same readings are still two GPUs."""

    sm_mhz: int = DEFAULT_SM_MHZ
    energy_mj: int | None = 7_000_000
    lock_error: pynvml.NVMLError | None = None
    locked: tuple[int, int] | None = None


@dataclass
class FakeNvmlForUnitTests:
    """Stands in for pynvml: the calls NvmlReader and the clock lock make, with pynvml's own errors.

    `calls` records every setter, so a test can see exactly what was changed and restored.
    """

    gpus: list[FakeGpu]
    init_error: pynvml.NVMLError | None = None
    initialised: bool = False
    calls: list[tuple[object, ...]] = field(default_factory=list)

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return f"GPU-{self.gpus.index(gpu)}"

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return "NVIDIA A100-SXM4-80GB"

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return 250_000

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        if gpu.energy_mj is None:
            raise pynvml.NVMLError_NotSupported()
        gpu.energy_mj += 1_000
        return gpu.energy_mj

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        return gpu.sm_mhz if clock == pynvml.NVML_CLOCK_SM else 1593

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(gpu=90, memory=40)

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(used=1 << 30, total=80 << 30)

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        return 0

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> list[int]:
        raise pynvml.NVMLError_NotSupported()

    def nvmlDeviceSetGpuLockedClocks(self, gpu: FakeGpu, low: int, high: int) -> None:
        self.calls.append(("lock", self.gpus.index(gpu), low, high))
        if gpu.lock_error is not None:
            raise gpu.lock_error
        gpu.locked, gpu.sm_mhz = (low, high), high

    def nvmlDeviceResetGpuLockedClocks(self, gpu: FakeGpu) -> None:
        self.calls.append(("reset", self.gpus.index(gpu)))
        gpu.locked, gpu.sm_mhz = None, DEFAULT_SM_MHZ


def test_clock_is_locked_inside_the_block_and_reset_after() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu(), FakeGpu()])
    with locked_sm_clock(1, 1410, nvml=fake) as lock:
        assert lock == ClockLock(requested_mhz=1410, locked=True, observed_sm_mhz=1410, note=None)
        assert fake.gpus[1].locked == (1410, 1410) and fake.gpus[0].locked is None
    assert fake.gpus[1].locked is None
    assert fake.calls == [("lock", 1, 1410, 1410), ("reset", 1)]
    assert not fake.initialised


def test_clock_is_reset_even_when_the_trial_fails() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu()])
    with pytest.raises(RuntimeError, match="engine OOM"), locked_sm_clock(0, 1200, nvml=fake):
        raise RuntimeError("engine OOM")
    assert fake.calls == [("lock", 0, 1200, 1200), ("reset", 0)]
    assert fake.gpus[0].locked is None and not fake.initialised


@pytest.mark.parametrize(
    ("error", "reason"),
    [(pynvml.NVMLError_NoPermission(), "Insufficient Permissions"), (pynvml.NVMLError_NotSupported(), "Not Supported")],
)
def test_a_refused_lock_runs_unlocked_and_says_so_with_the_observed_clock(error: pynvml.NVMLError, reason: str) -> None:
    fake = FakeNvmlForUnitTests([FakeGpu(lock_error=error)])
    with locked_sm_clock(0, 1410, nvml=fake) as lock:
        assert lock == ClockLock(
            requested_mhz=1410,
            locked=False,
            observed_sm_mhz=DEFAULT_SM_MHZ,
            note=f"clock lock refused by NVML: {reason}",
        )
    assert fake.calls == [("lock", 0, 1410, 1410)], "nothing was locked, so nothing is reset"


def test_without_nvml_the_trial_runs_unlocked_with_nvmls_reason() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu()], init_error=pynvml.NVMLError_DriverNotLoaded())
    with locked_sm_clock(0, 1410, nvml=fake) as lock:
        assert not lock.locked and lock.observed_sm_mhz is None
        assert lock.note == "nvmlInit failed: Driver Not Loaded"
    assert fake.calls == []


def test_no_requested_clock_only_observes() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu(sm_mhz=1755)])
    with locked_sm_clock(0, None, nvml=fake) as lock:
        assert lock == ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=1755, note=None)
    assert fake.calls == [] and not fake.initialised


def test_a_clock_the_gpu_cannot_run_fails_the_trial_and_leaves_nothing_locked() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu(lock_error=pynvml.NVMLError_InvalidArgument())])
    with pytest.raises(pynvml.NVMLError_InvalidArgument), locked_sm_clock(0, 99_999, nvml=fake):
        pytest.fail("the block must not run")
    assert fake.gpus[0].locked is None and not fake.initialised


def test_gpu_probe_reads_the_energy_counter_and_clock() -> None:
    fake = FakeNvmlForUnitTests([FakeGpu(sm_mhz=1500)])
    probe = open_gpu_probe(0, nvml=fake)
    first, second = probe.read(), probe.read()
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
    probe = NvmlPowerProbe(NvmlReader(FakeNvmlForUnitTests([FakeGpu(energy_mj=None)])), 0)
    assert probe.unavailable_reason == "this GPU has no total-energy counter"
    assert probe.read().energy_mj is None


def test_without_nvml_the_probe_reads_nothing_and_keeps_the_reason() -> None:
    probe = open_gpu_probe(0, nvml=FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_LibraryNotFound()))
    assert isinstance(probe, NoPowerProbe)
    assert probe.unavailable_reason == "NVML unavailable: nvmlInit failed: NVML Shared Library Not Found"
    reading = probe.read()
    assert (reading.energy_mj, reading.sm_clock_mhz) == (None, None)
