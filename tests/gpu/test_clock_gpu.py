"""The clock lock and the trial power probe on a real GPU; skipped, with NVML's reason, where there is none.

The lock is the one GPU setting oasis-ray changes, and only inside
`locked_sm_clock`, which resets it on the way out; where this process may
not lock clocks the test checks that it says so instead.
"""

from __future__ import annotations

import time

import pynvml
import pytest

from oasis_ray.profiling.clock_control import locked_sm_clock
from oasis_ray.profiling.power_probe import open_gpu_probe

GPU_INDEX = 0
INTERVAL_S = 1.0


def _mid_supported_sm_clock() -> int:
    """A clock this GPU supports at its current memory clock, so the lock is a request it can honour."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    memory_mhz = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    clocks = sorted(pynvml.nvmlDeviceGetSupportedGraphicsClocks(handle, memory_mhz))
    print(f"GPU {GPU_INDEX}: {len(clocks)} supported SM clocks at memory {memory_mhz} MHz, {clocks[0]}-{clocks[-1]}")
    return clocks[len(clocks) // 2]


@pytest.mark.usefixtures("nvml_reader")
def test_lock_is_taken_or_refused_with_a_reason() -> None:
    clock = _mid_supported_sm_clock()
    with locked_sm_clock(GPU_INDEX, clock) as lock:
        print(f"requested {clock} MHz: {lock}")
        assert lock.requested_mhz == clock
        assert lock.observed_sm_mhz is not None and lock.observed_sm_mhz > 0
        if not lock.locked:
            assert lock.note and lock.note.startswith("clock lock refused by NVML: ")


@pytest.mark.usefixtures("nvml_reader")
def test_probe_reads_a_rising_energy_counter() -> None:
    probe = open_gpu_probe(GPU_INDEX)
    try:
        first = probe.read()
        time.sleep(INTERVAL_S)
        second = probe.read()
    finally:
        probe.close()
    print(f"{probe.device_name} (driver {probe.driver_version}): {first} -> {second}")
    assert probe.device_name and probe.unavailable_reason is None
    assert first.energy_mj is not None and second.energy_mj is not None and second.energy_mj > first.energy_mj
    assert second.sm_clock_mhz is not None and second.sm_clock_mhz > 0
