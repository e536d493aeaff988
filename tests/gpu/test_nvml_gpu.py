"""The real NVML reader on a real GPU; skipped, with NVML's reason, where there is none.

Read-only: it samples GPUs and MIG devices and changes no GPU setting, MIG layout
included, so where MIG is off the MIG tests can only check that none is reported.
"""

from __future__ import annotations

import time

from oasis_ray.telemetry.nvml import GpuSample, NvmlReader

INTERVAL_S = 1.0


def _show(sample: GpuSample) -> None:
    print(
        f"GPU {sample.index} {sample.name} ({sample.uuid}, driver {sample.driver_version}): "
        f"{sample.power_w} W, counter {sample.energy_mj} mJ, SM {sample.sm_clock_mhz} MHz, "
        f"mem {sample.mem_clock_mhz} MHz, util {sample.gpu_util_pct} %, used {sample.mem_used_bytes} B, "
        f"throttle {sample.throttle_reasons}, MIG {sample.mig_mode_enabled}, unsupported {sample.unsupported}"
    )


def test_samples_are_live_and_the_energy_counter_rises(nvml_reader: NvmlReader) -> None:
    first = nvml_reader.sample_all()
    time.sleep(INTERVAL_S)
    second = nvml_reader.sample_all()
    for before, after in zip(first, second, strict=True):
        _show(before)
        _show(after)
        assert before.uuid == after.uuid
        for sample in (before, after):
            assert sample.power_w is not None and sample.power_w > 0, sample
            assert sample.sm_clock_mhz is not None and sample.sm_clock_mhz > 0, sample
            assert sample.mem_clock_mhz is not None and sample.mem_clock_mhz > 0, sample
        assert before.energy_mj is not None and after.energy_mj is not None, after.unsupported
        assert after.energy_mj > before.energy_mj
        counter_w = (after.energy_mj - before.energy_mj) / 1000 / (after.timestamp_s - before.timestamp_s)
        sampled_w = (before.power_w + after.power_w) / 2
        print(f"GPU {after.index}: {counter_w:.1f} W from the energy counter, {sampled_w:.1f} W sampled")
        assert sampled_w / 4 < counter_w < sampled_w * 4, "counter and power readings disagree on units"


def test_mig_devices_are_listed(nvml_reader: NvmlReader) -> None:
    for index in range(nvml_reader.device_count()):
        mode = nvml_reader.mig_mode_enabled(index)
        devices = nvml_reader.mig_devices(index)
        print(f"GPU {index}: MIG mode {mode}, {len(devices)} MIG device(s)")
        for device in devices:
            print(f"  {device.uuid} {device.profile} {device.memory_bytes} B")
            assert device.parent_index == index and device.uuid and device.memory_bytes > 0
        if not mode:
            assert devices == []


def test_mig_devices_are_sampled_where_mig_is_on(nvml_reader: NvmlReader) -> None:
    for sample in nvml_reader.sample_all():
        listed = [device.uuid for device in nvml_reader.mig_devices(sample.index)]
        print(f"GPU {sample.index}: MIG mode {sample.mig_mode_enabled}, {len(sample.mig_devices)} MIG device(s)")
        assert [device.uuid for device in sample.mig_devices] == listed
        if not sample.mig_mode_enabled:
            assert sample.mig_devices == ()
        for device in sample.mig_devices:
            print(
                f"  slot {device.slot} {device.uuid} {device.profile}: used {device.mem_used_bytes} B "
                f"of {device.mem_total_bytes} B, util {device.gpu_util_pct} %, unsupported {device.unsupported}"
            )
            assert device.parent_index == sample.index and device.uuid.startswith("MIG-"), device
            assert device.mem_used_bytes is not None and device.mem_total_bytes is not None, device.unsupported
            assert 0 <= device.mem_used_bytes <= device.mem_total_bytes, device
            assert (device.gpu_util_pct is None) == ("gpu_util_pct" in device.unsupported), device
