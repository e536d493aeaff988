"""The GPU-settings keeper on a real GPU; skipped, with NVML's reason, where there is none.

Advisory by default: it resolves the replica's GPU through NVML and names it,
changing nothing. Only with OASIS_GPU_MAY_SET=1 does it apply a clock and a
power limit through a lease and check that releasing the lease puts both back
(or, without permission, that it says so and changes nothing).
"""

from __future__ import annotations

import os

import pynvml
import pytest

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.gpu_control.keeper import LeaseRequest, SettingsKeeper
from oasis_ray.telemetry.nvml import NvmlReader

GPU_INDEX = 0


def _request(mode: str, setting: DeviceSetting) -> LeaseRequest:
    return LeaseRequest(holder="gpu-test", app="gpu-test", route="m/r", shape="full-gpu", mode=mode,
                        setting=setting, visible_ids=(str(GPU_INDEX),))


def _limits_now() -> tuple[int, int]:
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    return pynvml.nvmlDeviceGetPowerManagementLimit(handle), pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)


def test_advisory_names_the_real_gpu_and_changes_nothing(nvml_reader: NvmlReader) -> None:
    sample = nvml_reader.sample(GPU_INDEX)
    power_before, _ = _limits_now()
    status = SettingsKeeper().acquire(_request("advisory", DeviceSetting(sm_clock_mhz=1000, power_limit_w=200)))
    print(status.line())
    [device] = status.devices
    assert device.state == "advisory" and device.gpu == f"GPU {GPU_INDEX} ({sample.name}, {sample.uuid})"
    assert _limits_now()[0] == power_before


@pytest.mark.skipif(os.environ.get("OASIS_GPU_MAY_SET") != "1", reason="changes the GPU's clock and power limit; "
                    "set OASIS_GPU_MAY_SET=1 to allow it")
def test_an_applied_setting_is_restored_on_release(nvml_reader: NvmlReader) -> None:
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    low_w, _high_w = (mw // 1000 for mw in pynvml.nvmlDeviceGetPowerManagementLimitConstraints(handle))
    memory_mhz = pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM)
    clocks = sorted(pynvml.nvmlDeviceGetSupportedGraphicsClocks(handle, memory_mhz))
    setting = DeviceSetting(sm_clock_mhz=clocks[len(clocks) // 2], power_limit_w=low_w)
    power_before, _ = _limits_now()
    keeper = SettingsKeeper()
    status = keeper.acquire(_request("apply", setting))
    print(status.line(), _limits_now())
    [device] = status.devices
    if device.state == "refused":
        assert "NVML refused" in (device.note or "")
    else:
        assert device.state == "set" and _limits_now()[0] == low_w * 1000
    keeper.release("gpu-test")
    assert _limits_now()[0] == power_before
