"""Soak: the default app under a steady mix for a bounded time, then memory growth, errors and leftover work.

Closed-loop clients send completions of all four query types (lengths either
side of the model's tau), half of them streaming, and cancel about one in ten:
a stream is dropped after its first tokens, a non-streaming request is
abandoned before its answer. A cancelled request is not an error; an error
is any other answer than 200, or a stream that does not end with [DONE] or
that carries an error event.

It prints the resident memory (RSS) of the ingress and of each route replica
(the replica's own process, and with its vLLM engine processes) once the
warm-up is over and at the end, the error count, and the requests each
engine still holds after the clients stop (vLLM's own count, read through
deployments.llm_routes.RouteServer.engine_requests). Targets: 0 errors, RSS
growth <= 10%, 0 requests left.

    .venv/bin/python benchmarks/soak.py [--duration-s 600] [--clients 8] [--cancel-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass

from fixed_app import default_args_without_autoscaling, free_port

APP = "oasis"
TOKEN = 300
SETTLE_S = 5.0


@dataclass(frozen=True)
class Shape:
    query_type: str
    input_tokens: int
    max_tokens: int


def _shapes(tau: int) -> list[Shape]:
    small_in, large_in, small_out, large_out = 16, tau + 100, 16, tau + 20
    return [Shape("SISO", small_in, small_out), Shape("LISO", large_in, small_out),
            Shape("SILO", small_in, large_out), Shape("LILO", large_in, large_out)]


def _processes(app: str) -> dict[str, int]:
    """Running replica pids of the app, by deployment."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ReplicaState, ServeInstanceDetails

    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    pids = {}
    for name, deployment in details.applications[app].deployments.items():
        for i, replica in enumerate(r for r in deployment.replicas if r.state == ReplicaState.RUNNING):
            pids[f"{name}#{i}"] = replica.pid
    return pids


def _rss_mib(pid: int) -> tuple[float, float]:
    """The process's RSS, and with its child processes (a replica's vLLM engine), in MiB."""
    import psutil

    process = psutil.Process(pid)
    own = process.memory_info().rss
    tree = own + sum(child.memory_info().rss for child in process.children(recursive=True))
    return own / 2**20, tree / 2**20


class Soak:
    def __init__(self, url: str, model_id: str, shapes: list[Shape], cancel_share: float, seed: int) -> None:
        self._url = url
        self._model_id = model_id
        self._shapes = shapes
        self._cancel_share = cancel_share
        self._random = random.Random(seed)
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []

    async def client(self, http, until: float) -> None:
        while time.monotonic() < until:
            shape = self._random.choice(self._shapes)
            stream = self._random.random() < 0.5
            cancel = self._random.random() < self._cancel_share
            body = {"model": self._model_id, "prompt": [TOKEN] * shape.input_tokens, "max_tokens": shape.max_tokens,
                    "ignore_eos": True, "stream": stream}
            kind = f"{shape.query_type}/{'stream' if stream else 'plain'}"
            try:
                if stream:
                    await self._stream(http, body, cancel, kind)
                elif cancel:
                    try:
                        await asyncio.wait_for(http.post(f"{self._url}/v1/completions", json=body), timeout=0.2)
                        self.outcomes[f"{kind}/answered-before-cancel"] += 1
                    except TimeoutError:
                        self.outcomes[f"{kind}/cancelled"] += 1
                else:
                    response = await http.post(f"{self._url}/v1/completions", json=body)
                    self._check(response.status_code == 200, kind, f"status {response.status_code}: {response.text[:200]}")
            except Exception as error:  # noqa: BLE001 - every failure is counted as an error, with its reason
                self._check(False, kind, repr(error))

    async def _stream(self, http, body: dict, cancel: bool, kind: str) -> None:
        async with http.stream("POST", f"{self._url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                self._check(False, kind, f"status {response.status_code}")
                return
            done, failed, events = False, False, 0
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith('data: {"error"'):
                    failed = True
                elif line.startswith("data: "):
                    events += 1
                    if cancel and events >= 3:
                        self.outcomes[f"{kind}/cancelled"] += 1
                        return
            self._check(done and not failed, kind, f"stream ended done={done} error_event={failed}")

    def _check(self, ok: bool, kind: str, why: str) -> None:
        self.outcomes[f"{kind}/{'ok' if ok else 'error'}"] += 1
        if not ok:
            self.errors.append(f"{kind}: {why}")


async def _run(soak: Soak, clients: int, duration_s: float, warmup_s: float, rss: dict) -> None:
    import httpx

    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        until = time.monotonic() + duration_s
        tasks = [asyncio.ensure_future(soak.client(http, until)) for _ in range(clients)]
        await asyncio.sleep(warmup_s)
        rss["start"] = {name: _rss_mib(pid) for name, pid in rss["pids"].items()}
        await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--cancel-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()

    import ray
    from ray import serve

    from deployments.app import build_app
    from oasis_ray.config import parse_config

    config = parse_config(default_args_without_autoscaling())
    model = config.models[0]
    port = free_port()
    warmup_s = min(60.0, cli.duration_s / 10)
    ray.init(runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}, include_dashboard=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name=APP, route_prefix="/")
        rss = {"pids": _processes(APP)}
        soak = Soak(f"http://127.0.0.1:{port}", model.model_id, _shapes(model.tau_tokens), cli.cancel_share, cli.seed)
        started = time.monotonic()
        asyncio.run(_run(soak, cli.clients, cli.duration_s, warmup_s, rss))
        elapsed = time.monotonic() - started
        time.sleep(SETTLE_S)
        end = {name: _rss_mib(pid) for name, pid in rss["pids"].items()}
        left = {route.name: serve.get_deployment_handle(route.deployment_name(route.whole_shape), app_name=APP)
                .engine_requests.remote().result() for route in config.routes}
        replaced = rss["pids"] != _processes(APP)
    finally:
        serve.shutdown()
        ray.shutdown()

    total = sum(soak.outcomes.values())
    print(f"soak: {elapsed:.0f} s, {cli.clients} closed-loop clients, {total} requests "
          f"({sum(v for k, v in soak.outcomes.items() if k.endswith('/cancelled'))} cancelled by the client), "
          f"RSS start taken after {warmup_s:.0f} s of warm-up")
    for kind in sorted({k.rsplit("/", 1)[0] for k in soak.outcomes}):
        parts = ", ".join(f"{k.rsplit('/', 1)[1]} {v}" for k, v in sorted(soak.outcomes.items())
                          if k.rsplit("/", 1)[0] == kind)
        print(f"  {kind:<16} {parts}")
    print(f"errors: {len(soak.errors)}")
    for line in soak.errors[:10]:
        print(f"  {line}")
    print(f"{'process':<48}{'RSS start MiB':>15}{'RSS end MiB':>13}{'growth':>9}   (with engine processes: start, end, growth)")
    for name, (own_start, tree_start) in rss["start"].items():
        own_end, tree_end = end[name]
        print(f"{name:<48}{own_start:>15.0f}{own_end:>13.0f}{(own_end / own_start - 1) * 100:>8.1f}%   "
              f"({tree_start:.0f}, {tree_end:.0f}, {(tree_end / tree_start - 1) * 100:+.1f}%)")
    print(f"engine requests left after the clients stopped: {left}")
    if replaced:
        print("note: a replica was replaced during the soak; its RSS rows compare different processes")


if __name__ == "__main__":
    main()
