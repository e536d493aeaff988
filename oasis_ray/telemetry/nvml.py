"""Read-only GPU telemetry through NVML (nvidia-ml-py, imported as `pynvml`).

Energy figures are only worth publishing if they are measured, so this module
never fills a gap with a guess: a GPU that cannot be reached raises
NvmlUnavailable with NVML's own reason, and a metric one GPU does not offer is
None and named in `unsupported`, never 0 (a 0 W reading would silently poison
every joules-per-token figure computed from it).

It is also strictly read-only: it calls no NVML setter (clocks, power limits,
MIG layout), though it reads them (`power_limits`), because a monitoring library must not change the behaviour of
the machine it measures, nor need the privileges to do so.

The pynvml module is the one seam: NvmlReader(nvml=fake) lets tests run the
same code without a GPU.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, TypeVar

import pynvml
from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

_MIG_PROFILE = re.compile(r"\bMIG\s+(\S+)$")


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this machine; the message says why (no driver, no GPU, ...)."""


class MigSample(BaseModel):
    """One MIG device, read from its own handle when its parent GPU is sampled.

    Only what NVML meters per MIG device is here: its own memory, and the
    utilisation it is asked for (NVML documents utilisation as not supported
    on MIG-enabled GPUs, so that is normally None and listed in `unsupported`).
    Power, the energy counter, clocks and throttle reasons stay on the parent's
    GpuSample: they belong to the whole board, and a copy per slice would read
    as a per-slice measurement and be counted once per slice in any sum.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    parent_index: int
    slot: int
    uuid: str
    profile: str
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    gpu_util_pct: int | None
    unsupported: tuple[str, ...] = ()


class GpuSample(BaseModel):
    """One GPU at one instant; a metric that GPU does not offer is None and listed in `unsupported`.

    `mig_devices` is empty unless MIG mode is on: with MIG on, memory and work
    are split between the slices, so the slices are where they can be measured.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    uuid: str
    name: str
    driver_version: str
    power_w: float | None
    energy_mj: int | None
    sm_clock_mhz: int | None
    mem_clock_mhz: int | None
    gpu_util_pct: int | None
    mem_used_bytes: int | None
    throttle_reasons: int | None
    mig_mode_enabled: bool | None
    timestamp_s: float
    unsupported: tuple[str, ...] = ()
    mig_devices: tuple[MigSample, ...] = ()


class PowerLimits(BaseModel):
    """A GPU's power limits as NVML reports them, in watts; None (and named in `unsupported`) where not offered.

    `limit_w` is the limit set now, `enforced_w` the one in force (the lowest
    of every limit applied, e.g. by an out-of-band cap), `default_w` the
    board's default, and `min_w`/`max_w` the range a limit may be set in.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    limit_w: float | None
    enforced_w: float | None
    default_w: float | None
    min_w: float | None
    max_w: float | None
    unsupported: tuple[str, ...] = ()


class MigDevice(BaseModel):
    """One MIG slice of a physical GPU, as CUDA_VISIBLE_DEVICES and Ray address it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    parent_index: int
    uuid: str
    profile: str
    memory_bytes: int


def mig_profile(device_name: str) -> str:
    """The MIG profile ("1g.10gb") from a MIG device name ("NVIDIA H100 80GB HBM3 MIG 1g.10gb").

    NVML names every MIG device "<parent name> MIG <profile>"; the name is the
    one place the profile appears without a second, privileged query of the GPU
    instance. A name in any other form raises rather than yield a made-up profile.
    """
    match = _MIG_PROFILE.search(device_name)
    if match is None:
        raise ValueError(f"cannot read a MIG profile from device name {device_name!r}")
    return match.group(1)


class NvmlReader:
    """An open NVML session; NVML is initialised on construction and shut down on close/exit.

    Initialising in the constructor means a reader that exists can read: code
    holding one never has to handle "no GPU" again.
    """

    def __init__(self, nvml: ModuleType | None = None) -> None:
        nvml = pynvml if nvml is None else nvml
        self._nvml: Any = nvml
        self._unsupported = (nvml.NVMLError_NotSupported, nvml.NVMLError_FunctionNotFound, nvml.NVMLError_NoPermission)
        self._open = False
        self._open_session()

    def _open_session(self) -> None:
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as error:
            raise NvmlUnavailable(f"nvmlInit failed: {error}") from error
        self._open = True
        try:
            self._driver_version = self._nvml.nvmlSystemGetDriverVersion()
            count = self._nvml.nvmlDeviceGetCount()
        except self._nvml.NVMLError as error:
            self.close()
            raise NvmlUnavailable(f"NVML initialised but cannot list GPUs: {error}") from error
        if count == 0:
            self.close()
            raise NvmlUnavailable(f"NVML initialised (driver {self._driver_version}) but reports no GPU")

    def close(self) -> None:
        if self._open:
            self._open = False
            self._nvml.nvmlShutdown()

    def __enter__(self) -> NvmlReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def driver_version(self) -> str:
        return self._driver_version

    def device_count(self) -> int:
        return self._nvml.nvmlDeviceGetCount()

    def sample(self, index: int) -> GpuSample:
        """The energy counter is read first and stamped at once: counter deltas are divided by these times."""
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        missing: list[str] = []
        optional = functools.partial(self._optional, missing=missing)
        energy_mj = optional("energy_mj", lambda: nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        timestamp_s = time.time()
        power_mw = optional("power_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        sample = GpuSample(
            index=index,
            uuid=nvml.nvmlDeviceGetUUID(handle),
            name=nvml.nvmlDeviceGetName(handle),
            driver_version=self._driver_version,
            power_w=None if power_mw is None else power_mw / 1000.0,
            energy_mj=energy_mj,
            sm_clock_mhz=optional("sm_clock_mhz", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)),
            mem_clock_mhz=optional("mem_clock_mhz", lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)),
            gpu_util_pct=optional("gpu_util_pct", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            mem_used_bytes=optional("mem_used_bytes", lambda: nvml.nvmlDeviceGetMemoryInfo(handle).used),
            throttle_reasons=optional(
                "throttle_reasons", lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)
            ),
            mig_mode_enabled=optional("mig_mode_enabled", lambda: self._mig_enabled(handle)),
            timestamp_s=timestamp_s,
            unsupported=tuple(missing),
        )
        if not sample.mig_mode_enabled:
            return sample
        return sample.model_copy(update={"mig_devices": self._sample_mig_devices(index, handle)})

    def sample_all(self) -> list[GpuSample]:
        return [self.sample(index) for index in range(self.device_count())]

    def power_limits(self, index: int) -> PowerLimits:
        """Read only: what the limits are, for a caller that would change one to restore it exactly."""
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        missing: list[str] = []
        optional = functools.partial(self._optional, missing=missing)
        limit_mw = optional("limit_w", lambda: nvml.nvmlDeviceGetPowerManagementLimit(handle))
        enforced_mw = optional("enforced_w", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        default_mw = optional("default_w", lambda: nvml.nvmlDeviceGetPowerManagementDefaultLimit(handle))
        constraints = optional("min_w", lambda: nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle))
        if constraints is None:
            missing.append("max_w")
        low_mw, high_mw = constraints if constraints is not None else (None, None)
        return PowerLimits(
            index=index,
            limit_w=_watts(limit_mw),
            enforced_w=_watts(enforced_mw),
            default_w=_watts(default_mw),
            min_w=_watts(low_mw),
            max_w=_watts(high_mw),
            unsupported=tuple(missing),
        )

    def mig_mode_enabled(self, index: int) -> bool | None:
        """None where the GPU has no MIG at all, so "off" and "impossible" stay distinct."""
        handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return self._optional("mig_mode_enabled", lambda: self._mig_enabled(handle), [])

    def mig_devices(self, index: int) -> list[MigDevice]:
        """The MIG slices that exist now on GPU `index`; empty where MIG is off or unsupported."""
        if not self.mig_mode_enabled(index):
            return []
        nvml = self._nvml
        return [
            MigDevice(
                parent_index=index,
                uuid=nvml.nvmlDeviceGetUUID(handle),
                profile=mig_profile(nvml.nvmlDeviceGetName(handle)),
                memory_bytes=nvml.nvmlDeviceGetMemoryInfo(handle).total,
            )
            for _slot, handle in self._mig_handles(nvml.nvmlDeviceGetHandleByIndex(index))
        ]

    def _sample_mig_device(self, parent_index: int, slot: int, handle: object) -> MigSample:
        """Read through the slice's own handle: NVML meters memory per MIG device only there.

        On the parent handle NVML gives the aggregate at best, and only to a
        privileged caller.
        """
        nvml = self._nvml
        missing: list[str] = []
        optional = functools.partial(self._optional, missing=missing)
        memory = optional("mem_used_bytes", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is None:
            missing.append("mem_total_bytes")
        return MigSample(
            parent_index=parent_index,
            slot=slot,
            uuid=nvml.nvmlDeviceGetUUID(handle),
            profile=mig_profile(nvml.nvmlDeviceGetName(handle)),
            mem_used_bytes=memory.used if memory is not None else None,
            mem_total_bytes=memory.total if memory is not None else None,
            gpu_util_pct=optional("gpu_util_pct", lambda: nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
            unsupported=tuple(missing),
        )

    def _sample_mig_devices(self, index: int, parent: object) -> tuple[MigSample, ...]:
        return tuple(self._sample_mig_device(index, slot, handle) for slot, handle in self._mig_handles(parent))

    def _mig_handles(self, parent: object) -> Iterator[tuple[int, object]]:
        """(slot, handle) for each MIG device that exists; slots are sparse, an empty one is NotFound."""
        nvml = self._nvml
        for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(parent)):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
            except nvml.NVMLError_NotFound:
                continue
            yield slot, handle

    def _mig_enabled(self, handle: object) -> bool:
        current, _pending = self._nvml.nvmlDeviceGetMigMode(handle)
        return current == self._nvml.NVML_DEVICE_MIG_ENABLE

    def _optional(self, field: str, read: Callable[[], T], missing: list[str]) -> T | None:
        """Only "this GPU or driver lacks the metric" becomes None; other NVML errors (GPU lost, ...) propagate.

        FunctionNotFound counts as lacking: drivers older than the binding miss
        newer calls such as nvmlDeviceGetCurrentClocksEventReasons. So does
        NoPermission: in MIG mode the parent GPU's memory figure is offered to
        privileged readers only, and one withheld metric must not blank the rest.
        """
        try:
            return read()
        except self._unsupported:
            missing.append(field)
            return None


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def probe() -> str:
    """One line for logs and startup diagnostics: what NVML sees, or why it sees nothing."""
    try:
        with NvmlReader() as reader:
            samples = reader.sample_all()
    except NvmlUnavailable as error:
        return f"NVML unavailable: {error}"
    except pynvml.NVMLError as error:
        return f"NVML error while reading GPUs: {error}"
    names = sorted({sample.name for sample in samples})
    return f"{len(samples)} GPU(s): {', '.join(names)} (driver {samples[0].driver_version})"
