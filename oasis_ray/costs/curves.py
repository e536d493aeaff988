"""One replica's latency and power against its request rate, read off the HCT's load points.

The profiler measures closed-loop load points (concurrency c -> throughput,
latency percentiles, power). Reordered by throughput they say what latency
and power a replica shows when requests arrive at a given rate, up to the
highest throughput measured (`max_rps`, saturation as far as the sweep
went). The planner reads power at a planned rate off this curve and the
simulator reads latency and power at every interval's rate.

Conventions:

- Load points past saturation (throughput no higher than an earlier point's)
  add latency but no rate; the curve keeps the rising envelope only, and the
  simulator models waiting beyond `max_rps` as a queue.
- At rate 0 the latency is that of the lowest measured concurrency (an idle
  engine serves one request as fast as it ever does).
- Power is kept as the *increment over the board's idle power* (the board
  with no engine loaded), because that is what adds up: a GPU holding
  several MIG slices draws idle + sum over its slices of (slice power at its
  load - idle), and a whole GPU is the one-slice case. A load point's
  `mean_power_w` is the board's power with this engine at that load and the
  rest of the board idle, so its increment is that minus the board's idle.
  At rate 0 the engine is loaded and serves nothing: its increment is the
  row's `engine_idle_power_w` minus the board's idle. A row that does not
  give it (schema 1 tables) is charged its lowest load point's power there,
  an upper bound (an engine with a request in flight draws at least what it
  draws idle), so a missing figure never makes a policy look cheaper. The
  board's idle itself is charged per GPU held, by whoever holds the GPU
  (the simulator's and the planner's fleet accounting), never by a route.
  Unknown power (no meter, or no idle figure) stays NaN so it is reported
  as unknown, never as 0 W.
- A row without load points is one point at its MSRR, with the row's
  latencies at every rate: pessimistic below the MSRR, never optimistic.
- Requests longer or shorter than the profiled ones cost in proportion:
  the prefill part (the unloaded TTFT's share of the unloaded latency) with
  the input length, the rest with the output length. Linear, so attention's
  quadratic growth on long prompts is not modelled.

Curves are resampled onto a fixed grid of utilisation (rate / max_rps) so the
simulator can evaluate thousands of them for a million requests with one
vectorised gather.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRID_POINTS = 65
UTILISATION_GRID = np.linspace(0.0, 1.0, GRID_POINTS)


@dataclass(frozen=True)
class LoadPoints:
    """A trial's measured load points in the order of concurrency; power NaN where not measured."""

    concurrency: np.ndarray
    requests_per_s: np.ndarray
    ttft_p50_s: np.ndarray
    e2e_p50_s: np.ndarray
    e2e_p95_s: np.ndarray
    e2e_p99_s: np.ndarray
    power_w: np.ndarray


@dataclass(frozen=True, eq=False)
class ServiceCurve:
    """Quantiles and power on UTILISATION_GRID; the i-th entry holds at rate UTILISATION_GRID[i] * max_rps.

    `increment_w` is the board's draw over `board_idle_w` with this replica
    at that rate (see the module docstring); entry 0 is the loaded, idle engine.
    """

    msrr_rps: float
    max_rps: float
    p50_s: np.ndarray
    p95_s: np.ndarray
    p99_s: np.ndarray
    increment_w: np.ndarray
    board_idle_w: float
    input_tokens: int
    output_tokens: int
    prefill_share: float

    def length_factor(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """A request's cost relative to the profiled one (`length_factor`)."""
        return length_factor(self.prefill_share, input_tokens, output_tokens, self.input_tokens, self.output_tokens)

    @property
    def engine_idle_increment_w(self) -> float:
        """What the loaded engine adds to its board's idle while it serves nothing (or while it starts)."""
        return float(self.increment_w[0])

    def increment_at(self, rate_rps: float) -> float:
        """Draw over the board's idle at a rate; past `max_rps` the replica is saturated and draws its saturated power."""
        return float(np.interp(min(rate_rps / self.max_rps, 1.0), UTILISATION_GRID, self.increment_w))

    def p95_at(self, rate_rps: float) -> float:
        """P95 latency of a profiled-length request at a rate; past `max_rps` a queue grows without bound."""
        if rate_rps > self.max_rps:
            return math.inf
        return float(np.interp(min(rate_rps / self.max_rps, 1.0), UTILISATION_GRID, self.p95_s))


def service_curve(
    points: LoadPoints,
    *,
    msrr_rps: float,
    board_idle_w: float | None,
    engine_idle_power_w: float | None,
    input_tokens: int,
    output_tokens: int,
) -> ServiceCurve:
    """The curve of one replica at the profiled lengths.

    `board_idle_w` is the board's draw with no engine (None: unknown, so every
    power figure is NaN); `engine_idle_power_w` the board's with this engine
    loaded and idle (None: the lowest load point's power stands in, see the
    module docstring).
    """
    rising = _rising_envelope(points)
    rates = np.concatenate(([0.0], points.requests_per_s[rising]))
    max_rps = float(rates[-1])
    if max_rps <= 0:
        raise ValueError("requests_per_s: a service curve needs a load point with a positive throughput")
    idle = math.nan if board_idle_w is None else board_idle_w
    loaded = points.power_w[rising]
    engine_idle = float(np.min(loaded)) if engine_idle_power_w is None else engine_idle_power_w
    power = np.concatenate(([engine_idle], loaded)) - idle
    grid_rates = UTILISATION_GRID * max_rps

    def resample(values: np.ndarray) -> np.ndarray:
        return np.interp(grid_rates, rates, np.concatenate(([values[rising][0]], values[rising])))

    return ServiceCurve(
        msrr_rps=msrr_rps,
        max_rps=max_rps,
        p50_s=resample(points.e2e_p50_s),
        p95_s=resample(points.e2e_p95_s),
        p99_s=resample(points.e2e_p99_s),
        increment_w=np.interp(grid_rates, rates, power),
        board_idle_w=idle,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        prefill_share=prefill_share(points),
    )


def prefill_share(points: LoadPoints) -> float:
    """The unloaded TTFT's share of the unloaded latency (at the lowest load point of the rising envelope):
    how a request's cost splits between its input (prefill) and its output (decode)."""
    rising = _rising_envelope(points)
    return float(np.clip(points.ttft_p50_s[rising][0] / points.e2e_p50_s[rising][0], 0.0, 1.0))


def length_factor(share, input_tokens, output_tokens, profiled_input, profiled_output) -> np.ndarray:
    """A request's cost relative to the profiled one: prefill (`share` of it) scales with input, decode with
    output. Without a TTFT (a NaN share) every request costs what the profiled one did. Arguments broadcast:
    one row's share against many requests, or many rows' shares against one request."""
    share = np.asarray(share, dtype=float)
    scaled = (share * np.asarray(input_tokens, dtype=float) / profiled_input
              + (1 - share) * np.asarray(output_tokens, dtype=float) / profiled_output)
    return np.where(np.isfinite(share), scaled, 1.0)


def _rising_envelope(points: LoadPoints) -> np.ndarray:
    """Indices, in concurrency order, of points whose throughput beats every earlier one's."""
    order = np.argsort(points.concurrency, kind="stable")
    kept: list[int] = []
    best = 0.0
    for index in order:
        rate = float(points.requests_per_s[index])
        if rate > best:
            kept.append(int(index))
            best = rate
    return np.asarray(kept, dtype=np.int64)
