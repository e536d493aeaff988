"""Failover decisions: which routes may take a request now, and what to do when its replica fails.

Pure code (no Ray, no I/O). The ingress feeds it two things: the controller's
view of running replicas (polled off the request path, see
deployments/running_replicas.py) and the replica failures its own requests
meet, which it learns long before the controller does (Serve health-checks a
replica only every 10 s). From those it answers, per route:

- HEALTHY: at least one running replica not seen failing;
- COLD: no running replica and no failure seen (starting, or scaled to zero:
  Serve holds a request until a replica is up, which is what such a route wants);
- FAILED: its last healthy replica was seen failing; sending there would wait
  for Serve to replace it (tens of seconds for an engine), so the request goes
  to another route of the model or gets 503 with Retry-After;
- UNKNOWN: no view yet (just started); treated as healthy.

A failure mark on a replica lasts until the controller drops that replica or
FAILURE_MARK_S passes, so a replica that was only briefly unreachable comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

# How long a replica seen failing is kept out of rotation while the controller still lists it as running.
FAILURE_MARK_S = 60.0
# Attempts per request, the first included, and per route: the chosen route twice (another replica), then another.
MAX_ATTEMPTS = 3
MAX_ATTEMPTS_PER_ROUTE = 2
# Retry-After when no route can take a request: about how long Serve takes to notice and replace a replica.
NO_ROUTE_RETRY_AFTER_S = 5


class RouteState(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    COLD = "cold"
    FAILED = "failed"


class FailureKind(StrEnum):
    """Why a request's trip to a replica ended without an answer."""

    REPLICA_LOST = "replica_lost"  # the replica process died or became unreachable
    ENGINE_ERROR = "engine_error"  # the engine answered with a server error (its process died, or a fault of its own)
    ROUTE_UNAVAILABLE = "route_unavailable"  # Serve reports the deployment cannot take requests
    ROUTE_FAILED = "route_failed"  # the request waited for a replica of a route whose replicas all failed meanwhile


def may_retry(attempts_made: int, bytes_sent: bool) -> bool:
    """A failed trip is tried again only while the client has seen nothing of the answer.

    Every FailureKind is the replica's fault, not the request's, so the same
    request can succeed on another replica; once a byte went out, a second
    answer would be spliced onto the first. Attempts are bounded so a request
    never circles between routes that keep failing.
    """
    return not bytes_sent and attempts_made < MAX_ATTEMPTS


def next_route(order: Sequence[str], attempts: Mapping[str, int]) -> str | None:
    """The first route of `order` (see failover_order) not yet tried MAX_ATTEMPTS_PER_ROUTE times; None: give up.

    A second try on the same route reaches another replica where it has one (Serve's
    router drops a replica whose actor died); an engine error names no replica, so
    the route stays in `order` and this bound moves the request on.
    """
    return next((route for route in order if attempts.get(route, 0) < MAX_ATTEMPTS_PER_ROUTE), None)


@dataclass(frozen=True)
class ReplicaFailure:
    route_key: str
    shape: str
    kind: FailureKind
    replica_id: str | None  # the replica's actor id where the error names it


@dataclass
class _Deployment:
    running: frozenset[str] = frozenset()
    failed_at: dict[str, float] = field(default_factory=dict)  # replica id -> when seen failing

    def healthy(self, now_s: float) -> int:
        return sum(1 for r in self.running if now_s - self.failed_at.get(r, float("-inf")) >= FAILURE_MARK_S)


class RouteHealth:
    """Per (route, shape) deployment: running replicas from the controller, minus those seen failing here."""

    def __init__(self) -> None:
        self._deployments: dict[tuple[str, str], _Deployment] = {}
        self._failed_routes: set[str] = set()

    def observe(self, running: Mapping[tuple[str, str], Iterable[str]], now_s: float) -> None:
        """A fresh controller view: replica ids running per (route key, shape)."""
        for key, replicas in running.items():
            deployment = self._deployments.setdefault(key, _Deployment())
            deployment.running = frozenset(replicas)
            deployment.failed_at = {r: t for r, t in deployment.failed_at.items()
                                    if r in deployment.running and now_s - t < FAILURE_MARK_S}
        for route in list(self._failed_routes):
            if self.healthy_replicas(route, now_s) > 0:
                self._failed_routes.discard(route)

    def replica_failed(self, failure: ReplicaFailure, now_s: float) -> None:
        deployment = self._deployments.setdefault((failure.route_key, failure.shape), _Deployment())
        # An error that names no replica makes every replica the view lists suspect; new ones are not.
        suspects = deployment.running if failure.replica_id is None else [failure.replica_id]
        deployment.failed_at.update(dict.fromkeys(suspects, now_s))
        if self.healthy_replicas(failure.route_key, now_s) == 0:
            self._failed_routes.add(failure.route_key)

    def healthy_counts(self, route_key: str, now_s: float) -> dict[str, int]:
        """Healthy replicas per shape of the route, for spreading its requests."""
        return {shape: d.healthy(now_s) for (route, shape), d in self._deployments.items() if route == route_key}

    def healthy_replicas(self, route_key: str, now_s: float) -> int:
        return sum(self.healthy_counts(route_key, now_s).values())

    def state(self, route_key: str, now_s: float) -> RouteState:
        if not any(route == route_key for route, _ in self._deployments):
            return RouteState.UNKNOWN
        if self.healthy_replicas(route_key, now_s) > 0:
            return RouteState.HEALTHY
        return RouteState.FAILED if route_key in self._failed_routes else RouteState.COLD


def failover_order(primary: str, fallbacks: Sequence[str], states: Mapping[str, RouteState]) -> list[str]:
    """Routes to try, best first: the chosen one if it can serve, then the model's other routes that can.

    Routes that can serve now (healthy, or not yet known) come first, the
    chosen one ahead of the fallbacks; cold routes after them (a request there
    waits for a replica to start); failed routes never. Empty means nothing can
    serve the request: answer 503 with Retry-After rather than make it wait.
    """
    candidates = [primary, *fallbacks]
    ready = [r for r in candidates if states[r] in (RouteState.HEALTHY, RouteState.UNKNOWN)]
    cold = [r for r in candidates if states[r] is RouteState.COLD]
    return ready + cold
