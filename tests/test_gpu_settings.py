"""Run-time GPU settings through a fake pynvml: applied at start, restored on every exit path, advisory changes
nothing, off does nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pynvml
import pytest

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.gpu_control.devices import resolve_visible
from oasis_ray.gpu_control.holder import LeaseHolder
from oasis_ray.device_setting import LeaseStatus
from oasis_ray.gpu_control.keeper import LeaseRequest, SettingsKeeper
from oasis_ray.telemetry.nvml import NvmlReader
from tests.fake_nvml import DEFAULT_POWER_LIMIT_MW, FakeGpu, FakeNvmlForUnitTests, mig_slice

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOW = DeviceSetting(sm_clock_mhz=855, power_limit_w=250)


@pytest.fixture
def serve_log(caplog: pytest.LogCaptureFixture):
    """Records of the "ray.serve" logger, which Ray stops from propagating once Serve is imported."""
    logger = logging.getLogger("ray.serve")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class InProcessKeeper:
    """The KeeperClient protocol over a SettingsKeeper in this process (production talks to a Ray actor)."""

    def __init__(self, keeper: SettingsKeeper) -> None:
        self.keeper = keeper
        self.calls = 0

    async def acquire(self, request: LeaseRequest) -> LeaseStatus:
        self.calls += 1
        return self.keeper.acquire(request)

    async def renew(self, holder: str, setting: DeviceSetting) -> LeaseStatus | None:
        self.calls += 1
        return self.keeper.renew(holder, setting)

    async def release(self, holder: str) -> bool:
        self.calls += 1
        return self.keeper.release(holder)

    def release_blocking(self, holder: str) -> None:
        self.keeper.release(holder)


def request(holder: str = "replica-a", visible: tuple[str, ...] = ("1",), mode: str = "apply",
            setting: DeviceSetting = LOW) -> LeaseRequest:
    return LeaseRequest(holder=holder, app="oasis", route="m/long-output", shape="full-gpu", mode=mode,
                        setting=setting, visible_ids=visible)


def two_gpus() -> FakeNvmlForUnitTests:
    return FakeNvmlForUnitTests([FakeGpu("GPU-0"), FakeGpu("GPU-1")])


def test_applied_at_acquire_and_restored_on_release() -> None:
    fake = two_gpus()
    keeper = SettingsKeeper(fake)
    status = keeper.acquire(request())
    assert fake.gpus[1].locked == (855, 855) and fake.gpus[1].power_limit_mw == 250_000
    assert fake.gpus[0].locked is None and fake.gpus[0].power_limit_mw == DEFAULT_POWER_LIMIT_MW
    assert [d.state for d in status.devices] == ["set"] and "GPU 1" in (status.devices[0].gpu or "")
    assert keeper.release("replica-a")
    assert fake.gpus[1].locked is None and fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW
    assert fake.calls == [("lock", 1, 855, 855), ("power", 1, 250_000),
                          ("reset", 1), ("power", 1, DEFAULT_POWER_LIMIT_MW)]
    assert not keeper.release("replica-a"), "a second release has nothing left to restore"
    assert not fake.initialised


def test_a_holder_that_stops_renewing_is_taken_as_dead_and_its_gpu_restored() -> None:
    fake, clock = two_gpus(), Clock()
    keeper = SettingsKeeper(fake, ttl_s=15, clock=clock)
    keeper.acquire(request())
    clock.now += 10
    assert keeper.renew("replica-a", LOW) is not None
    clock.now += 14
    assert keeper.expire() == [] and fake.gpus[1].locked == (855, 855), "renewed 14 s ago: still alive"
    clock.now += 1
    assert keeper.expire() == ["replica-a"]
    assert fake.gpus[1].locked is None and fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW
    assert keeper.statuses() == []
    assert keeper.renew("replica-a", LOW) is None, "an expired holder must acquire anew"


def test_a_new_target_moves_the_gpu_and_the_original_limit_is_what_is_restored() -> None:
    fake = two_gpus()
    keeper = SettingsKeeper(fake)
    keeper.acquire(request())
    status = keeper.renew("replica-a", DeviceSetting(sm_clock_mhz=1410, power_limit_w=300))
    assert status is not None and status.setting.sm_clock_mhz == 1410
    assert fake.gpus[1].locked == (1410, 1410) and fake.gpus[1].power_limit_mw == 300_000
    keeper.renew("replica-a", DeviceSetting(sm_clock_mhz=1410))
    assert fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW, "a knob the target drops is put back at once"
    keeper.release("replica-a")
    assert fake.gpus[1].locked is None and fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW


def test_advisory_changes_nothing_and_says_what_it_would_set_where(serve_log: pytest.LogCaptureFixture) -> None:
    fake = two_gpus()
    keeper = SettingsKeeper(fake)
    status = keeper.acquire(request(mode="advisory"))
    keeper.renew("replica-a", DeviceSetting(sm_clock_mhz=1410))
    keeper.release("replica-a")
    assert fake.calls == []
    assert fake.gpus[1].locked is None and fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW
    assert status.devices[0].state == "advisory"
    line = status.line()
    assert "would set sm_clock_mhz=855 power_limit_w=250 on GPU 1 (NVIDIA H100 80GB HBM3, GPU-1)" in line, line
    assert any("would set sm_clock_mhz=1410" in r.getMessage() for r in serve_log.records)


def test_without_permission_it_says_so_once_names_the_gpu_and_sets_what_it_may(
    serve_log: pytest.LogCaptureFixture,
) -> None:
    refusing = FakeGpu("GPU-0", errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVMLError_NoPermission()})
    fake = FakeNvmlForUnitTests([refusing])
    keeper = SettingsKeeper(fake)
    status = keeper.acquire(request(visible=("0",)))
    keeper.renew("replica-a", DeviceSetting(sm_clock_mhz=900, power_limit_w=250))
    keeper.release("replica-a")
    keeper.acquire(request(holder="replica-b", visible=("0",)))
    warnings = [r.getMessage() for r in serve_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "sm_clock_mhz=855 on GPU 0 (NVIDIA H100 80GB HBM3, GPU-0)" in warnings[0]
    assert "Insufficient Permissions" in warnings[0]
    assert status.devices[0].state == "refused" and "Insufficient Permissions" in (status.devices[0].note or "")
    assert fake.gpus[0].power_limit_mw == 250_000, "the power limit it may set is set"


def test_a_mig_slice_leaves_its_parents_clock_alone() -> None:
    parent = FakeGpu("GPU-0", mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE,
                     mig_slots=[mig_slice("MIG-a", "1g.10gb", 10), mig_slice("MIG-b", "1g.10gb", 10)])
    fake = FakeNvmlForUnitTests([parent])
    status = SettingsKeeper(fake).acquire(request(visible=("MIG-b",)))
    assert fake.calls == [] and parent.locked is None
    assert status.devices[0].state == "shared" and "parent GPU" in (status.devices[0].note or "")
    assert "MIG slice MIG-b" in (status.devices[0].gpu or "")


def test_a_gpu_is_set_by_one_holder_at_a_time() -> None:
    fake = two_gpus()
    keeper = SettingsKeeper(fake)
    keeper.acquire(request())
    second = keeper.acquire(request(holder="replica-b", setting=DeviceSetting(sm_clock_mhz=1980)))
    assert second.devices[0].state == "refused" and "replica-a" in (second.devices[0].note or "")
    keeper.release("replica-b")
    assert fake.gpus[1].locked == (855, 855), "the refused holder's release must not undo the owner's setting"


def test_without_nvml_or_gpu_the_lease_says_why() -> None:
    no_driver = FakeNvmlForUnitTests([], init_error=pynvml.NVMLError_LibraryNotFound())
    cpu = LeaseRequest(holder="r", app="oasis", route="m/short", shape="cpu", mode="advisory", setting=LOW,
                       visible_ids=(), no_gpu_reason="the replica holds no GPU (accelerator: cpu)")
    status = SettingsKeeper(no_driver).acquire(cpu)
    assert status.devices[0].state == "unavailable"
    assert status.devices[0].note == ("the replica holds no GPU (accelerator: cpu); "
                                      "NVML: nvmlInit failed: NVML Shared Library Not Found")
    assert "would set sm_clock_mhz=855 power_limit_w=250 on no GPU: unavailable" in status.line()


def test_visible_ids_map_to_nvml_devices_by_uuid_or_index() -> None:
    parent = FakeGpu("GPU-p", mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE, mig_slots=[mig_slice("MIG-x", "3g.40gb", 40)])
    fake = FakeNvmlForUnitTests([FakeGpu("GPU-a"), parent])
    with NvmlReader(fake) as reader:
        samples = reader.sample_all()
    targets = resolve_visible(["GPU-a", "1", "MIG-x"], samples)
    assert [(t.index, t.uuid, t.mig_uuid) for t in targets] == [(0, "GPU-a", None), (1, "GPU-p", None),
                                                                 (1, "GPU-p", "MIG-x")]
    with pytest.raises(ValueError, match="visible device 'GPU-zz'"):
        resolve_visible(["GPU-zz"], samples)


def test_the_holder_renews_with_the_routes_target_and_releases_on_stop() -> None:
    fake = two_gpus()
    client = InProcessKeeper(SettingsKeeper(fake))
    target: list[DeviceSetting | None] = [None]

    async def current_target() -> DeviceSetting | None:
        return target[0]

    async def scenario() -> None:
        holder = LeaseHolder("apply", [(client, request())], current_target)
        await holder.start()
        assert fake.gpus[1].locked == (855, 855)
        target[0] = DeviceSetting(sm_clock_mhz=1410)
        await holder.renew_once()
        assert fake.gpus[1].locked == (1410, 1410)
        client.keeper.release("replica-a")  # the keeper restarted and lost the lease
        await holder.renew_once()
        assert fake.gpus[1].locked == (1410, 1410), "re-acquired at the current target"
        await holder.release()
        assert fake.gpus[1].locked is None and fake.gpus[1].power_limit_mw == DEFAULT_POWER_LIMIT_MW

    asyncio.run(scenario())


def test_off_does_nothing_and_says_nothing(serve_log: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        holder = LeaseHolder("off", [])
        assert not holder.active
        await holder.start()
        await holder.renew_once()
        await asyncio.wait_for(holder.run(asyncio.Event(), period_s=0.01), timeout=1)
        await holder.release()
        holder.release_at_exit()

    asyncio.run(scenario())
    assert serve_log.records == []
    with pytest.raises(ValueError, match="leases: "):
        LeaseHolder("advisory", [])


_SIGTERM_CHILD = textwrap.dedent("""
    import asyncio, atexit, json, sys, time
    from oasis_ray.device_setting import DeviceSetting
    from oasis_ray.gpu_control.holder import LeaseHolder, install_exit_release
    from oasis_ray.gpu_control.keeper import LeaseRequest, SettingsKeeper
    from tests.fake_nvml import FakeGpu, FakeNvmlForUnitTests
    from tests.test_gpu_settings import InProcessKeeper

    fake = FakeNvmlForUnitTests([FakeGpu("GPU-0")])
    report = sys.argv[1]
    # Registered first, so it runs after the release (atexit runs last-in first-out).
    atexit.register(lambda: open(report, "w").write(json.dumps(
        {"locked": fake.gpus[0].locked, "power_mw": fake.gpus[0].power_limit_mw, "calls": fake.calls})))
    request = LeaseRequest(holder="r", app="oasis", route="m/r", shape="full-gpu", mode="apply",
                           setting=DeviceSetting(sm_clock_mhz=855, power_limit_w=250), visible_ids=("0",))
    holder = LeaseHolder("apply", [(InProcessKeeper(SettingsKeeper(fake)), request)])
    asyncio.run(holder.start())
    install_exit_release(holder)
    print("held", fake.gpus[0].locked, flush=True)
    time.sleep(60)
""")


def test_sigterm_releases_through_the_exit_hook(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    child = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD, str(report)], cwd=PROJECT_ROOT,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held (855, 855)"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
    outcome = json.loads(report.read_text())
    assert outcome["locked"] is None and outcome["power_mw"] == DEFAULT_POWER_LIMIT_MW
    assert [call[0] for call in outcome["calls"]] == ["lock", "power", "reset", "power"]


def test_a_replica_under_clock_control_off_takes_no_lease_and_logs_nothing(
    monkeypatch: pytest.MonkeyPatch, serve_log: pytest.LogCaptureFixture
) -> None:
    from deployments import gpu_settings

    def must_not_run(self: object) -> None:
        raise AssertionError("clock_control off must not look for GPUs or keepers")

    monkeypatch.setattr(gpu_settings.GpuSettingsCallback, "_leases", must_not_run)
    settings = {"mode": "off", "route": "m/r", "shape": "full-gpu", "setting": {"sm_clock_mhz": 855},
                "follows_targets": True}
    callback = gpu_settings.GpuSettingsCallback(llm_config=None, settings=settings)
    asyncio.run(callback.on_before_node_init())
    assert gpu_settings._HOLDERS == [] and serve_log.records == []
