"""Setting and restoring one GPU's SM clock lock and power limit through NVML, at serving time.

The profiler locks a clock only for one trial (oasis_ray.profiling.clock_control);
a serving replica holds its setting for hours, across calls, so what must be
undone is kept as data (`Undo`) by whoever holds the setting, not in a
`finally`. Only what was actually changed is undone: a clock lock is reset
(NVML has no reader for a lock, and a GPU left to the driver has none), a
power limit is set back to the value read before the first change.

A knob NVML refuses (no permission, not supported, a value out of range) is
reported with NVML's reason and left alone; the replica serves on at the
GPU's own setting. Any other NVML error (GPU lost, ...) propagates.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from oasis_ray.device_setting import DeviceSetting


class Undo(BaseModel):
    """What must be put back on one GPU: its clock lock, and the power limit it had before (mW)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clock_locked: bool = False
    power_limit_mw: int | None = None

    @property
    def nothing(self) -> bool:
        return not self.clock_locked and self.power_limit_mw is None


class KnobResult(BaseModel):
    """One knob of a setting on one GPU: applied, or refused with NVML's reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    knob: str
    value: int
    applied: bool
    note: str | None = None


def _refusals(nvml: Any) -> tuple[type[Exception], ...]:
    return (nvml.NVMLError_NoPermission, nvml.NVMLError_NotSupported, nvml.NVMLError_InvalidArgument)


def apply(nvml: Any, handle: object, setting: DeviceSetting, undo: Undo) -> tuple[Undo, list[KnobResult]]:
    """Bring the GPU to `setting` from where `undo` says it was left; knobs the setting leaves None are undone."""
    results: list[KnobResult] = []
    clock_locked, power_mw = undo.clock_locked, undo.power_limit_mw
    if setting.sm_clock_mhz is not None:
        try:
            nvml.nvmlDeviceSetGpuLockedClocks(handle, setting.sm_clock_mhz, setting.sm_clock_mhz)
            clock_locked = True
            results.append(KnobResult(knob="sm_clock_mhz", value=setting.sm_clock_mhz, applied=True))
        except _refusals(nvml) as error:
            results.append(KnobResult(knob="sm_clock_mhz", value=setting.sm_clock_mhz, applied=False,
                                      note=f"NVML refused the clock lock: {error}"))
    elif clock_locked:
        nvml.nvmlDeviceResetGpuLockedClocks(handle)
        clock_locked = False
    if setting.power_limit_w is not None:
        try:
            before = power_mw if power_mw is not None else nvml.nvmlDeviceGetPowerManagementLimit(handle)
            nvml.nvmlDeviceSetPowerManagementLimit(handle, setting.power_limit_w * 1000)
            power_mw = before
            results.append(KnobResult(knob="power_limit_w", value=setting.power_limit_w, applied=True))
        except _refusals(nvml) as error:
            results.append(KnobResult(knob="power_limit_w", value=setting.power_limit_w, applied=False,
                                      note=f"NVML refused the power limit: {error}"))
    elif power_mw is not None:
        nvml.nvmlDeviceSetPowerManagementLimit(handle, power_mw)
        power_mw = None
    return Undo(clock_locked=clock_locked, power_limit_mw=power_mw), results


def restore(nvml: Any, handle: object, undo: Undo) -> None:
    """Put back what `undo` records; both knobs are attempted even if the first fails, then the error is raised."""
    errors: list[Exception] = []
    if undo.clock_locked:
        try:
            nvml.nvmlDeviceResetGpuLockedClocks(handle)
        except nvml.NVMLError as error:
            errors.append(error)
    if undo.power_limit_mw is not None:
        try:
            nvml.nvmlDeviceSetPowerManagementLimit(handle, undo.power_limit_mw)
        except nvml.NVMLError as error:
            errors.append(error)
    if errors:
        raise errors[0]
