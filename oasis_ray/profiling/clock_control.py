"""Lock a GPU's SM clock for the length of a trial, and always give it back.

This is the one place oasis-ray changes a GPU setting, so it is kept apart
from the read-only NVML reader and bounded by a context manager: the reset
runs in `finally`, whatever the trial body raises. Where the process may not
lock clocks (no root, a GPU or driver without locked clocks, no NVML at all)
the trial still runs, at whatever clock the GPU chooses; the lock reports
`locked=False` with NVML's reason and the clock it observed, so the cost
table never files a default-clock measurement under a locked clock.

An out-of-range clock is not such a case: NVML's InvalidArgument propagates
and fails the trial, since the sweep asked for a clock this GPU cannot run.
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
