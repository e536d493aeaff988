"""Overload, side by side: 10x a route's queue bound at oasis and at Ray Serve LLM's stock ingress.

Both apps serve over HTTP through the same Serve proxy and the same vLLM-CPU
engine (the default app's short-output route, one replica): oasis at /, the
stock OpenAiIngress bound to that route's deployment at /stock (built as in
benchmarks/router_overhead.py). oasis sheds at its ingress from an admission
count (oasis_ray/admission.py); the stock app sheds when Serve's handle finds
its queue full. Two loads, each on both apps in turn:

- Burst: every request (SISO completions) sent at once; rounds alternate
  between the apps so machine noise hits them alike. Per app: p50/p99 of the
  503s (how fast a shed request learns) and of the 200s, requests served, and
  goodput (200s per second of the burst's wall time), then the ratios.
- Held: long requests fill the route to its bound and past it (some are shed,
  which shows it is full), then the same number of requests arrive at a
  steady rate while it stays full. Per app: p50/p99 of their 503s. This is
  the time a shed request takes once it is the only thing waiting, apart from
  the queue a whole burst builds in the client, the proxy and the ingress.

    .venv/bin/python benchmarks/overload.py [--rounds 3] [--burst-factor 10] [--max-tokens 16] [--held-rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from fixed_app import default_args_without_autoscaling, free_port

APP, STOCK_APP, STOCK_PREFIX = "oasis", "stock-openai-ingress", "/stock"
PROMPT = [300] * 16
# The held load's fillers: a LISO completion each (the short-output route's other type), a long prefill and the
# most output a small-output request may ask, so the route stays full for the whole probe phase.
FILLER_PROMPT, FILLER_MAX_TOKENS = [300] * 1500, 499
# A probe not answered in this long was admitted (the route had a free place); it is counted and dropped.
PROBE_PATIENCE_S = 5.0


@dataclass
class Outcomes:
    served_s: list[float] = field(default_factory=list)
    shed_s: list[float] = field(default_factory=list)
    shed_without_retry_after: int = 0
    other: dict[int, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def goodput(self) -> float:
        return len(self.served_s) / self.wall_s if self.wall_s else 0.0


async def _burst(url: str, model_id: str, size: int, max_tokens: int, outcomes: Outcomes) -> None:
    import httpx

    body = {"model": model_id, "prompt": PROMPT, "max_tokens": max_tokens, "ignore_eos": True}
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one() -> None:
            started = time.perf_counter()
            response = await client.post(f"{url}/v1/completions", json=body)
            elapsed = time.perf_counter() - started
            if response.status_code == 200:
                outcomes.served_s.append(elapsed)
            elif response.status_code == 503:
                outcomes.shed_s.append(elapsed)
                outcomes.shed_without_retry_after += "retry-after" not in response.headers
            else:
                outcomes.other[response.status_code] = outcomes.other.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(size)])
        outcomes.wall_s += time.perf_counter() - started


@dataclass
class HeldOutcomes:
    shed_s: list[float] = field(default_factory=list)
    admitted: int = 0
    other: dict[int, int] = field(default_factory=dict)
    fillers_shed: int = 0


async def _held(url: str, model_id: str, capacity: int, probes: int, rate_per_s: float, outcomes: HeldOutcomes) -> None:
    """Fill the route past its bound with long requests, then time `probes` requests sent at `rate_per_s`."""
    import httpx

    filler = {"model": model_id, "prompt": FILLER_PROMPT, "max_tokens": FILLER_MAX_TOKENS, "ignore_eos": True}
    probe = {"model": model_id, "prompt": PROMPT, "max_tokens": 16, "ignore_eos": True}
    fillers_total = capacity + capacity // 4
    limits = httpx.Limits(max_connections=fillers_total + probes, max_keepalive_connections=fillers_total + probes)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        fillers = [asyncio.ensure_future(client.post(f"{url}/v1/completions", json=filler))
                   for _ in range(fillers_total)]
        # The route is full once fillers are shed: those past the bound come back 503 at once.
        while not any(f.done() and f.result().status_code == 503 for f in fillers):
            if all(f.done() for f in fillers):
                raise RuntimeError(f"{url}: every filler finished and none was shed; the route never filled")
            await asyncio.sleep(0.1)

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await asyncio.wait_for(client.post(f"{url}/v1/completions", json=probe), PROBE_PATIENCE_S)
            except TimeoutError:
                outcomes.admitted += 1
                return
            if response.status_code == 503:
                outcomes.shed_s.append(time.perf_counter() - started)
            else:
                outcomes.other[response.status_code] = outcomes.other.get(response.status_code, 0) + 1

        started, sent = time.perf_counter(), []
        for i in range(probes):
            await asyncio.sleep(max(0.0, started + i / rate_per_s - time.perf_counter()))
            sent.append(asyncio.ensure_future(one()))
        await asyncio.gather(*sent)
        outcomes.fillers_shed += sum(f.done() and f.result().status_code == 503 for f in fillers)
        for f in fillers:  # a dropped connection aborts the engine's request
            f.cancel()
        await asyncio.gather(*fillers, return_exceptions=True)


def _pct(samples: list[float], q: float) -> str:
    return f"{np.percentile(samples, q) * 1000:.0f}" if samples else "-"


def _report(results: dict[str, Outcomes], burst: int, rounds: int) -> None:
    print(f"{burst} concurrent requests per round, {rounds} rounds per app")
    print(f"{'app':<8}{'503 p50 ms':>12}{'503 p99 ms':>12}{'200 p50 ms':>12}{'200 p99 ms':>12}"
          f"{'served':>9}{'shed':>7}{'other':>7}{'goodput/s':>11}")
    for name, o in results.items():
        print(f"{name:<8}{_pct(o.shed_s, 50):>12}{_pct(o.shed_s, 99):>12}{_pct(o.served_s, 50):>12}"
              f"{_pct(o.served_s, 99):>12}{len(o.served_s):>9}{len(o.shed_s):>7}{sum(o.other.values()):>7}"
              f"{o.goodput():>11.1f}")
    oasis, stock = results["oasis"], results["stock"]
    if oasis.shed_s and stock.shed_s:
        print(f"503 p50: oasis / stock = {statistics.median(oasis.shed_s) / statistics.median(stock.shed_s):.3f}")
    if stock.goodput():
        print(f"goodput: oasis / stock = {oasis.goodput() / stock.goodput():.3f}")
    for name, o in results.items():
        if o.other:
            print(f"{name}: statuses other than 200/503: {o.other}")
        if o.shed_without_retry_after:
            print(f"{name}: {o.shed_without_retry_after} of its 503s had no Retry-After")


def _report_held(results: dict[str, HeldOutcomes], probes: int, rate_per_s: float) -> None:
    print(f"held at the bound: {probes} requests at {rate_per_s:g}/s per app, each dropped if not answered in "
          f"{PROBE_PATIENCE_S:g} s (admitted)")
    print(f"{'app':<8}{'503 p50 ms':>12}{'503 p99 ms':>12}{'shed':>7}{'admitted':>10}{'other':>7}{'fillers shed':>14}")
    for name, o in results.items():
        print(f"{name:<8}{_pct(o.shed_s, 50):>12}{_pct(o.shed_s, 99):>12}{len(o.shed_s):>7}{o.admitted:>10}"
              f"{sum(o.other.values()):>7}{o.fillers_shed:>14}")
    oasis, stock = results["oasis"], results["stock"]
    if oasis.shed_s and stock.shed_s:
        print(f"held 503 p50: oasis / stock = {statistics.median(oasis.shed_s) / statistics.median(stock.shed_s):.3f}")
    for name, o in results.items():
        if o.other:
            print(f"{name}: statuses other than 503 while held: {o.other}")


def _stock_ingress(config, route_handle):
    """Ray Serve LLM's own OpenAI ingress (its default FastAPI app, middleware and all) over one route."""
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import ModelCard
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    model_id = config.models[0].model_id
    card = ModelCard(id=model_id, object="model", owned_by="benchmark", permission=[], metadata={})
    ingress = serve.deployment(make_fastapi_ingress(OpenAiIngress), name="StockIngress", max_ongoing_requests=1000,
                               ray_actor_options={"num_cpus": config.ingress_cpus})
    return ingress.bind(llm_deployments={model_id: route_handle}, model_cards={model_id: card})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst-factor", type=int, default=10, help="burst size as a multiple of the queue bound")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--held-rate", type=float, default=20.0, help="requests per second while the route is held")
    cli = parser.parse_args()

    import ray
    from ray import serve

    from deployments.app import build_app
    from oasis_ray.config import parse_config

    config = parse_config(default_args_without_autoscaling())
    route = config.route(config.models[0].model_id, "short-output")
    burst = cli.burst_factor * route.max_queued_requests
    port = free_port()
    ray.init(runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}, include_dashboard=False)
    # Ray's log setup leaves httpx logging a line per request: thousands in a burst, on the client's share of CPU.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), name=APP, route_prefix="/")
        handle = serve.get_deployment_handle(route.deployment_name(route.whole_shape), app_name=APP)
        serve.run(_stock_ingress(config, handle), name=STOCK_APP, route_prefix=STOCK_PREFIX)
        base = f"http://127.0.0.1:{port}"
        urls = {"oasis": base, "stock": base + STOCK_PREFIX}
        results = {name: Outcomes() for name in urls}
        model_id = config.models[0].model_id
        for name, url in urls.items():  # warm both paths
            asyncio.run(_burst(url, model_id, 8, cli.max_tokens, Outcomes()))
        for _ in range(cli.rounds):
            for name, url in urls.items():
                asyncio.run(_burst(url, model_id, burst, cli.max_tokens, results[name]))
        held = {name: HeldOutcomes() for name in urls}
        capacity = route.max_queued_requests + route.max_ongoing_requests  # one replica, one ingress replica
        for name, url in urls.items():
            asyncio.run(_held(url, model_id, capacity, burst, cli.held_rate, held[name]))
        print(f"route short-output: max_ongoing_requests {route.max_ongoing_requests}, max_queued_requests "
              f"{route.max_queued_requests}, engine max_num_seqs {route.engine.max_num_seqs}, one replica")
        _report(results, burst, cli.rounds)
        _report_held(held, burst, cli.held_rate)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
