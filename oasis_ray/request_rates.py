"""Request rates over a sliding window, as the ingress reports them to the autoscaler.

The ingress is the one place that sees every request with its route and
query type, so it counts there; the autoscaling policy sums the reports of
all ingress replicas. The rate per route is what the core sizes; the rate
per (route, query type) tells it the mix, and so the route's MSRR.
"""

from __future__ import annotations

from collections import deque

from oasis_ray.query_types import QueryType

# Custom autoscaling metric names: this prefix plus the route key.
RATE_METRIC_PREFIX = "oasis_rps:"
# This prefix plus "<route key>/<query type>" (see type_rate_metric).
TYPE_RATE_METRIC_PREFIX = "oasis_type_rps:"


def type_rate_metric(route_key: str, query_type: QueryType) -> str:
    return f"{TYPE_RATE_METRIC_PREFIX}{route_key}/{query_type.value}"


def parse_type_rate_metric(name: str) -> tuple[str, QueryType] | None:
    """(route key, query type) of a type rate metric; None for any other name.

    The type is split off the right, since model ids (and so route keys) may hold '/'.
    """
    if not name.startswith(TYPE_RATE_METRIC_PREFIX):
        return None
    route, _, type_name = name.removeprefix(TYPE_RATE_METRIC_PREFIX).rpartition("/")
    try:
        query_type = QueryType(type_name)
    except ValueError:
        return None
    return (route, query_type) if route else None


class RateWindow:
    def __init__(self, window_s: float, started_s: float):
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self._window_s = window_s
        self._started_s = started_s
        self._arrivals: dict[str, deque[float]] = {}

    def record(self, key: str, now_s: float) -> None:
        """Also forgets the key's arrivals older than the window, so memory stays bounded with no reader."""
        arrivals = self._arrivals.setdefault(key, deque())
        _drop_before(arrivals, now_s - self._window_s)
        arrivals.append(now_s)

    def rates(self, now_s: float, keys: list[str]) -> dict[str, float]:
        """Requests per second for each key, zero included: a quiet route is news to the autoscaler.

        Until a full window has passed, the rate is over the time since start,
        so a fresh ingress neither hides a burst nor invents a lull.
        """
        span = min(self._window_s, max(now_s - self._started_s, 1e-3))
        horizon = now_s - self._window_s
        rates = {}
        for key in keys:
            arrivals = self._arrivals.get(key, deque())
            _drop_before(arrivals, horizon)
            rates[key] = len(arrivals) / span
        return rates


def _drop_before(arrivals: deque[float], horizon: float) -> None:
    while arrivals and arrivals[0] < horizon:
        arrivals.popleft()
