"""Lock a GPU's SM clock, and cap its power, for the length of a trial, and always give them back.

A trial's settings are kept apart from the read-only NVML reader and bounded
by context managers: the reset runs in `finally`, whatever the trial body
raises. (Serving replicas hold their settings for hours, across calls, as
leases: oasis_ray.gpu_control.) Where the process may not set a knob (no
root, a GPU or driver without it, no NVML at all) the trial still runs, at
whatever the GPU chooses; the lock or cap reports `locked=False` / `set=False`
with NVML's reason, so the cost table never files a default measurement
under a setting it did not run at.

An out-of-range value is not such a case: NVML's InvalidArgument propagates
and fails the trial, since the sweep asked for a setting this GPU cannot run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pynvml
from pydantic import BaseModel, ConfigDict

from oasis_ray.telemetry.nvml import NvmlReader, NvmlUnavailable


class ClockLock(BaseModel):
    """What a trial ran at: the requested SM clock, whether it was locked, and the clock seen after the attempt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requested_mhz: int | None
    locked: bool
    observed_sm_mhz: int | None
    note: str | None


@contextmanager
def locked_sm_clock(gpu_index: int, clock_mhz: int | None, nvml: ModuleType | None = None) -> Iterator[ClockLock]:
    """Hold the SM clock of GPU `gpu_index` at `clock_mhz` (min = max) inside the block.

    `clock_mhz=None` locks nothing and only observes. `nvml` replaces the
    pynvml module in tests, as with NvmlReader.
    """
    module: Any = pynvml if nvml is None else nvml
    try:
        reader = NvmlReader(module)
    except NvmlUnavailable as error:
        yield ClockLock(requested_mhz=clock_mhz, locked=False, observed_sm_mhz=None, note=str(error))
        return
    with reader:
        if clock_mhz is None:
            yield ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=_sm_clock(reader, gpu_index), note=None)
            return
        handle = module.nvmlDeviceGetHandleByIndex(gpu_index)
        refusal = None
        try:
            module.nvmlDeviceSetGpuLockedClocks(handle, clock_mhz, clock_mhz)
        except (module.NVMLError_NoPermission, module.NVMLError_NotSupported) as error:
            refusal = f"clock lock refused by NVML: {error}"
        if refusal is not None:
            yield ClockLock(
                requested_mhz=clock_mhz, locked=False, observed_sm_mhz=_sm_clock(reader, gpu_index), note=refusal
            )
            return
        try:
            yield ClockLock(
                requested_mhz=clock_mhz, locked=True, observed_sm_mhz=_sm_clock(reader, gpu_index), note=None
            )
        finally:
            module.nvmlDeviceResetGpuLockedClocks(handle)


def _sm_clock(reader: NvmlReader, gpu_index: int) -> int | None:
    return reader.sample(gpu_index).sm_clock_mhz


class PowerCap(BaseModel):
    """What a trial ran under: the requested power limit, whether it was set, and why not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requested_w: int | None
    set: bool
    note: str | None


@contextmanager
def capped_power(gpu_index: int, power_limit_w: int | None, nvml: ModuleType | None = None) -> Iterator[PowerCap]:
    """Hold GPU `gpu_index`'s power limit at `power_limit_w` inside the block, then set back the limit it had.

    `power_limit_w=None` changes nothing.
    """
    if power_limit_w is None:
        yield PowerCap(requested_w=None, set=False, note=None)
        return
    module: Any = pynvml if nvml is None else nvml
    try:
        reader = NvmlReader(module)
    except NvmlUnavailable as error:
        yield PowerCap(requested_w=power_limit_w, set=False, note=str(error))
        return
    with reader:
        handle = module.nvmlDeviceGetHandleByIndex(gpu_index)
        try:
            previous_mw = module.nvmlDeviceGetPowerManagementLimit(handle)
            module.nvmlDeviceSetPowerManagementLimit(handle, power_limit_w * 1000)
        except (module.NVMLError_NoPermission, module.NVMLError_NotSupported) as error:
            yield PowerCap(requested_w=power_limit_w, set=False, note=f"power limit refused by NVML: {error}")
            return
        try:
            yield PowerCap(requested_w=power_limit_w, set=True, note=None)
        finally:
            module.nvmlDeviceSetPowerManagementLimit(handle, previous_mw)
