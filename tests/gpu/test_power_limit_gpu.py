"""Power limits on a real GPU: read back always, set and restored only with OASIS_GPU_MAY_SET=1.

oasis-ray does not cap power yet; these tests pin down what NVML reports and
accepts on the machine, so a run-time power cap can rely on it. Setting a
limit needs root (or the right to manage the GPU); without it the test
checks that NVML refuses with NoPermission and leaves the limit as it was.
"""

from __future__ import annotations

import pynvml

from oasis_ray.telemetry.nvml import NvmlReader

GPU_INDEX = 0
# Far enough below the current limit to be a real change, never below what the board accepts.
CAP_SHARE = 0.9


def test_power_limits_read_back_consistently(nvml_reader: NvmlReader) -> None:
    limits = nvml_reader.power_limits(GPU_INDEX)
    print(limits)
    assert limits.limit_w is not None and limits.limit_w > 0, limits.unsupported
    assert limits.enforced_w is not None and 0 < limits.enforced_w, limits.unsupported
    if limits.min_w is not None and limits.max_w is not None:
        assert 0 < limits.min_w <= limits.limit_w <= limits.max_w
    if limits.default_w is not None and limits.max_w is not None:
        assert limits.default_w <= limits.max_w


def test_a_power_limit_is_set_read_back_and_restored(may_set: NvmlReader) -> None:
    before = may_set.power_limits(GPU_INDEX)
    assert before.limit_w is not None and before.min_w is not None, before.unsupported
    cap_w = max(before.min_w, round(before.limit_w * CAP_SHARE))
    handle = pynvml.nvmlDeviceGetHandleByIndex(GPU_INDEX)
    try:
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, int(cap_w * 1000))
    except pynvml.NVMLError_NoPermission as refusal:
        print(f"setting {cap_w} W refused: {refusal}")
        assert may_set.power_limits(GPU_INDEX).limit_w == before.limit_w
        return
    try:
        during = may_set.power_limits(GPU_INDEX)
        print(f"set {cap_w} W: {during}")
        assert during.limit_w == cap_w
        assert during.enforced_w is not None and during.enforced_w <= cap_w
    finally:
        pynvml.nvmlDeviceSetPowerManagementLimit(handle, int(before.limit_w * 1000))
    assert may_set.power_limits(GPU_INDEX).limit_w == before.limit_w
