"""What a route call's exception says about its replica, and how a stream that loses its replica ends.

Serve surfaces a replica's death to the caller as Ray's actor errors (an
ActorDiedError naming the actor, or ActorUnavailableError while it cannot be
reached), possibly wrapped in a RayTaskError; an engine that stopped inside a
live replica comes back as a server-error answer. Those are the replica's
fault, so oasis_ray.failover may try the request elsewhere; anything else
(a bad request, a cancellation) is not a replica failure and is not retried.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

from ray.exceptions import RayActorError, RayTaskError
from ray.llm._internal.serve.core.configs.openai_api_models import OpenAIHTTPException
from ray.serve.exceptions import DeploymentUnavailableError

from oasis_ray.failover import FailureKind, ReplicaFailure

STREAM_DONE = "data: [DONE]\n\n"


def replica_failure(error: BaseException, route_key: str, shape: str) -> ReplicaFailure | None:
    """The replica failure `error` reports, or None when it is not one (then it is the request's own outcome)."""
    cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
    if isinstance(cause, RayActorError):
        return ReplicaFailure(route_key, shape, FailureKind.REPLICA_LOST, cause.actor_id)
    if isinstance(error, DeploymentUnavailableError):
        return ReplicaFailure(route_key, shape, FailureKind.ROUTE_UNAVAILABLE, None)
    if isinstance(error, OpenAIHTTPException) and error.status_code >= 500:
        return ReplicaFailure(route_key, shape, FailureKind.ENGINE_ERROR, None)
    return None


def stream_error_event(message: str, error_type: str = "server_error", code: int = 503) -> str:
    """An OpenAI-style error event, as OpenAI's API sends one inside a stream that fails after it started."""
    return f"data: {json.dumps({'error': {'message': message, 'type': error_type, 'param': None, 'code': code}})}\n\n"


async def guarded_stream(
    chunks: AsyncIterator[str | bytes], describe: Callable[[BaseException], str | None]
) -> AsyncIterator[str | bytes]:
    """Pass a stream through; if its source fails mid-way, end it with an error event and [DONE], never hang.

    `describe` turns the failure into the client's message (and logs or counts
    it); cancellation (the client went away) passes through untouched, so Serve
    cancels the engine request.
    """
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:  # noqa: BLE001 - whatever broke the stream, the client gets a well-formed end
        message = describe(error) or "The stream was interrupted by a server error."
        yield stream_error_event(message)
        yield STREAM_DONE
