"""Admission at the ingress: shed a request in microseconds instead of after it waited on a Serve handle.

Serve's own bound works per caller: each handle (so each ingress replica's
handle to a deployment) lets at most `max_queued_requests` requests wait for a
replica, and each replica takes at most `max_ongoing_requests` at once
(ray/serve/_private/router.py, wrap_request_assignment). So what one ingress
replica may have in flight to a deployment is its own queue plus its share of
the replicas' slots:

    capacity = max_queued_requests + ceil(running_replicas * max_ongoing_requests / ingress_replicas)

Counting requests in flight against that at the ingress gives the same bound
Serve would enforce, but the 503 comes before the request is ever handed to
Serve, so a shed request learns at once. Serve's BackPressureError stays
behind it as the backstop for what this count cannot see (another caller of
the same deployment, a replica slower to report than the view).

Pure code: the counts live in the ingress process, one instance per replica.
"""

from __future__ import annotations

import math
from collections.abc import Hashable


def deployment_capacity(running_replicas: int, max_ongoing: int, max_queued: int, ingress_replicas: int) -> int:
    """Requests one ingress replica may have in flight to one deployment, per Serve's semantics above."""
    if min(max_ongoing, max_queued, ingress_replicas) < 1 or running_replicas < 0:
        raise ValueError(
            f"max_ongoing {max_ongoing}, max_queued {max_queued} and ingress_replicas {ingress_replicas} must be "
            f">= 1 and running_replicas {running_replicas} >= 0"
        )
    return max_queued + math.ceil(running_replicas * max_ongoing / ingress_replicas)


class InFlight:
    """Requests admitted and not yet finished, per key (a route's deployment)."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}

    def try_admit(self, key: Hashable, capacity: int) -> bool:
        count = self._counts.get(key, 0)
        if count >= capacity:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: Hashable) -> None:
        count = self._counts.get(key, 0)
        if count <= 0:
            raise ValueError(f"release of {key!r} without an admitted request")
        self._counts[key] = count - 1

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)
