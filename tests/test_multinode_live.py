"""Several Ray nodes on this machine: profiling spread over them, replicas on their shape's node, a node lost.

The module's own cluster (tests/local_cluster.py), not the session's: a head
with one CPU, a node standing in for a full-GPU node and one standing in for
a MIG-profile node. On CPU a node kind is its custom resource, as on GPUs a
MIG profile's raylet is told by its `MIG-<profile>` resource (README, MIG):
the full-GPU stand-in offers FULL_GPU_STANDIN, the MIG stand-in
MIG_STANDIN_RESOURCE, and a trial or replica of a shape asks for its node's.

The ingress is pinned to the head with Serve's per-deployment override (the
way a user keeps it off the accelerator nodes in serve_config.yaml), and only
the head runs an HTTP proxy: every node has the same IP here, so per-node
proxies would contend for one port. Losing a node then loses its replicas,
not the way in.

Engines are few and small: the sweep's two (actors of the sweep's job, so not
reusable by the app) and the app's two.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import ray
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ReplicaState, ServeDeploySchema, ServeInstanceDetails

from oasis_ray.config import INGRESS_DEPLOYMENT
from oasis_ray.profiling.hct import load_hct
from tests.conftest import API_KEY, MIG_STANDIN_RESOURCE, MODEL_ID, app_config, wait_until_ingress_sees_every_route
from tests.local_cluster import LocalCluster, WorkerNode, connect, free_port, local_cluster, worker_node

FULL_GPU_STANDIN = "standin-full-gpu"
HEAD_RESOURCE = "oasis-head"
SWEEP_SPEC = Path(__file__).with_name("multinode_sweep.yaml")
APP = "oasis-multinode"
# The SILO route's replica is on the MIG stand-in node; the model's default route (SISO, LISO) on the full-GPU one.
FULL_ROUTE, MIG_ROUTE = "full", "mig"
FULL_DEPLOYMENT, MIG_DEPLOYMENT = f"route:{FULL_ROUTE}@cpu:{MODEL_ID}", f"route:{MIG_ROUTE}@cpu:{MODEL_ID}"
TAU_TOKENS = 16
IN_FLIGHT = 20
ENGINE_BATCH = app_config()["routes"][0]["engine"]["max_num_seqs"]
# A SILO completion at TAU_TOKENS: a few seconds of decoding under the load, so the node is lost mid-request.
SILO_PROMPT, SILO_MAX_TOKENS = [300] * 4, 400
# Only a guard against a test hanging the suite; no assertion depends on it.
STUCK_AFTER_S = 300.0


@dataclass(frozen=True)
class MultiNode:
    cluster: LocalCluster
    full_gpu: WorkerNode
    mig: WorkerNode


@pytest.fixture(scope="module")
def nodes() -> Iterator[MultiNode]:
    with local_cluster(num_cpus=1, resources={HEAD_RESOURCE: 1}) as cluster, contextlib.ExitStack() as stack:
        connect(cluster, runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
        stack.callback(ray.shutdown)
        full = stack.enter_context(
            worker_node(cluster, name="full-gpu-standin", num_cpus=1, resources={FULL_GPU_STANDIN: 1}))
        mig = stack.enter_context(
            worker_node(cluster, name="mig-standin", num_cpus=1, resources={MIG_STANDIN_RESOURCE: 1}))
        try:
            yield MultiNode(cluster=cluster, full_gpu=full, mig=mig)
        finally:
            # The whole cluster goes next: the driver first (its Serve handle stops reporting to the controller),
            # then the nodes at once, whose graceful stop would wait on their engines.
            ray.shutdown()
            for node in (full, mig):
                node.stop(lose=True)


def _resource_node() -> dict[str, str]:
    """Which node offers each node-kind resource, as Ray lists the cluster."""
    return {name: node["NodeID"] for node in ray.nodes() if node["Alive"]
            for name in (FULL_GPU_STANDIN, MIG_STANDIN_RESOURCE, HEAD_RESOURCE) if name in node["Resources"]}


def test_profiling_trials_run_in_parallel_on_their_own_nodes(nodes: MultiNode, tmp_path: Path) -> None:
    env = {**os.environ, "RAY_ADDRESS": nodes.cluster.address}
    command = [sys.executable, "-m", "profiling_jobs.sweep", "--spec", str(SWEEP_SPEC), "--out", str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=STUCK_AFTER_S * 2)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # "[sweep] placed on <ip> (node <id>), starting engine: <model> | <hardware> | batch 2 | standard"
    placed = {line.split(" | ")[1]: line.split("(node ")[1].split(")")[0]
              for line in result.stdout.splitlines() if line.startswith("[sweep] placed on ")}
    rows = load_hct(tmp_path).rows.set_index("hardware")
    lifetimes = {
        hardware: (datetime.fromisoformat(row.started_at).timestamp() - row.engine_start_s,
                   datetime.fromisoformat(row.finished_at).timestamp())
        for hardware, row in rows.iterrows()
    }
    first = min(start for start, _ in lifetimes.values())
    print(f"\n[multinode] sweep placed {placed}; engine lifetimes (s from the first start): "
          + ", ".join(f"{hw}: {start - first:.0f} to {end - first:.0f}" for hw, (start, end) in lifetimes.items()))
    assert placed == {f"cpu x0.5 +{FULL_GPU_STANDIN}": nodes.full_gpu.node_id,
                      f"cpu x0.5 +{MIG_STANDIN_RESOURCE}": nodes.mig.node_id}, placed
    assert (rows["status"] == "ok").all() and len(rows) == 2, rows[["status", "error"]]
    starts, ends = zip(*lifetimes.values(), strict=True)
    assert max(starts) < min(ends), f"the two engines ran one after the other: {lifetimes}"


def _config() -> dict:
    engine = {**app_config()["routes"][0]["engine"], "max_model_len": 512, "load_format": "dummy",
              "gpu_memory_utilization": 0.1}
    return {
        "default_max_tokens": 16,
        "api_key": API_KEY,
        "engine_env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        "telemetry": {"exporters": ["memory"]},
        "models": [{"model_id": MODEL_ID, "source": "embedded", "default_route": FULL_ROUTE,
                    "tau_tokens": TAU_TOKENS}],
        "routes": [
            {"name": FULL_ROUTE, "model": MODEL_ID, "query_types": ["SISO", "LISO"], "engine": engine,
             "resources": {"accelerator": "cpu", "cpus": 0.5, "custom_resources": {FULL_GPU_STANDIN: 1}}},
            {"name": MIG_ROUTE, "model": MODEL_ID, "query_types": ["SILO", "LILO"], "engine": engine,
             "resources": {"accelerator": "cpu", "cpus": 0.5, "custom_resources": {MIG_STANDIN_RESOURCE: 1}}},
        ],
        "ingress_cpus": 0.05,
    }


def _serve_details() -> ServeInstanceDetails:
    return ServeInstanceDetails(**_get_global_client().get_serve_details())


def _running_nodes(deployment: str) -> list[str]:
    replicas = _serve_details().applications[APP].deployments[deployment].replicas
    return [r.node_id for r in replicas if r.state == ReplicaState.RUNNING]


@pytest.fixture(scope="module")
def app(nodes: MultiNode) -> Iterator[str]:
    port = free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    schema = ServeDeploySchema(applications=[{
        "name": APP, "route_prefix": "/", "import_path": "deployments.app:build_app", "args": _config(),
        "deployments": [{"name": INGRESS_DEPLOYMENT,
                         "ray_actor_options": {"num_cpus": 0.05, "resources": {HEAD_RESOURCE: 0.01}}}],
    }])
    _get_global_client().deploy_apps(schema)
    deadline = time.monotonic() + STUCK_AFTER_S
    while not (APP in serve.status().applications and serve.status().applications[APP].status == "RUNNING"):
        assert time.monotonic() < deadline, f"the app did not start: {serve.status()}"
        time.sleep(1.0)
    url = f"http://127.0.0.1:{port}"
    # Until the ingress's view lists the MIG route's replica, it sends that route's requests to the full route.
    wait_until_ingress_sees_every_route(url, timeout_s=STUCK_AFTER_S)
    yield url
    # Not serve.shutdown: Serve goes with the module's cluster, and shutting it down first would wait out the
    # controller's 30 s for the lost node's placement group, which it can no longer remove. The driver's handles
    # are shut, though, or they would go on reporting to a controller that is gone.
    _get_global_client().shutdown_cached_handles()


def test_route_replicas_land_on_the_node_of_their_shape(nodes: MultiNode, app: str) -> None:
    offers = _resource_node()
    placed = {deployment: _running_nodes(deployment)
              for deployment in (FULL_DEPLOYMENT, MIG_DEPLOYMENT, INGRESS_DEPLOYMENT)}
    assert placed == {FULL_DEPLOYMENT: [offers[FULL_GPU_STANDIN]], MIG_DEPLOYMENT: [offers[MIG_STANDIN_RESOURCE]],
                      INGRESS_DEPLOYMENT: [offers[HEAD_RESOURCE]]}, (placed, offers)
    assert offers[MIG_STANDIN_RESOURCE] == nodes.mig.node_id and offers[FULL_GPU_STANDIN] == nodes.full_gpu.node_id


def test_a_node_lost_under_load_loses_no_request_another_node_can_serve(nodes: MultiNode, app: str) -> None:
    """The MIG stand-in node is SIGKILLed with its route's requests in flight; the other node's route serves them."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{app}/v1", api_key=API_KEY, max_retries=0, timeout=STUCK_AFTER_S)

    async def silo():
        reply = await client.completions.with_raw_response.create(
            model=MODEL_ID, prompt=SILO_PROMPT, max_tokens=SILO_MAX_TOKENS, extra_body={"ignore_eos": True})
        return reply, time.monotonic()

    async def load():
        # What the MIG route's (only) replica's vLLM engine holds, running or waiting. Its handle is up before the
        # load starts: a first call that took longer than the load lasts would see the engine empty ever after.
        mig_engine = serve.get_deployment_handle(MIG_DEPLOYMENT, app_name=APP).engine_requests
        await mig_engine.remote()
        in_flight = [asyncio.ensure_future(silo()) for _ in range(IN_FLIGHT)]
        # The MIG node's engine is busy with its whole batch (it may finish early ones before the last arrive).
        while await mig_engine.remote() < ENGINE_BATCH:
            assert not all(request.done() for request in in_flight), (
                f"all {IN_FLIGHT} requests finished before the MIG engine was seen holding {ENGINE_BATCH}")
            await asyncio.sleep(0.1)
        nodes.mig.stop(lose=True)
        lost_at = time.monotonic()
        after = await silo()
        return await asyncio.gather(*in_flight, return_exceptions=True), after, lost_at

    answers, (after, after_at), lost_at = asyncio.run(load())
    failed = [a for a in answers if isinstance(a, BaseException)]
    assert not failed, failed
    replies = [reply for reply, _ in answers]
    failed_over = [r for r in replies if r.headers.get("x-oasis-failover-from") == MIG_ROUTE]
    last_answer_s = max(at for _, at in answers) - lost_at
    print(f"\n[multinode] MIG stand-in node lost under {IN_FLIGHT} SILO completions: {len(failed_over)} of "
          f"{IN_FLIGHT} failed over to {FULL_ROUTE}, the last answered {last_answer_s:.1f} s after the loss; "
          f"a new SILO request sent after the loss answered after {after_at - lost_at:.1f} s "
          f"(by {after.headers.get('x-oasis-route')})")
    assert [r.http_response.status_code for r in replies] == [200] * IN_FLIGHT
    assert all(r.parse().usage.completion_tokens == SILO_MAX_TOKENS for r in replies)
    assert failed_over, "the loss hit no request in flight"
    assert after.http_response.status_code == 200 and after.headers["x-oasis-route"] == FULL_ROUTE
    assert _running_nodes(FULL_DEPLOYMENT) == [nodes.full_gpu.node_id]
