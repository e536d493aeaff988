"""The cost-table policy on a live app: CPU replicas with Ray custom resources stand in for MIG slices.

A second app, deployed declaratively with the policy as Serve runs it from
serve_config.yaml, serves one route with two shapes: 'cpu' (standing in for a
full GPU) and '1g.10gb' (a CPU replica that also takes the MIG-1g.10gb custom
resource).

Its cost table comes from the profiling job's entry point, run on this
cluster with tests/autoscaling_sweep.yaml (the tiny model at batch 1, every
query type): the 'cpu' rows are measured here. A CPU cannot be profiled as a
MIG slice, so the slice's rows are the measured ones at MIG_SHARE of their
MSRR, and marked as derived. The burst is all SILO at BURST_OVER_MSRR times
SILO's measured MSRR: the route is sized at the mix it serves, so on any
machine the burst needs two full units. The route may scale to zero
after SCALE_TO_ZERO_AFTER_S idle, long enough for the move back to the slice
to finish first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import ray
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from oasis_ray.config import INGRESS_DEPLOYMENT
from oasis_ray.profiling.hct import load_hct, write_hct
from tests.conftest import API_KEY, MIG_STANDIN_RESOURCE, MODEL_ID, app_config

APP = "oasis-autoscaled"
PREFIX = "/autoscaled"
MIG = MIG_STANDIN_RESOURCE.removeprefix("MIG-")
SWEEP_SPEC = Path(__file__).with_name("autoscaling_sweep.yaml")
MIG_SHARE = 0.3
# The sweep's lengths are scaled down, so the app splits query types where they do (its SILO: 4 in, 256 out).
TAU_TOKENS = 8
# SILO requests cheaper than the profiled ones: the policy sizes by request count at the profiled
# lengths, and the machine must keep up with the burst it is sent for the rate to be what it observes.
BURST_BODY = {"model": MODEL_ID, "prompt": [300] * 4, "max_tokens": 9, "ignore_eos": True}
# With headroom 0.1 this needs 1.98 full units, so two; two shrink to one only below 0.8 x 2 = 1.6 MSRR
# of need (1.45 of rate), a margin the rate window's noise does not cross, whatever MSRR was measured.
BURST_OVER_MSRR = 1.8
ROUTE_KEY = f"{MODEL_ID}/all"
SCALE_TO_ZERO_AFTER_S = 110


def _config(hct: Path) -> dict:
    engine = {**app_config()["routes"][0]["engine"], "max_num_seqs": 1, "gpu_memory_utilization": 0.1}
    return {
        "default_max_tokens": 8,
        "api_key": API_KEY,
        "engine_env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "models": [{"model_id": MODEL_ID, "source": "embedded", "default_route": "all", "tau_tokens": TAU_TOKENS}],
        "routes": [{
            "name": "all", "model": MODEL_ID, "engine": engine, "min_replicas": 1, "max_replicas": 2,
            # The burst queues while full units start; failures are what the test counts, not the bound.
            "max_queued_requests": 1000,
            "resources": {"accelerator": "cpu", "cpus": 0.2},
            "mig_shapes": [{"profile": MIG, "resources": {"accelerator": "cpu", "cpus": 0.2,
                                                          "custom_resources": {MIG_STANDIN_RESOURCE: 1}}}],
        }],
        "ingress_cpus": 0.05,
        "telemetry": {"exporters": ["memory"]},
        "autoscaling": {"hct_path": str(hct), "rate_window_s": 5.0,
                        "scaling": {"headroom": 0.1, "hysteresis": 0.2, "upscale_cooldown_s": 0,
                                    "downscale_cooldown_s": 5,
                                    "route_limits": {ROUTE_KEY: {
                                        "min_replicas": 1, "max_replicas": 2, "allow_scale_to_zero": True,
                                        "scale_to_zero_after_s": SCALE_TO_ZERO_AFTER_S}}}},
    }


def _profiled_table(directory: Path) -> tuple[Path, float]:
    """The swept table plus derived MIG stand-in rows, and the measured full-unit MSRR of SILO (the burst's type)."""
    swept = directory / "swept"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = [sys.executable, "-m", "profiling_jobs.sweep", "--spec", str(SWEEP_SPEC), "--out", str(swept)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    table = load_hct(swept)
    measured = table.rows
    assert sorted(measured["query_type"]) == ["LILO", "LISO", "SILO", "SISO"] and (measured["msrr_req_s"] > 0).all()
    derived = measured.assign(
        hardware_kind="mig", hardware=MIG, mig_profile=MIG, msrr_req_s=measured["msrr_req_s"] * MIG_SHARE,
        trial_id=measured["trial_id"] + "-mig-standin", power_note="derived from the cpu row, not measured",
    )
    combined = dataclasses.replace(table, rows=pd.concat([measured, derived], ignore_index=True))
    silo_msrr = float(measured.loc[measured["query_type"] == "SILO", "msrr_req_s"].iloc[0])
    return write_hct(combined, directory / "hct"), silo_msrr


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
def profiled(oasis_app, tmp_path_factory) -> tuple[Path, float]:
    return _profiled_table(tmp_path_factory.mktemp("hct"))


@pytest.fixture(scope="module")
def autoscaled_app(oasis_app, profiled) -> str:
    table, _ = profiled
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
            response = await client.post(f"{base}/v1/completions", json=BURST_BODY)
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


def test_burst_scales_to_full_units_and_back_without_failures(autoscaled_app, profiled):
    assert (_running(MIG), _running("cpu")) == (1, 0)
    burst_rps = math.ceil(BURST_OVER_MSRR * profiled[1])
    statuses = asyncio.run(_load_until(autoscaled_app, burst_rps, lambda: _running("cpu") == 2, 480, then_s=5))
    _wait_for(lambda: (_running(MIG), _running("cpu")) == (1, 0), 300, "the burst's replicas to retire")
    assert len(statuses) > 20
    assert statuses.count(200) == len(statuses), sorted(set(statuses))


def test_decisions_reach_the_ingress_metric_and_status(autoscaled_app):
    ingress = serve.get_deployment_handle(INGRESS_DEPLOYMENT, app_name=APP)
    metrics, _ = ingress.telemetry_snapshot.remote().result()
    actions = {p.attributes["action"]: p.value for p in metrics
               if p.name == "oasis.scaling.decisions" and p.attributes["route"] == ROUTE_KEY}
    assert actions.get("scale_up", 0) >= 1 and actions.get("scale_down", 0) + actions.get("finish_move", 0) >= 1
    snapshot = ingress.status_snapshot.remote().result()
    assert any(record.chosen_shape == "cpu" and record.replicas_after.get("cpu") == 2 for record in snapshot.scaling)


def test_idle_route_scales_to_zero_and_its_next_request_waits_for_a_replica(autoscaled_app):
    _wait_for(lambda: (_running(MIG), _running("cpu")) == (0, 0), SCALE_TO_ZERO_AFTER_S + 120, "scale to zero")
    started = time.monotonic()
    response = httpx.post(f"{autoscaled_app}/v1/completions", headers={"Authorization": f"Bearer {API_KEY}"},
                          json={"model": MODEL_ID, "prompt": [300] * 4, "max_tokens": 4}, timeout=600)
    waited_s = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.headers["x-oasis-shape"] == MIG, "an idle route restarts on its smallest shape"
    assert waited_s > 5, f"answered in {waited_s:.1f} s: no replica had to start, so nothing was at zero"
    assert _running(MIG) == 1
