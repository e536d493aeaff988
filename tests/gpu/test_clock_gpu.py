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
from oasis_ray.profiling.power_probe import open_gpu_probe, sample_engine_idle

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


@pytest.mark.usefixtures("nvml_reader")
def test_engine_idle_sampling_gives_a_board_power_within_its_limit() -> None:
    """What a GPU trial records as engine_idle_power_w, here with no engine: the idle board's power."""
    probe = open_gpu_probe(GPU_INDEX)
    try:
        idle = sample_engine_idle(probe, INTERVAL_S)
    finally:
        probe.close()
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    limit_w = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
    print(f"{probe.device_name}: {idle.watts:.1f} W over {INTERVAL_S} s (limit {limit_w:.0f} W)")
    assert idle.note is None and 0 < idle.watts < limit_w
