"""Open-loop replay of a trace against a running oasis endpoint, over its OpenAI-compatible HTTP API.

Open loop: each request is sent at its (time-scaled) arrival time whether
or not earlier ones have answered, as real users do, so a slow server meets
the trace's bursts instead of slowing the trace down. Requests use token-id
prompts (exact lengths) and `ignore_eos`, so every answer has the trace's
(capped) output length. The query type is read from the app's
`x-oasis-query-type` header, not recomputed, to record what the app decided.

Latency is from the moment a request is sent to its full answer; the gap
between schedule and send is recorded separately, so a client that falls
behind is visible instead of silently shortening the latencies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.profiling.loadgen import prompt_token_ids
from oasis_ray.planning.replay_plan import HTTP_OK, ReplayRecord, ReplayReport, ReplayRequest, report

# Ids inside every tokenizer in use here (the embedded model's has 517 tokens), past its special ones.
DEFAULT_TOKEN_POOL = tuple(range(16, 512))
_ERROR_CHARS = 300


class EndpointSettings(BaseModel):
    """How to reach a running oasis app; shared by the replay and the endpoint profiler."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    base_url: str = Field(description="HTTP root of the app, e.g. http://127.0.0.1:8000.")
    api_key: str | None = None
    model: str = Field(min_length=1)
    request_timeout_s: float = Field(300.0, gt=0)
    token_pool: tuple[int, ...] = Field(DEFAULT_TOKEN_POOL, min_length=1)
    seed: int = 0


def run_replay(
    requests: list[ReplayRequest], settings: EndpointSettings, on_done: Callable[[int], None] | None = None
) -> ReplayReport:
    """Blocking entry point; `on_done(count)` is called after each answer (for a progress bar)."""
    return asyncio.run(replay(requests, settings, on_done))


async def replay(
    requests: list[ReplayRequest], settings: EndpointSettings, on_done: Callable[[int], None] | None = None
) -> ReplayReport:
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    limits = httpx.Limits(max_connections=max(1, len(requests)), max_keepalive_connections=32)
    done = 0
    async with httpx.AsyncClient(
        base_url=settings.base_url, headers=headers, timeout=settings.request_timeout_s, limits=limits
    ) as client:
        started = time.perf_counter()

        async def one(request: ReplayRequest) -> ReplayRecord:
            nonlocal done
            await asyncio.sleep(max(0.0, started + request.send_at_s - time.perf_counter()))
            record = await _send(client, request, settings, started)
            done += 1
            if on_done is not None:
                on_done(done)
            return record

        records = await asyncio.gather(*(one(request) for request in requests))
    return report(list(records))


async def _send(
    client: httpx.AsyncClient, request: ReplayRequest, settings: EndpointSettings, started: float
) -> ReplayRecord:
    body = {
        "model": settings.model,
        "prompt": prompt_token_ids(list(settings.token_pool), request.input_tokens, settings.seed + request.index),
        "max_tokens": request.max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,
    }
    sent = time.perf_counter()
    try:
        response = await client.post("/v1/completions", json=body)
    except httpx.HTTPError as error:
        return _record(request, started, sent, status=0, error=f"{type(error).__name__}: {error}")
    headers = response.headers
    if response.status_code != HTTP_OK:
        return _record(request, started, sent, status=response.status_code, error=response.text[:_ERROR_CHARS],
                       query_type=headers.get("x-oasis-query-type"), route=headers.get("x-oasis-route"))
    usage = response.json().get("usage") or {}
    return _record(request, started, sent, status=HTTP_OK, query_type=headers.get("x-oasis-query-type"),
                   route=headers.get("x-oasis-route"), output_tokens=usage.get("completion_tokens"))


def _record(
    request: ReplayRequest, started: float, sent: float, *, status: int, error: str | None = None,
    query_type: str | None = None, route: str | None = None, output_tokens: int | None = None,
) -> ReplayRecord:
    return ReplayRecord(
        index=request.index,
        scheduled_s=request.send_at_s,
        sent_s=sent - started,
        latency_s=time.perf_counter() - sent,
        status_code=status,
        query_type=query_type,
        route=route,
        output_tokens=output_tokens,
        error=error,
    )
