"""Replica death and client disconnect on the shared app (tests/conftest.py), through real HTTP.

The chaos test kills the long-output route's only replica with SIGKILL while
requests stream and wait on it: the default route (short-output) has the
context for them, so every non-streaming request must be answered, and every
stream must end with its last token or an error event, never hang. It waits
for Serve to replace the replica before it returns, so the tests after it find
the app whole, and prints how long that took.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass

import httpx
import psutil
import pytest
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ReplicaDetails, ReplicaState, ServeInstanceDetails

from tests.conftest import API_KEY, APP_NAME, LONG_ROUTE_MAX_ONGOING, LONG_ROUTE_MAX_QUEUED, MODEL_ID

LONG_DEPLOYMENT = f"route:long-output@cpu:{MODEL_ID}"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
# A SILO request: the long-output route's type.
SILO = {"model": MODEL_ID, "prompt": [300] * 20, "max_tokens": 600, "ignore_eos": True}
# Long enough (about 2 s of decoding here) to be cut by the kill.
CHAOS = {**SILO, "max_tokens": 1800}
SEND_GAP_S = 0.2
# Only a guard against a test hanging the suite; no assertion depends on it.
STUCK_AFTER_S = 240.0


def _running_replicas(deployment: str) -> list[ReplicaDetails]:
    details = ServeInstanceDetails(**_get_global_client().get_serve_details())
    replicas = details.applications[APP_NAME].deployments[deployment].replicas
    return [r for r in replicas if r.state == ReplicaState.RUNNING]


def _engine_requests(deployment: str) -> int:
    """What the route's (only) replica's vLLM engine holds, running or waiting."""
    return serve.get_deployment_handle(deployment, app_name=APP_NAME).engine_requests.remote().result()


def _wait_until(condition, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > STUCK_AFTER_S:
            pytest.fail(f"still waiting after {STUCK_AFTER_S:.0f} s for {what}")
        time.sleep(0.25)
    return time.monotonic() - started


def _wait_until_answered_on(route: str, base: str) -> httpx.Response:
    """Send a request of the route's type until the route itself answers it (no failover)."""
    answers: list[httpx.Response] = []

    def answered() -> bool:
        answers.append(httpx.post(f"{base}/v1/completions", json={**SILO, "max_tokens": 520}, headers=HEADERS,
                                  timeout=STUCK_AFTER_S))
        assert answers[-1].status_code == 200, answers[-1].text
        return answers[-1].headers["x-oasis-route"] == route

    _wait_until(answered, f"route {route} to answer again")
    return answers[-1]


@dataclass
class StreamEnd:
    tokens: int
    finish_reason: str | None
    error: dict | None
    done: bool


async def _stream(client: httpx.AsyncClient, base: str, body: dict, first_token: asyncio.Event | None = None,
                  error_event: asyncio.Event | None = None) -> StreamEnd:
    end = StreamEnd(tokens=0, finish_reason=None, error=None, done=False)
    # The final usage chunk counts tokens: Ray Serve LLM may merge several tokens into one event.
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", f"{base}/v1/completions", json=streamed, headers=HEADERS) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                end.done = True
                continue
            event = json.loads(line[len("data: "):])
            if "error" in event:
                end.error = event["error"]
                if error_event is not None:
                    error_event.set()
            if event.get("usage"):
                end.tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices") or []:
                if first_token is not None:
                    first_token.set()
                end.finish_reason = choice.get("finish_reason") or end.finish_reason
    return end


def test_a_client_that_drops_mid_stream_aborts_the_engine_request(oasis_app):
    """vLLM aborts a request whose stream is cancelled; the cancellation must reach it through both Serve hops."""
    assert _engine_requests(LONG_DEPLOYMENT) == 0
    max_tokens = 1900
    body = {**SILO, "max_tokens": max_tokens, "stream": True}
    with httpx.stream("POST", f"{oasis_app}/v1/completions", json=body, headers=HEADERS, timeout=60) as response:
        events = 0
        first_at = None
        lines = response.iter_lines()  # held: a dropped iterator would close the connection at once
        for line in lines:
            if line.startswith("data: {"):
                events += 1
                first_at = first_at or time.monotonic()
            if events >= 40:
                break
        tokens_per_s = (events - 1) / (time.monotonic() - first_at)
        while_streaming = _engine_requests(LONG_DEPLOYMENT)
    # Leaving the block closed the connection mid-stream.
    gone_after_s = _wait_until(lambda: _engine_requests(LONG_DEPLOYMENT) == 0, "the engine to drop the request")
    natural_end_s = (max_tokens - events) / tokens_per_s
    print(f"\n[disconnect] engine request gone {gone_after_s:.2f} s after the client left; decoding on would have "
          f"taken {natural_end_s:.1f} s more at the {tokens_per_s:.0f} tokens/s it streamed")
    assert while_streaming == 1
    assert gone_after_s < natural_end_s / 3, "the engine finished the request instead of aborting it"


def test_killing_a_replica_under_load_loses_no_request(oasis_app):
    """Requests in flight fail over, new ones go straight to the healthy route, streams end cleanly."""
    (victim,) = _running_replicas(LONG_DEPLOYMENT)
    engine_processes = psutil.Process(victim.pid).children(recursive=True)
    in_flight = LONG_ROUTE_MAX_ONGOING + LONG_ROUTE_MAX_QUEUED  # the route's whole capacity, half of it streams

    async def load() -> tuple[list[httpx.Response], list[StreamEnd], list[httpx.Response], float]:
        async with httpx.AsyncClient(timeout=STUCK_AFTER_S) as client:
            plain, streams = [], []
            streaming, cut = asyncio.Event(), asyncio.Event()
            for _ in range(in_flight // 2):
                # One at a time: Serve's own queue count rejects simultaneous arrivals below its bound.
                plain.append(asyncio.ensure_future(client.post(f"{oasis_app}/v1/completions", json=CHAOS,
                                                               headers=HEADERS)))
                await asyncio.sleep(SEND_GAP_S)
                streams.append(asyncio.ensure_future(_stream(client, oasis_app, CHAOS, streaming, cut)))
                await asyncio.sleep(SEND_GAP_S)
            # The first two run on the replica (its max_ongoing_requests), the others wait in Serve's queue.
            await asyncio.wait_for(streaming.wait(), STUCK_AFTER_S)
            os.kill(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            # Once the ingress has seen the death (the cut stream's error event says so), the route has no
            # replica: these must go to another route at once, not wait for the restart.
            await asyncio.wait_for(cut.wait(), STUCK_AFTER_S)
            after = []
            for _ in range(in_flight):
                after.append(asyncio.ensure_future(client.post(f"{oasis_app}/v1/completions", json=CHAOS,
                                                               headers=HEADERS)))
                await asyncio.sleep(SEND_GAP_S)
            return (await asyncio.gather(*plain), await asyncio.gather(*streams), await asyncio.gather(*after),
                    killed_at)

    plain, streams, after, killed_at = asyncio.run(load())
    _wait_until(lambda: any(r.actor_id != victim.actor_id for r in _running_replicas(LONG_DEPLOYMENT)),
                "Serve to replace the killed replica")
    replaced_s = time.monotonic() - killed_at
    _wait_until(lambda: not [p for p in engine_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                "the killed replica's engine processes to exit")
    # The ingress sees the replacement in its next view of the replicas; until then the default route serves.
    back = _wait_until_answered_on("long-output", oasis_app)
    recovered_s = time.monotonic() - killed_at
    failed_over = [r for r in plain + after if r.headers.get("x-oasis-failover-from") == "long-output"]
    print(f"\n[chaos] replica {victim.actor_id[:12]} (pid {victim.pid}) killed under {in_flight} requests: "
          f"{len(failed_over)} of {len(plain) + len(after)} non-streaming answers failed over to short-output; "
          f"streams: {sum(s.finish_reason == 'length' for s in streams)} completed, "
          f"{sum(s.error is not None for s in streams)} ended with an error event; replacement replica running "
          f"{replaced_s:.1f} s after the kill, the route answering again after {recovered_s:.1f} s")
    assert [r.status_code for r in plain + after] == [200] * (len(plain) + len(after)), [r.text for r in plain + after]
    assert all(r.json()["usage"]["completion_tokens"] == CHAOS["max_tokens"] for r in plain + after)
    assert all(r.headers["x-oasis-route"] == "short-output" for r in after)
    assert failed_over, "the kill hit no request in flight"
    assert engine_processes, "the replica's vLLM engine runs in processes of its own"
    for end in streams:
        assert end.done, end
        assert (end.finish_reason == "length" and end.tokens >= CHAOS["max_tokens"]) or end.error is not None, end
    assert back.status_code == 200 and "x-oasis-failover-from" not in back.headers
