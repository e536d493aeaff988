"""The simulator's arithmetic on arrays: queues, latency draws and SLO windows, with no Python loop per request.

A million requests must simulate in well under a minute, so each step is a
numpy expression over all requests or all time bins at once:

- Waiting beyond a replica group's saturated throughput is a fluid FIFO
  queue per time bin. The backlog follows Lindley's recursion
  B[b] = max(0, B[b-1] + arrived[b] - capacity[b]), which has the closed
  form B = S - min(0, running minimum of S) for S the cumulative sum of
  (arrived - capacity), so it is two cumulative passes, not a loop. A
  request leaves once the capacity after its arrival has cleared the backlog
  it found (a binary search on cumulative capacity).
- A request's service latency is drawn from the HCT's measured P50/P95/P99
  at its replica's load, through a piecewise-linear quantile function; below
  the median and above P99 the tails repeat the ratio of their measured
  neighbours (P50/P95 and P99/P95), an assumption since the HCT measures
  nothing outside.
"""

from __future__ import annotations

import numpy as np

_QUEUE_TOLERANCE = 1e-9


def trailing_mean(per_bin: np.ndarray, window_bins: int) -> np.ndarray:
    """Mean of each bin and the `window_bins - 1` before it (fewer at the start)."""
    window = max(1, window_bins)
    total = np.cumsum(per_bin, dtype=np.float64)
    earlier = np.concatenate((np.zeros(window), total))[: len(total)]
    counts = np.minimum(np.arange(1, len(per_bin) + 1), window)
    return (total - earlier) / counts


def backlog(arrived: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Work waiting at the end of each bin: Lindley's recursion in closed form."""
    running = np.cumsum(arrived - capacity)
    return running - np.minimum(0.0, np.minimum.accumulate(running))


def queue_waits(
    arrival_s: np.ndarray, bin_index: np.ndarray, arrived: np.ndarray, capacity: np.ndarray, bin_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(wait per request, backlog per bin) for one FIFO group.

    `arrived` is work per bin already averaged over the load window, in the
    unit of `capacity` (work served per bin). Averaging first matters: the
    latency curves already hold the queueing of a busy engine below
    saturation, so only a sustained excess of arrivals over capacity may add
    a queue; raw per-second arrivals would count the same queueing twice.
    A request waits until the capacity after its arrival has cleared the
    backlog in front of it, however long no replica is ready (a cold start);
    one still waiting after the last bin waits forever (inf). Backlogs within
    rounding of zero are returned as exactly zero.
    """
    tolerance = _QUEUE_TOLERANCE * max(1.0, float(capacity.max()) if len(capacity) else 1.0)
    waiting = backlog(arrived, capacity)
    waiting = np.where(waiting > tolerance, waiting, 0.0)
    waiting_before = np.concatenate(([0.0], waiting[:-1]))
    within = arrival_s / bin_s - bin_index
    ahead = waiting_before[bin_index] + (waiting[bin_index] - waiting_before[bin_index]) * within
    queued = (ahead > tolerance) | (capacity[bin_index] <= 0)
    waits = np.zeros(len(arrival_s))
    if queued.any():
        cleared = np.cumsum(capacity)
        cleared_before = np.concatenate(([0.0], cleared[:-1]))
        at = bin_index[queued]
        # The tolerance makes "cleared" strict, so a request meeting no capacity waits for the first that comes.
        target = cleared_before[at] + capacity[at] * within[queued] + ahead[queued] + tolerance
        done_in = np.searchsorted(cleared, target, side="left")
        never = done_in >= len(cleared)
        done_in = np.minimum(done_in, len(cleared) - 1)
        rate = capacity[done_in]
        share = np.divide(target - cleared_before[done_in], rate, out=np.ones(len(rate)), where=rate > 0)
        departure = (done_in + np.clip(share, 0.0, 1.0)) * bin_s
        waits[queued] = np.where(never, np.inf, np.maximum(0.0, departure - arrival_s[queued]))
    return waits, waiting


def latency_from_quantiles(u: np.ndarray, p50: np.ndarray, p95: np.ndarray, p99: np.ndarray) -> np.ndarray:
    """The latency at quantile `u` of a distribution with the given P50/P95/P99."""
    low = p50 * p50 / np.where(p95 > 0, p95, 1.0)
    high = p99 * p99 / np.where(p95 > 0, p95, 1.0)
    return np.where(
        u < 0.5,
        low + (p50 - low) * u / 0.5,
        np.where(
            u < 0.95,
            p50 + (p95 - p50) * (u - 0.5) / 0.45,
            np.where(u < 0.99, p95 + (p99 - p95) * (u - 0.95) / 0.04, p99 + (high - p99) * (u - 0.99) / 0.01),
        ),
    )


def latency_percentiles(latency_s: np.ndarray) -> tuple[float, float, float]:
    """Nearest-rank P50/P95/P99, so a request never served (inf) counts as slow rather than turning P99 into NaN."""
    p50, p95, p99 = np.percentile(latency_s, [50, 95, 99], method="inverted_cdf")
    return float(p50), float(p95), float(p99)


def window_p95_attainment(arrival_s: np.ndarray, latency_s: np.ndarray, window_s: float, slo_s: float) -> float:
    """Share of windows (by arrival, with at least one request) whose nearest-rank P95 latency meets the SLO.

    The SLO is itself a P95, so this asks how much of the time the service
    kept it, rather than how many single requests were fast.
    """
    window = np.floor(arrival_s / window_s).astype(np.int64)
    _, starts, counts = np.unique(window, return_index=True, return_counts=True)
    if np.any(np.diff(window) < 0):
        raise ValueError("arrival_s: requests must be sorted by arrival")
    # Arrivals are sorted, so each window is one contiguous block: select its rank in place, no global sort.
    ranks = np.ceil(0.95 * counts).astype(np.int64) - 1
    p95 = np.fromiter((np.partition(latency_s[start:start + count], rank)[rank]
                       for start, count, rank in zip(starts.tolist(), counts.tolist(), ranks.tolist())),
                      dtype=float, count=len(starts))
    return float(np.mean(p95 <= slo_s))
