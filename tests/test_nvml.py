"""NvmlReader, probe and the MIG command, without a GPU (through a fake pynvml) and on this machine."""

from __future__ import annotations

import inspect
import re
import time
from typing import Any

import pynvml
import pytest

from oasis_ray.telemetry import gpu_report, mig, nvml
from oasis_ray.telemetry.nvml import (
    GpuSample,
    MigDevice,
    MigSample,
    NvmlReader,
    NvmlUnavailable,
    PowerLimits,
    mig_profile,
    probe,
)
from tests.fake_nvml import GIB, FakeGpu, FakeNvmlForUnitTests, mig_slice, not_supported


def h100(index: int, **overrides: Any) -> FakeGpu:
    return FakeGpu(uuid=f"GPU-{index:08d}", **overrides)


def mig_h100() -> FakeGpu:
    return h100(
        0,
        mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE,
        errors=not_supported("nvmlDeviceGetUtilizationRates"),
        mig_slots=[
            mig_slice("MIG-aaaa", "1g.10gb", 10, used_gib=3),
            None,
            mig_slice("MIG-bbbb", "3g.40gb", 40, used_gib=12),
            mig_slice("MIG-cccc", "1g.10gb", 10, used_gib=1),
        ],
    )


def test_sample_converts_units_and_reads_every_metric() -> None:
    fake = FakeNvmlForUnitTests([h100(0)])
    before = time.time()
    with NvmlReader(fake) as reader:
        sample = reader.sample(0)
    assert sample == GpuSample(
        index=0,
        uuid="GPU-00000000",
        name="NVIDIA H100 80GB HBM3",
        driver_version="550.54.15",
        power_w=312.456,
        energy_mj=9_876_543_210,
        sm_clock_mhz=1980,
        mem_clock_mhz=2619,
        gpu_util_pct=87,
        mem_used_bytes=40 * GIB,
        throttle_reasons=0x4,
        mig_mode_enabled=False,
        timestamp_s=sample.timestamp_s,
        unsupported=(),
    )
    assert before <= sample.timestamp_s <= time.time()


def test_unsupported_metrics_are_none_and_named_never_zero() -> None:
    errors = not_supported("nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetMigMode")
    errors["nvmlDeviceGetCurrentClocksEventReasons"] = pynvml.NVMLError_FunctionNotFound()
    with NvmlReader(FakeNvmlForUnitTests([h100(0, errors=errors)])) as reader:
        sample = reader.sample(0)
    assert (sample.power_w, sample.energy_mj, sample.throttle_reasons, sample.mig_mode_enabled) == (None,) * 4
    assert sample.unsupported == ("energy_mj", "power_w", "throttle_reasons", "mig_mode_enabled")
    assert sample.sm_clock_mhz == 1980


def test_a_metric_withheld_from_this_reader_is_none_and_the_rest_still_read() -> None:
    gpu = h100(0, errors={"nvmlDeviceGetMemoryInfo": pynvml.NVMLError_NoPermission()})
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        sample = reader.sample(0)
    assert sample.mem_used_bytes is None and sample.unsupported == ("mem_used_bytes",)
    assert sample.power_w == 312.456


def test_other_nvml_errors_propagate_instead_of_becoming_none() -> None:
    gpu = h100(0, errors={"nvmlDeviceGetPowerUsage": pynvml.NVMLError_GpuIsLost()})
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            reader.sample(0)


def test_sample_all_covers_every_gpu_in_order() -> None:
    with NvmlReader(FakeNvmlForUnitTests([h100(0), h100(1, power_mw=70_000)])) as reader:
        samples = reader.sample_all()
    assert [(s.index, s.uuid, s.power_w) for s in samples] == [(0, "GPU-00000000", 312.456), (1, "GPU-00000001", 70.0)]


def test_reader_shuts_nvml_down_on_exit() -> None:
    fake = FakeNvmlForUnitTests([h100(0)])
    with NvmlReader(fake):
        assert fake.initialised
    assert not fake.initialised


def test_init_failure_raises_unavailable_with_nvml_reason() -> None:
    fake = FakeNvmlForUnitTests([h100(0)], init_error=pynvml.NVMLError_DriverNotLoaded())
    with pytest.raises(NvmlUnavailable, match="nvmlInit failed: Driver Not Loaded"):
        NvmlReader(fake)


def test_no_gpu_is_unavailable_and_closes_the_session() -> None:
    fake = FakeNvmlForUnitTests([])
    with pytest.raises(NvmlUnavailable, match=r"driver 550\.54\.15.*no GPU"):
        NvmlReader(fake)
    assert not fake.initialised


def test_mig_devices_skip_empty_slots_and_read_profile_and_memory() -> None:
    with NvmlReader(FakeNvmlForUnitTests([mig_h100()])) as reader:
        devices = reader.mig_devices(0)
        sample = reader.sample(0)
    assert devices == [
        MigDevice(parent_index=0, uuid="MIG-aaaa", profile="1g.10gb", memory_bytes=10 * GIB),
        MigDevice(parent_index=0, uuid="MIG-bbbb", profile="3g.40gb", memory_bytes=40 * GIB),
        MigDevice(parent_index=0, uuid="MIG-cccc", profile="1g.10gb", memory_bytes=10 * GIB),
    ]
    assert sample.mig_mode_enabled is True
    assert sample.unsupported == ("gpu_util_pct",)


def test_sample_reads_each_mig_device_through_its_own_handle() -> None:
    with NvmlReader(FakeNvmlForUnitTests([mig_h100()])) as reader:
        sample = reader.sample(0)
    assert sample.mig_devices == (
        MigSample(
            parent_index=0, slot=0, uuid="MIG-aaaa", profile="1g.10gb", mem_used_bytes=3 * GIB,
            mem_total_bytes=10 * GIB, gpu_util_pct=None, unsupported=("gpu_util_pct",),
        ),
        MigSample(
            parent_index=0, slot=2, uuid="MIG-bbbb", profile="3g.40gb", mem_used_bytes=12 * GIB,
            mem_total_bytes=40 * GIB, gpu_util_pct=None, unsupported=("gpu_util_pct",),
        ),
        MigSample(
            parent_index=0, slot=3, uuid="MIG-cccc", profile="1g.10gb", mem_used_bytes=1 * GIB,
            mem_total_bytes=10 * GIB, gpu_util_pct=None, unsupported=("gpu_util_pct",),
        ),
    )
    readings = [(d.mem_used_bytes, d.mem_total_bytes, d.gpu_util_pct) for d in sample.mig_devices]
    assert 0 not in sum(readings, ()), "an unsupported metric must be None, never 0"
    assert sample.power_w == 312.456, "board-wide figures stay on the parent GPU"


def test_a_mig_device_that_reports_utilisation_has_it() -> None:
    gpu = mig_h100()
    gpu.mig_slots = [mig_slice("MIG-dddd", "7g.80gb", 80, used_gib=70)]
    gpu.mig_slots[0].errors.pop("nvmlDeviceGetUtilizationRates")
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        (device,) = reader.sample(0).mig_devices
    assert (device.gpu_util_pct, device.mem_used_bytes, device.unsupported) == (87, 70 * GIB, ())


def test_a_mig_device_without_memory_figures_names_them() -> None:
    gpu = mig_h100()
    gpu.mig_slots = [mig_slice("MIG-eeee", "1g.10gb", 10, used_gib=2)]
    gpu.mig_slots[0].errors |= not_supported("nvmlDeviceGetMemoryInfo")
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        (device,) = reader.sample(0).mig_devices
    assert (device.mem_used_bytes, device.mem_total_bytes) == (None, None)
    assert device.unsupported == ("mem_used_bytes", "mem_total_bytes", "gpu_util_pct")


@pytest.mark.parametrize(("errors", "expected"), [({}, False), (not_supported("nvmlDeviceGetMigMode"), None)])
def test_mig_off_or_unsupported_samples_no_mig_device(
    errors: dict[str, pynvml.NVMLError], expected: bool | None
) -> None:
    gpu = h100(
        0, mig_mode=pynvml.NVML_DEVICE_MIG_DISABLE, errors=errors, mig_slots=[mig_slice("MIG-stale", "1g.10gb", 10)]
    )
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        sample = reader.sample(0)
    assert sample.mig_mode_enabled is expected
    assert sample.mig_devices == ()


@pytest.mark.parametrize(("errors", "expected"), [({}, False), (not_supported("nvmlDeviceGetMigMode"), None)])
def test_mig_off_or_unsupported_lists_no_devices(errors: dict[str, pynvml.NVMLError], expected: bool | None) -> None:
    gpu = h100(
        0, mig_mode=pynvml.NVML_DEVICE_MIG_DISABLE, errors=errors, mig_slots=[mig_slice("MIG-stale", "1g.10gb", 10)]
    )
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        assert reader.mig_mode_enabled(0) is expected
        assert reader.mig_devices(0) == []


@pytest.mark.parametrize(
    ("name", "profile"),
    [("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "1g.10gb"), ("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb", "1c.3g.20gb")],
)
def test_mig_profile_is_read_from_the_device_name(name: str, profile: str) -> None:
    assert mig_profile(name) == profile


def test_mig_profile_refuses_a_name_without_one() -> None:
    with pytest.raises(ValueError, match="NVIDIA H100 80GB HBM3"):
        mig_profile("NVIDIA H100 80GB HBM3")


def test_power_limits_are_read_in_watts() -> None:
    gpu = h100(0, power_limit_mw=500_000, enforced_limit_mw=450_000, limit_range_mw=(200_000, 700_000))
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        limits = reader.power_limits(0)
    assert limits == PowerLimits(index=0, limit_w=500.0, enforced_w=450.0, default_w=700.0, min_w=200.0, max_w=700.0)


def test_power_limits_a_gpu_does_not_offer_are_none_and_named() -> None:
    gpu = h100(
        0,
        errors=not_supported("nvmlDeviceGetPowerManagementLimitConstraints", "nvmlDeviceGetEnforcedPowerLimit"),
    )
    with NvmlReader(FakeNvmlForUnitTests([gpu])) as reader:
        limits = reader.power_limits(0)
    assert (limits.min_w, limits.max_w, limits.enforced_w, limits.limit_w) == (None, None, None, 700.0)
    assert limits.unsupported == ("enforced_w", "min_w", "max_w")


def test_reader_only_calls_nvml_getters() -> None:
    called = set(re.findall(r"nvml\.(nvml\w+)", inspect.getsource(nvml)))
    assert called, "found no NVML calls to check"
    assert {name for name in called if not re.match(r"nvml(Init|Shutdown|(System|Device)Get\w+)$", name)} == set()


def test_ray_start_lines_give_each_profile_its_own_raylet() -> None:
    devices = [
        MigDevice(parent_index=0, uuid="MIG-bbbb", profile="3g.40gb", memory_bytes=40 * GIB),
        MigDevice(parent_index=0, uuid="MIG-aaaa", profile="1g.10gb", memory_bytes=10 * GIB),
        MigDevice(parent_index=1, uuid="MIG-cccc", profile="1g.10gb", memory_bytes=10 * GIB),
    ]
    assert mig.ray_start_lines(devices, "10.0.0.1:6379") == [
        "CUDA_VISIBLE_DEVICES=MIG-aaaa,MIG-cccc ray start --address=10.0.0.1:6379 "
        "--num-gpus=2 --resources='{\"MIG-1g.10gb\": 2}'",
        "CUDA_VISIBLE_DEVICES=MIG-bbbb ray start --address=10.0.0.1:6379 "
        "--num-gpus=1 --resources='{\"MIG-3g.40gb\": 1}'",
    ]
    assert mig.ray_start_lines([], "10.0.0.1:6379") == []


def test_mig_command_prints_lines_for_the_ray_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.9.9.9:6379")
    assert mig.main([], nvml=FakeNvmlForUnitTests([mig_h100(), h100(1)])) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "CUDA_VISIBLE_DEVICES=MIG-aaaa,MIG-cccc ray start --address=10.9.9.9:6379 "
        "--num-gpus=2 --resources='{\"MIG-1g.10gb\": 2}'",
        "CUDA_VISIBLE_DEVICES=MIG-bbbb ray start --address=10.9.9.9:6379 "
        "--num-gpus=1 --resources='{\"MIG-3g.40gb\": 1}'",
    ]


def test_mig_command_says_mig_is_off(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeNvmlForUnitTests([h100(0), h100(1, errors=not_supported("nvmlDeviceGetMigMode"))])
    assert mig.main(["--address", "h:1"], nvml=fake) == 0
    assert capsys.readouterr().out == "MIG mode is off on all 2 GPU(s) of this node; there is nothing to split.\n"


def test_mig_command_fails_when_nvml_is_unavailable(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_LibraryNotFound())
    assert mig.main([], nvml=fake) == 1
    assert capsys.readouterr().out == "NVML unavailable: nvmlInit failed: NVML Shared Library Not Found\n"


def test_real_nvml_on_this_machine_reports_a_reason_or_real_numbers() -> None:
    """No fake: without a GPU the real reader must refuse with a reason, never report 0 W."""
    status = probe()
    try:
        with NvmlReader() as reader:
            samples = reader.sample_all()
    except NvmlUnavailable as error:
        assert str(error).strip()
        assert status == f"NVML unavailable: {error}"
        return
    assert samples and all(s.power_w is None or s.power_w > 0 for s in samples)
    assert status.startswith(f"{len(samples)} GPU(s): ")
    assert not re.search(r"\b0(\.0+)? ?W\b", status)


def test_gpu_report_says_what_each_gpu_read_and_what_it_does_not_offer() -> None:
    busy, bare = mig_h100(), h100(1, errors=not_supported("nvmlDeviceGetTotalEnergyConsumption"))

    def sleep(seconds: float) -> None:
        time.sleep(0.01)
        busy.energy_mj += 100_000

    with NvmlReader(FakeNvmlForUnitTests([busy, bare])) as reader:
        lines = gpu_report.report_lines(reader, 1.0, sleep=sleep)
    text = "\n".join(lines)
    assert lines[0] == "NVML driver 550.54.15, 2 GPU(s), sampled over 1 s"
    assert "GPU 0: NVIDIA H100 80GB HBM3 (GPU-00000000)" in text
    assert "  energy counter: +200.0 J in " in text
    assert "  power sampled: 312.5-312.5 W over 3 samples" in text
    assert "  SM clock seen: 1980 MHz; memory clock: 2619 MHz" in text
    assert "  power limit: 700 W (enforced 700 W, default 700 W, settable 200-700 W)" in text
    assert "  MIG: on, 3 device(s)\n    1g.10gb MIG-aaaa 10.0 GiB" in text
    assert "GPU 1: NVIDIA H100 80GB HBM3 (GPU-00000001)\n" in text
    assert "  energy counter: not offered by this GPU\n" in text and "  not offered: energy_mj" in text


def test_gpu_report_without_nvml_prints_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_LibraryNotFound())
    assert gpu_report.main(["--seconds", "0"], nvml=fake) == 0
    assert capsys.readouterr().out == "NVML unavailable: nvmlInit failed: NVML Shared Library Not Found\n"
