"""Which route-call errors are replica failures, and how a stream that loses its replica ends (no cluster needed)."""

from __future__ import annotations

import asyncio
import json

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.llm._internal.serve.core.configs.openai_api_models import OpenAIHTTPException
from ray.serve.exceptions import BackPressureError

from deployments.replica_failures import STREAM_DONE, guarded_stream, replica_failure
from oasis_ray.failover import FailureKind

ACTOR = "ab" * 16


def _died() -> ActorDiedError:
    error = ActorDiedError()
    error.actor_id = ACTOR
    return error


@pytest.mark.parametrize(
    ("error", "kind", "replica"),
    [
        (_died(), FailureKind.REPLICA_LOST, ACTOR),
        (ActorUnavailableError("gone", bytes.fromhex(ACTOR)), FailureKind.REPLICA_LOST, ACTOR),
        (RayTaskError("completions", "traceback", _died()), FailureKind.REPLICA_LOST, ACTOR),
        (OpenAIHTTPException(status_code=500, message="EngineCore encountered an issue"), FailureKind.ENGINE_ERROR,
         None),
    ],
)
def test_replica_failures_are_recognised(error, kind, replica):
    failure = replica_failure(error, "m/long", "cpu")
    assert (failure.kind, failure.replica_id, failure.route_key, failure.shape) == (kind, replica, "m/long", "cpu")


@pytest.mark.parametrize(
    "error",
    [OpenAIHTTPException(status_code=400, message="bad"), BackPressureError(num_queued_requests=1,
                                                                             max_queued_requests=1),
     ValueError("the request's own"), RayTaskError("completions", "traceback", ValueError("bad input"))],
)
def test_the_requests_own_errors_are_not_replica_failures(error):
    assert replica_failure(error, "m/long", "cpu") is None


async def _collect(chunks) -> list[str]:
    return [chunk async for chunk in chunks]


def test_a_stream_that_loses_its_replica_ends_with_an_error_event_then_done():
    async def source():
        yield "data: {\"choices\": [{\"text\": \"a\"}]}\n\n"
        raise _died()

    seen: list[BaseException] = []
    out = asyncio.run(_collect(guarded_stream(source(), lambda e: seen.append(e) or "replica lost")))
    assert out[0].startswith("data: {\"choices\"")
    assert json.loads(out[1][len("data: "):]) == {
        "error": {"message": "replica lost", "type": "server_error", "param": None, "code": 503}}
    assert out[2] == STREAM_DONE and len(out) == 3
    assert isinstance(seen[0], ActorDiedError)


def test_a_cancelled_stream_is_not_turned_into_an_error():
    async def source():
        yield "data: {}\n\n"
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(_collect(guarded_stream(source(), lambda e: "never")))
