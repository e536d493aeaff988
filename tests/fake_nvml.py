"""A unit-test stand-in for the pynvml module, at the NVML boundary and nowhere else.

NvmlReader, locked_sm_clock, open_gpu_probe and the MIG command all take the
pynvml module as a parameter, so passing this fake runs their own code
unchanged on a machine without a GPU. It answers only the calls they make,
from FakeGpu records a test sets up and changes; its error classes and
constants are pynvml's own, so the production `except` clauses are exercised
for real. tests/gpu covers the same code against real NVML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TypeVar

import pynvml

T = TypeVar("T")

GIB = 1 << 30
DEFAULT_SM_MHZ = 1980
DEFAULT_POWER_LIMIT_MW = 700_000


@dataclass(eq=False)
class FakeGpu:
    """A physical GPU or a MIG slice; readings are in NVML's units (mW, mJ, MHz, bytes).

    Compared by identity: two GPUs with the same readings are still two GPUs.
    `errors` maps an NVML call's name to the error that call raises for this
    GPU, as the driver would: NotSupported for a metric it lacks, GpuIsLost, a
    refused clock lock. `locked` is the (min, max) SM clock lock, if any;
    `power_limit_mw` the board's power limit.
    """

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int = 312_456
    energy_mj: int = 9_876_543_210
    sm_mhz: int = DEFAULT_SM_MHZ
    mem_mhz: int = 2619
    util_pct: int = 87
    mem_used: int = 40 * GIB
    mem_total: int = 80 * GIB
    throttle: int = 0x4
    mig_mode: int = pynvml.NVML_DEVICE_MIG_DISABLE
    mig_slots: list[FakeGpu | None] = field(default_factory=list)
    locked: tuple[int, int] | None = None
    power_limit_mw: int = DEFAULT_POWER_LIMIT_MW
    enforced_limit_mw: int = DEFAULT_POWER_LIMIT_MW
    default_limit_mw: int = DEFAULT_POWER_LIMIT_MW
    limit_range_mw: tuple[int, int] = (200_000, DEFAULT_POWER_LIMIT_MW)
    errors: dict[str, pynvml.NVMLError] = field(default_factory=dict)


def not_supported(*calls: str) -> dict[str, pynvml.NVMLError]:
    """FakeGpu.errors for a GPU or driver that lacks these calls' metrics."""
    return {call: pynvml.NVMLError_NotSupported() for call in calls}


def mig_slice(uuid: str, profile: str, memory_gib: int, used_gib: int = 0) -> FakeGpu:
    """A MIG device handle as NVML answers for one: its own name and memory, NotSupported for board-wide metrics.

    NVML documents utilisation as not supported on MIG-enabled GPUs; power,
    the energy counter and clocks are measured for the whole board only.
    """
    return FakeGpu(
        uuid=uuid,
        name=f"NVIDIA H100 80GB HBM3 MIG {profile}",
        mem_used=used_gib * GIB,
        mem_total=memory_gib * GIB,
        errors=not_supported(
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetTotalEnergyConsumption",
            "nvmlDeviceGetClockInfo",
        ),
    )


def _answer(gpu: FakeGpu, call: str, value: T) -> T:
    """`value`, unless the test made `call` fail on this GPU."""
    error = gpu.errors.get(call)
    if error is not None:
        raise error
    return value


class FakeNvmlForUnitTests:
    """Stands in for the pynvml module: NvmlReader's reads (power limits included), the MIG calls, the clock lock and power limit.

    `calls` records every setter call in order, so a test sees exactly what
    was changed on which GPU and whether it was restored.
    """

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVMLError_FunctionNotFound = pynvml.NVMLError_FunctionNotFound
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_InvalidArgument = pynvml.NVMLError_InvalidArgument
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE

    def __init__(self, gpus: list[FakeGpu], init_error: pynvml.NVMLError | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialised = False
        self.calls: list[tuple[object, ...]] = []

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlShutdown(self) -> None:
        if not self.initialised:
            raise pynvml.NVMLError_Uninitialized()
        self.initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        return self.gpus[index]

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        return _answer(gpu, "nvmlDeviceGetUUID", gpu.uuid)

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        return _answer(gpu, "nvmlDeviceGetName", gpu.name)

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetPowerUsage", gpu.power_mw)

    def nvmlDeviceGetTotalEnergyConsumption(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetTotalEnergyConsumption", gpu.energy_mj)

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        sm_mhz = gpu.sm_mhz if gpu.locked is None else gpu.locked[1]
        return _answer(gpu, "nvmlDeviceGetClockInfo", sm_mhz if clock == pynvml.NVML_CLOCK_SM else gpu.mem_mhz)

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        return _answer(gpu, "nvmlDeviceGetUtilizationRates", SimpleNamespace(gpu=gpu.util_pct, memory=0))

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        return _answer(gpu, "nvmlDeviceGetMemoryInfo", SimpleNamespace(used=gpu.mem_used, total=gpu.mem_total))

    def nvmlDeviceGetCurrentClocksEventReasons(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetCurrentClocksEventReasons", gpu.throttle)

    def nvmlDeviceGetPowerManagementLimit(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetPowerManagementLimit", gpu.power_limit_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetEnforcedPowerLimit", gpu.enforced_limit_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetPowerManagementDefaultLimit", gpu.default_limit_mw)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, gpu: FakeGpu) -> list[int]:
        return _answer(gpu, "nvmlDeviceGetPowerManagementLimitConstraints", list(gpu.limit_range_mw))

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> list[int]:
        mode = _answer(gpu, "nvmlDeviceGetMigMode", gpu.mig_mode)
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, gpu: FakeGpu) -> int:
        return _answer(gpu, "nvmlDeviceGetMaxMigDeviceCount", len(gpu.mig_slots))

    def nvmlDeviceGetMigDeviceHandleByIndex(self, gpu: FakeGpu, slot: int) -> FakeGpu:
        device = _answer(gpu, "nvmlDeviceGetMigDeviceHandleByIndex", gpu.mig_slots[slot])
        if device is None:
            raise pynvml.NVMLError_NotFound()
        return device

    def nvmlDeviceSetGpuLockedClocks(self, gpu: FakeGpu, low: int, high: int) -> None:
        self.calls.append(("lock", self.gpus.index(gpu), low, high))
        gpu.locked = _answer(gpu, "nvmlDeviceSetGpuLockedClocks", (low, high))

    def nvmlDeviceResetGpuLockedClocks(self, gpu: FakeGpu) -> None:
        self.calls.append(("reset", self.gpus.index(gpu)))
        gpu.locked = None

    def nvmlDeviceSetPowerManagementLimit(self, gpu: FakeGpu, limit_mw: int) -> None:
        self.calls.append(("power", self.gpus.index(gpu), limit_mw))
        gpu.power_limit_mw = _answer(gpu, "nvmlDeviceSetPowerManagementLimit", limit_mw)
