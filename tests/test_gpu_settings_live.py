"""A route's GPU setting reaches its replica on the shared app: advisory, so the replica logs and the status
view say what it would set and on which GPU, and why it cannot here (no GPU)."""

from __future__ import annotations

import time

import httpx
from ray import serve

from oasis_ray.config import INGRESS_DEPLOYMENT
from oasis_ray.device_setting import DeviceSetting
from oasis_ray.device_setting import LeaseStatus
from tests.conftest import API_KEY, APP_NAME, MODEL_ID, SHORT_ROUTE_GPU_SETTING

ROUTE = f"{MODEL_ID}/short-output"
WANTED = DeviceSetting(**SHORT_ROUTE_GPU_SETTING)
SHOULD_SAY = "would set sm_clock_mhz=855 power_limit_w=250 on no GPU: unavailable (the replica holds no GPU"


def _lease_of_the_route(deadline_s: float = 60.0) -> LeaseStatus | None:
    """The short route's lease as the status view has it; the observer reads the keepers every few seconds."""
    ingress = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=APP_NAME)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        snapshot = ingress.status_snapshot.remote().result(timeout_s=30)
        leases = [status for status in snapshot.gpu_settings if status.route == ROUTE]
        if leases:
            return leases[0]
        time.sleep(1.0)
    return None


def test_advisory_setting_is_reported_by_the_replica_and_the_status_view(oasis_app: str, ray_cluster) -> None:
    lease = _lease_of_the_route()
    assert lease is not None, "no GPU-settings lease of the short route reached the status view"
    assert (lease.mode, lease.shape, lease.setting) == ("advisory", "cpu", WANTED)
    [device] = lease.devices
    assert device.gpu is None and device.state == "unavailable"
    assert device.note is not None and device.note.startswith("the replica holds no GPU (shape cpu); NVML: ")

    text = httpx.get(f"{oasis_app}/oasis/status", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).text
    assert "GPU settings (clock_control: advisory)" in text
    assert f"route={ROUTE} shape=cpu" in text and SHOULD_SAY in text, text
    assert "route=oasis-tiny-llama/long-output shape=cpu" in text and "would set default clocks and power limit" in text

    serve_logs = ray_cluster.temp_dir / "session_latest" / "logs" / "serve"
    logs = "".join(path.read_text() for path in serve_logs.glob("replica_*short-output*.log"))
    assert f"oasis gpu-settings route={ROUTE} shape=cpu" in logs and SHOULD_SAY in logs
