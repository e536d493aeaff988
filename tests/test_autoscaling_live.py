"""The cost-table policy on a live app: CPU replicas with Ray custom resources stand in for MIG slices.

A second app, deployed declaratively with the policy as Serve runs it from
serve_config.yaml, serves one route with two shapes: 'cpu' (standing in for a
full GPU) and '1g.10gb' (a CPU replica that also takes the MIG-1g.10gb custom
resource). Its cost table is synthetic, with capacities small enough that a
burst this machine can send needs two full units.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from tests.conftest import API_KEY, MIG_STANDIN_RESOURCE, MODEL_ID, app_config
from tests.hct_factory import hct_row, write_table

APP = "oasis-autoscaled"
PREFIX = "/autoscaled"
MIG = MIG_STANDIN_RESOURCE.removeprefix("MIG-")
FULL_MSRR, MIG_MSRR = 1.0, 0.3


def _config(hct: Path) -> dict:
    engine = {**app_config()["routes"][0]["engine"], "gpu_memory_utilization": 0.1}
    return {
        "default_max_tokens": 8,
        "api_key": API_KEY,
        "engine_env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "models": [{"model_id": MODEL_ID, "source": "embedded", "default_route": "all"}],
        "routes": [{
            "name": "all", "model": MODEL_ID, "engine": engine, "min_replicas": 1, "max_replicas": 2,
            "resources": {"accelerator": "cpu", "cpus": 0.2},
            "mig_shapes": [{"profile": MIG, "resources": {"accelerator": "cpu", "cpus": 0.2,
                                                          "custom_resources": {MIG_STANDIN_RESOURCE: 1}}}],
        }],
        "ingress_cpus": 0.05,
        "autoscaling": {"hct_path": str(hct), "rate_window_s": 5.0,
                        "scaling": {"headroom": 0.1, "hysteresis": 0.2, "upscale_cooldown_s": 0,
                                    "downscale_cooldown_s": 5}},
    }


def _table(directory: Path) -> Path:
    rows = [hct_row(model_id=MODEL_ID, hardware_kind=kind, query_type=qt, msrr_req_s=msrr, mig_profile=profile)
            for kind, profile, msrr in (("cpu", None, FULL_MSRR), ("mig", MIG, MIG_MSRR))
            for qt in ("SISO", "SILO", "LISO", "LILO")]
    return write_table(directory, rows)


def _running(shape: str) -> int:
    status = serve.status().applications[APP].deployments[f"route:all@{shape}:{MODEL_ID}"]
    return status.replica_states.get("RUNNING", 0)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def autoscaled_app(oasis_app, tmp_path_factory) -> str:
    table = _table(tmp_path_factory.mktemp("hct"))
    schema = ServeDeploySchema(applications=[{
        "name": APP, "route_prefix": PREFIX, "import_path": "deployments.app:build_app", "args": _config(table),
        "autoscaling_policy": {"policy_function": "autoscaling.policy:OasisAutoscalingPolicy",
                               "policy_kwargs": {"app_args": _config(table)}},
    }])
    _get_global_client().deploy_apps(schema)
    _wait_for(lambda: APP in serve.status().applications
              and serve.status().applications[APP].status == "RUNNING" and _running(MIG) == 1, 300,
              "the autoscaled app on its smallest shape")
    yield f"{oasis_app}{PREFIX}"
    serve.delete(APP)


async def _load_until(base: str, rate_rps: float, done, timeout_s: float, then_s: float) -> list[int]:
    """Open-loop load at `rate_rps` until `done()` holds (checked each second), then `then_s` more seconds."""
    async with httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        async def one() -> int:
            response = await client.post(f"{base}/v1/completions",
                                         json={"model": MODEL_ID, "prompt": [300] * 16, "max_tokens": 4})
            return response.status_code

        tasks: list[asyncio.Task] = []
        started = time.monotonic()
        finished_at: float | None = None
        while finished_at is None or time.monotonic() < finished_at + then_s:
            for _ in range(int(rate_rps)):
                tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1.0)
            if finished_at is None and await asyncio.to_thread(done):
                finished_at = time.monotonic()
            if time.monotonic() - started > timeout_s:
                break
        statuses = list(await asyncio.gather(*tasks))
    assert finished_at is not None, f"condition not reached within {timeout_s:.0f} s under load"
    return statuses


def test_burst_scales_to_full_units_and_back_without_failures(autoscaled_app):
    assert (_running(MIG), _running("cpu")) == (1, 0)
    statuses = asyncio.run(_load_until(autoscaled_app, 3.0, lambda: _running("cpu") == 2, 480, then_s=5))
    _wait_for(lambda: (_running(MIG), _running("cpu")) == (1, 0), 300, "the burst's replicas to retire")
    assert len(statuses) > 20
    assert statuses.count(200) == len(statuses), sorted(set(statuses))
