"""One request's way from its route decision to an answer: admission, failover, and the handle it uses.

The decisions are oasis_ray's (failover order, retry bounds, admission
capacity); this module applies them to Serve's handles. A request goes to
the first route that can serve it (oasis_ray.failover.failover_order over the
cached health view), is admitted against that deployment's capacity or shed
at once with 503, and if its replica fails before the client saw a byte it is
sent again: to the same route while it has another replica, else to another
route of the same model. Each retry is one log line and one count
(`oasis.request.retries`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

from ray.serve.exceptions import BackPressureError

from deployments.replica_failures import replica_failure
from oasis_ray.admission import InFlight, deployment_capacity
from oasis_ray.api import OasisRequestError
from oasis_ray.config import OasisAppConfig, RouteConfig, route_key
from oasis_ray.failover import (
    NO_ROUTE_RETRY_AFTER_S,
    FailureKind,
    ReplicaFailure,
    RouteHealth,
    RouteState,
    failover_order,
    may_retry,
    next_route,
)
from oasis_ray.routing import QueryRouter, RouteDecision
from oasis_ray.shape_choice import ShapeBalancer
from oasis_ray.telemetry.instruments import AnyTelemetry

logger = logging.getLogger("ray.serve")

T = TypeVar("T")

# OpenAiIngress picks a handle by model id only. The (route key, shape) chosen for the
# attempt in flight travels here, so the parent's request path is reused unchanged.
CHOSEN_TARGET: ContextVar[tuple[str, str]] = ContextVar("oasis_chosen_target")


class _RouteFailed(Exception):
    """A trip abandoned because its route failed while the request waited on it."""


@dataclass
class Dispatched(Generic[T]):
    """What a route answered, where (the decision names the route that served), and the admission slot it holds."""

    decision: RouteDecision
    shape: str
    result: T
    release: Callable[[], None]


class Dispatcher:
    def __init__(self, config: OasisAppConfig, router: QueryRouter, health: RouteHealth, telemetry: AnyTelemetry) -> None:
        self._config = config
        self._router = router
        self._health = health
        self._telemetry = telemetry
        self._in_flight = InFlight()
        self._balancer = ShapeBalancer({r.key: r.cold_start_shape for r in config.routes})
        # Per route key, set when the route fails: trips waiting on it stop waiting (see _trip).
        self._route_failed: dict[str, asyncio.Event] = {}

    async def send(self, decision: RouteDecision, call: Callable[[], Awaitable[T]]) -> Dispatched[T]:
        """Run `call` (one trip to the route CHOSEN_TARGET names) until a replica answers, or raise a 503.

        Raises OasisRequestError 503 when the route is at its bound (shed) or when
        no route can serve; other errors of `call` are the request's own and pass through.
        """
        fallbacks = self._router.fallbacks(decision)
        attempts: dict[str, int] = {}
        failed: tuple[RouteDecision, ReplicaFailure] | None = None
        while True:
            now = time.monotonic()
            states = {r: self._health.state(route_key(decision.model_id, r), now) for r in [decision.route, *fallbacks]}
            route_name = next_route(failover_order(decision.route, fallbacks, states), attempts)
            made = sum(attempts.values())
            if failed is not None:
                self._log_retry(*failed, route_name, made)
                if not may_retry(made, bytes_sent=False):
                    route_name = None
            if route_name is None:
                raise self._unavailable(decision)
            served = decision if route_name == decision.route else dataclasses.replace(decision, route=route_name,
                                                                                        shape=None)
            route = self._config.route(decision.model_id, route_name)
            # A shape an intent chose is the first attempt's; a retry spreads like any request.
            first_try = served.shape is not None and not attempts.get(route_name)
            shape = served.shape if first_try else self._pick_shape(route, now)
            release = self._admit(served, route, shape, now)
            attempts[route_name] = attempts.get(route_name, 0) + 1
            token = CHOSEN_TARGET.set((route.key, shape))
            try:
                result = await self._trip(route.key, call)
            except BackPressureError as error:
                release()
                raise self._overloaded(served, getattr(error, "retry_after_s", None)) from None
            except _RouteFailed:
                release()
                failed = (served, ReplicaFailure(route.key, shape, FailureKind.ROUTE_FAILED, None))
                continue
            except Exception as error:
                release()
                failure = replica_failure(error, route.key, shape)
                if failure is None:
                    raise
                self._replica_failed(failure)
                failed = (served, failure)
                continue
            finally:
                CHOSEN_TARGET.reset(token)
            return Dispatched(served, shape, result, release)

    async def _trip(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call`, abandoned if its route fails meanwhile.

        A request still queued at Serve's handle for a route whose replicas all
        died would wait there until Serve replaces them (tens of seconds for an
        engine); when another request's failure shows the route is gone, this one
        leaves the queue and dispatch sends it elsewhere.
        """
        route_failed = self._route_failed.setdefault(key, asyncio.Event())
        trip = asyncio.ensure_future(call())
        watch = asyncio.ensure_future(route_failed.wait())
        try:
            await asyncio.wait({trip, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            trip.cancel()
            watch.cancel()
            raise
        if trip.done():
            watch.cancel()
            return trip.result()
        trip.cancel()
        await asyncio.gather(trip, return_exceptions=True)
        raise _RouteFailed(key)

    def _replica_failed(self, failure: ReplicaFailure) -> None:
        """Note the failure; if it leaves the route without a healthy replica, release the requests waiting on it."""
        now = time.monotonic()
        self._health.replica_failed(failure, now)
        if self._health.state(failure.route_key, now) is RouteState.FAILED:
            event = self._route_failed.pop(failure.route_key, None)
            if event is not None:
                event.set()

    def stream_broke(self, served: RouteDecision, shape: str, error: BaseException) -> str:
        """A stream's source failed after it started: note the replica's failure, log it, say what the client reads."""
        route = self._config.route(served.model_id, served.route)
        failure = replica_failure(error, route.key, shape)
        if failure is not None:
            self._replica_failed(failure)
        logger.warning(
            "oasis stream_interrupted model=%s query_type=%s route=%s shape=%s reason=%s replica=%s",
            served.model_id, served.query_type.value, served.route, shape,
            failure.kind.value if failure else type(error).__name__,
            (failure.replica_id if failure else None) or "unknown",
        )
        return (f"The stream was interrupted: the replica serving route '{served.route}' failed "
                f"({failure.kind.value if failure else type(error).__name__}); retry the request.")

    def _pick_shape(self, route: RouteConfig, now: float) -> str:
        """Only a route with several shapes needs the replica view to choose among them."""
        shapes = route.shapes()
        if len(shapes) == 1:
            return next(iter(shapes))
        return self._balancer.pick(route.key, self._health.healthy_counts(route.key, now))

    def _admit(self, served: RouteDecision, route: RouteConfig, shape: str, now: float) -> Callable[[], None]:
        """Take a slot on the deployment or shed the request now; the returned release frees it, once.

        Before the first view of the replicas, the route's minimum stands in for its running count.
        """
        healthy = self._health.healthy_counts(route.key, now)
        running = healthy.get(shape, 0) if healthy else max(route.min_replicas, 1)
        capacity = deployment_capacity(running, route.max_ongoing_requests, route.max_queued_requests,
                                       self._config.ingress_replicas)
        target = (route.key, shape)
        if not self._in_flight.try_admit(target, capacity):
            raise self._overloaded(served, None)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_flight.release(target)

        return release

    def _log_retry(self, failed: RouteDecision, failure: ReplicaFailure, to_route: str | None, attempts: int) -> None:
        logger.warning(
            "oasis retry model=%s query_type=%s route=%s shape=%s reason=%s replica=%s attempts=%d next_route=%s",
            failed.model_id, failed.query_type.value, failed.route, failure.shape, failure.kind.value,
            failure.replica_id or "unknown", attempts, to_route or "none",
        )
        if to_route is not None:
            self._telemetry.record_retry(failed.model_id, failed.query_type, failed.route, to_route, failure.kind.value)

    @staticmethod
    def _overloaded(decision: RouteDecision, retry_after_s: float | None) -> OasisRequestError:
        return OasisRequestError(
            503, f"Route '{decision.route}' of model '{decision.model_id}' is at its queue bound; retry later.",
            error_type="overloaded", retry_after_s=max(1, round(retry_after_s or 1)),
        )

    @staticmethod
    def _unavailable(decision: RouteDecision) -> OasisRequestError:
        return OasisRequestError(
            503, f"No replica of model '{decision.model_id}' can serve this request now (route "
                 f"'{decision.route}' and its fallbacks are down); retry later.",
            error_type="unavailable", retry_after_s=NO_ROUTE_RETRY_AFTER_S,
        )

