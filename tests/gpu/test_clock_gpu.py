"""Clock read-back, the clock lock and the trial power probe on a real GPU; skipped, with NVML's reason, without one.

The lock is the one GPU setting oasis-ray changes, and only inside
`locked_sm_clock`, which resets it on the way out; its test runs only with
OASIS_GPU_MAY_SET=1 (see conftest.py), and where this process may not lock
clocks it checks that the lock says so instead. Reading clocks back needs
no permission.
"""

from __future__ import annotations

import time

import pynvml
import pytest

from oasis_ray.profiling.clock_control import locked_sm_clock
from oasis_ray.profiling.power_probe import open_gpu_probe, sample_engine_idle
from oasis_ray.telemetry.nvml import NvmlReader

GPU_INDEX = 0
INTERVAL_S = 1.0


def _mid_supported_sm_clock() -> int:
    """A clock this GPU supports at its current memory clock, so the lock is a request it can honour."""
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    memory_mhz = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    clocks = sorted(pynvml.nvmlDeviceGetSupportedGraphicsClocks(handle, memory_mhz))
    print(f"GPU {GPU_INDEX}: {len(clocks)} supported SM clocks at memory {memory_mhz} MHz, {clocks[0]}-{clocks[-1]}")
    return clocks[len(clocks) // 2]


def test_clocks_read_back_without_changing_them(nvml_reader: NvmlReader) -> None:
    before = nvml_reader.sample(GPU_INDEX)
    with locked_sm_clock(GPU_INDEX, None) as observed:
        print(f"observed without a lock: {observed}")
        assert (observed.requested_mhz, observed.locked, observed.note) == (None, False, None)
        assert observed.observed_sm_mhz is not None and observed.observed_sm_mhz > 0
    after = nvml_reader.sample(GPU_INDEX)
    print(f"SM {before.sm_clock_mhz} -> {after.sm_clock_mhz} MHz, memory {before.mem_clock_mhz} MHz")
    assert before.mem_clock_mhz is not None and before.mem_clock_mhz > 0
    assert _mid_supported_sm_clock() > 0


@pytest.mark.usefixtures("may_set")
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


def test_engine_idle_sampling_gives_a_board_power_within_its_limit(nvml_reader: NvmlReader) -> None:
    """What a GPU trial records as engine_idle_power_w, here with no engine: the idle board's power."""
    probe = open_gpu_probe(GPU_INDEX)
    try:
        idle = sample_engine_idle(probe, INTERVAL_S)
    finally:
        probe.close()
    limit_w = nvml_reader.power_limits(GPU_INDEX).enforced_w
    assert limit_w is not None, "this GPU reports no enforced power limit"
    print(f"{probe.device_name}: {idle.watts:.1f} W over {INTERVAL_S} s (limit {limit_w:.0f} W)")
    assert idle.note is None and 0 < idle.watts < limit_w
