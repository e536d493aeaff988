"""Open-loop replay of a trace against a running oasis endpoint, over its OpenAI-compatible HTTP API.

Open loop: each request is sent at its (time-scaled) arrival time whether
or not earlier ones have answered, as real users do, so a slow server meets
the trace's bursts instead of slowing the trace down. Requests use token-id
prompts (exact lengths) and `ignore_eos`, so every answer has the trace's
(capped) output length. The query type is read from the app's
`x-oasis-query-type` header, not recomputed, to record what the app decided.

Latency is from the moment a request is sent to its last token. Requests
stream, as the endpoint profiler's do (`stream_completion`, shared by both),
so a replay measures what the cost table measured: a non-streaming answer
can wait longer than its last token (an app with `energy_header` holds it
one to two GPU sample periods for its energy figure), which no latency in
the table includes. The gap between schedule and send is recorded
separately, so a client that falls behind is visible instead of silently
shortening the latencies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class StreamedAnswer:
    """One streamed completion as the client saw it; times are time.perf_counter() readings."""

    status_code: int
    headers: httpx.Headers
    first_token_s: float | None
    end_s: float
    completion_tokens: int | None
    error: str | None


async def stream_completion(client: httpx.AsyncClient, body: dict[str, Any]) -> StreamedAnswer:
    """POST /v1/completions with `stream` on, reading to the last chunk; the usage chunk gives the token count.

    A refusal (any status but 200) is returned with the start of its body as the error, not raised.
    """
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    first_token_s: float | None = None
    tokens: int | None = None
    async with client.stream("POST", "/v1/completions", json=streamed) as response:
        if response.status_code != HTTP_OK:
            text = (await response.aread()).decode(errors="replace")
            return StreamedAnswer(response.status_code, response.headers, None, time.perf_counter(), None,
                                  text[:_ERROR_CHARS])
        async for line in response.aiter_lines():
            payload = line.removeprefix("data: ").strip()
            if not line.startswith("data: ") or payload == "[DONE]":
                continue
            chunk = json.loads(payload)
            if first_token_s is None and any(choice.get("text") for choice in chunk.get("choices") or []):
                first_token_s = time.perf_counter()
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
        return StreamedAnswer(response.status_code, response.headers, first_token_s, time.perf_counter(), tokens,
                              None)


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
        answer = await stream_completion(client, body)
    except httpx.HTTPError as error:
        return _record(request, started, sent, time.perf_counter(), status=0, error=f"{type(error).__name__}: {error}")
    headers = answer.headers
    return _record(request, started, sent, answer.end_s, status=answer.status_code, error=answer.error,
                   query_type=headers.get("x-oasis-query-type"), route=headers.get("x-oasis-route"),
                   output_tokens=answer.completion_tokens)


def _record(
    request: ReplayRequest, started: float, sent: float, answered: float, *, status: int, error: str | None = None,
    query_type: str | None = None, route: str | None = None, output_tokens: int | None = None,
) -> ReplayRecord:
    return ReplayRecord(
        index=request.index,
        scheduled_s=request.send_at_s,
        sent_s=sent - started,
        latency_s=answered - sent,
        status_code=status,
        query_type=query_type,
        route=route,
        output_tokens=output_tokens,
        error=error,
    )
