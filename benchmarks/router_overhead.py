"""What the classifying ingress costs, in one run: against the route's handle, against Ray Serve LLM's
stock OpenAI ingress, and with telemetry on vs off.

Every path goes through real Serve handles from this driver to the same vLLM-CPU
engine, at max_tokens 1, calling the ingresses' OpenAI `completions` method:
- route: straight to the route deployment (no ingress at all);
- stock: Ray Serve LLM's OpenAiIngress (an ingress hop, no classification);
- oasis: oasis's ingress with telemetry disabled (hop plus tokenising,
  classifying and choosing the route);
- oasis+tel: the same with telemetry (metrics and spans).
The extra ingresses are apps of their own bound to the first app's route
deployment. Paths alternate in rounds so machine noise hits them alike.

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
APP, BARE_APP, STOCK_APP = "oasis", "oasis-no-telemetry", "stock-openai-ingress"


def _serve_args() -> dict:
    """The default app's args, without autoscaling: replica counts must stay put while paths are compared."""
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "serve_config.yaml").read_text())
    args = config["applications"][0]["args"]
    args.pop("autoscaling", None)
    return args


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


async def _run(model_id: str, requests: int, concurrency: int, rounds: int) -> None:
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import CompletionRequest

    route = serve.get_deployment_handle(f"route:short-output@cpu:{model_id}", app_name=APP).options(stream=True)

    def body() -> CompletionRequest:
        return CompletionRequest(model=model_id, prompt=PROMPT, max_tokens=1)

    def via(app: str):
        ingress = serve.get_app_handle(app)

        async def call() -> None:
            await ingress.completions.remote(body(), None)
        return call

    async def via_route() -> None:
        async for _ in route.completions.remote(body()):
            pass

    paths = {"route": via_route, "stock": via(STOCK_APP), "oasis": via(BARE_APP), "oasis+tel": via(APP)}
    for call in paths.values():
        await _latencies(call, 20)
    lat: dict[str, list[float]] = {name: [] for name in paths}
    rps: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, call in paths.items():
            lat[name] += await _latencies(call, requests // rounds)
            rps[name].append(await _throughput(call, requests // rounds, concurrency))

    def pct(name: str, q: float) -> float:
        return float(np.percentile(lat[name], q)) * 1000

    def compare(a: str, b: str) -> str:
        ratio = statistics.mean(rps[a]) / statistics.mean(rps[b])
        return (f"{a} vs {b}: +{pct(a, 50) - pct(b, 50):.2f} ms p50, p99 ratio {pct(a, 99) / pct(b, 99):.3f}, "
                f"throughput ratio {ratio:.3f}")

    print(f"{'path':<11}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}")
    for name in paths:
        print(f"{name:<11}{pct(name, 50):>10.2f}{pct(name, 99):>10.2f}{statistics.mean(rps[name]):>10.1f}")
    for a, b in (("oasis", "route"), ("oasis", "stock"), ("stock", "route"), ("oasis+tel", "oasis")):
        print(compare(a, b))


def _stock_ingress(config, handles):
    """Ray Serve LLM's own OpenAI ingress over the short-output route: the status quo oasis is compared with."""
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    model_id = config.models[0].model_id
    card = ModelCard(id=model_id, object="model", owned_by="benchmark", permission=[], metadata={})
    ingress = serve.deployment(make_fastapi_ingress(OpenAiIngress), name="StockIngress", max_ongoing_requests=1000,
                               ray_actor_options={"num_cpus": config.ingress_cpus})
    return ingress.bind(llm_deployments={model_id: handles[f"{model_id}/short-output"]["cpu"]},
                        model_cards={model_id: card})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    cli = parser.parse_args()

    import ray
    from ray import serve

    from deployments.app import build_app, build_ingress, resolve_source
    from oasis_ray.config import parse_config

    config = parse_config(_serve_args())
    bare = config.model_copy(update={"telemetry": config.telemetry.model_copy(update={"enabled": False})})
    ray.init(runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}, include_dashboard=False)
    try:
        serve.run(build_app(config), name=APP, route_prefix=None)
        handles = {
            route.key: {shape: serve.get_deployment_handle(route.deployment_name(shape), app_name=APP)
                        for shape in route.shapes()}
            for route in config.routes
        }
        sources = {m.model_id: resolve_source(m) for m in config.models}
        serve.run(build_ingress(bare, sources, handles), name=BARE_APP, route_prefix=None)
        serve.run(_stock_ingress(config, handles), name=STOCK_APP, route_prefix=None)
        asyncio.run(_run(config.models[0].model_id, cli.requests, cli.concurrency, cli.rounds))
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
