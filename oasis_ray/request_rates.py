"""Request rates over a sliding window, counted at the ingress (see oasis_ray.scaling.traffic for the report).

The ingress is the one place that sees every request with its route and
query type, so it counts there; what it reports to the autoscaler is a
TrafficReport built from these rates.
"""

from __future__ import annotations

from collections import deque


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
