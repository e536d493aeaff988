"""Recent end-to-end latency per key, for the status view's "P95 vs SLO" line.

Metrics backends compute percentiles from histogram buckets; an operator at a
terminal wants the figure now, from the requests of the last window, computed
the way the profiler computes the MSRR's P95 (numpy's default linear
interpolation), so the two can be compared.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class LatencyWindow:
    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s: must be > 0, got {window_s}")
        self._window_s = window_s
        self._samples: dict[str, deque[tuple[float, float]]] = {}

    def record(self, key: str, now_s: float, e2e_s: float) -> None:
        """Also forgets the key's samples older than the window, so memory stays bounded with no reader."""
        if e2e_s < 0:
            raise ValueError(f"e2e_s: latency of {key!r} is negative ({e2e_s})")
        samples = self._samples.setdefault(key, deque())
        _drop_before(samples, now_s - self._window_s)
        samples.append((now_s, e2e_s))

    def p95(self, now_s: float) -> dict[str, float]:
        """Keys with at least one request in the window; a key without any is absent, not 0."""
        horizon = now_s - self._window_s
        result = {}
        for key, samples in self._samples.items():
            _drop_before(samples, horizon)
            if samples:
                result[key] = float(np.percentile([e2e for _, e2e in samples], 95))
        return result


def _drop_before(samples: deque[tuple[float, float]], horizon: float) -> None:
    while samples and samples[0][0] < horizon:
        samples.popleft()
