"""Intents (iServe, seeds/003 §4.1): what a deployment or a request wants optimised, stated instead of tuned.

iServe lets developers state an intent (minimise latency or cost, or meet a
target) and picks the deployment configuration for them. oasis-ray offers four:

- `min-latency`: the configuration, or running target, with the lowest P95
  end-to-end latency of a request it need not queue (its lowest measured
  load); under load Algorithm 1 holds every configuration within the SLO.
- `min-energy`: the fewest joules per request at the MSRR (the load Algorithm
  1 keeps replicas at), within the SLO.
- `min-cost`: the fewest GPU-seconds per request (the highest MSRR per GPU),
  so the fewest GPU-hours for the traffic.
- `slo`: meet the SLO with the configuration the operator set (what oasis-ray
  did before intents). The default everywhere.

An intent acts at two times. At deployment, a route's intent (its own, else
the app's) picks the engine configuration it runs from the cost table
(oasis_ray.costs.intent_config). Per request, the `x-oasis-intent` header (or
GenerateRequest.intent) picks among the routes and shapes already running
(oasis_ray.intent_routing); it never starts or moves a replica. Both rank by
the objectives written here once (objective_columns).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

INTENT_HEADER = "x-oasis-intent"


class Intent(str, Enum):
    MIN_LATENCY = "min-latency"
    MIN_ENERGY = "min-energy"
    MIN_COST = "min-cost"
    SLO = "slo"


def objective_columns(
    intent: Intent, *, msrr_rps: np.ndarray, energy_per_request_j: np.ndarray, p95_unloaded_s: np.ndarray | None,
    gpu_fraction: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the intent's figure and the tie-breaker; smaller is better. Unknown figures (NaN) rank last, never as 0.

    The intent's own figure is compared to SIGNIFICANT_FIGURES: closer than
    that, two measurements are the same within their noise, and the second
    figure decides. Vectorised, since a plan ranks every measured
    configuration of thousands of routes.
    """
    energy = _known(energy_per_request_j)
    with np.errstate(divide="ignore"):
        gpu_seconds = np.where(msrr_rps > 0, gpu_fraction / np.where(msrr_rps > 0, msrr_rps, 1.0), np.inf)
    if intent is Intent.MIN_ENERGY:
        return _significant(energy), gpu_seconds
    if intent is Intent.MIN_LATENCY:
        if p95_unloaded_s is None:
            raise ValueError("p95_unloaded_s: min-latency needs each candidate's P95")
        return _significant(_known(p95_unloaded_s)), gpu_seconds
    if intent is Intent.MIN_COST:
        return _significant(gpu_seconds), energy
    raise ValueError("intent: 'slo' keeps the configured configuration; it has no objective to rank by")


def objective_key(
    intent: Intent, *, msrr_rps: float, energy_per_request_j: float | None, p95_unloaded_s: float | None,
    gpu_fraction: float = 1.0,
) -> tuple[float, float]:
    """One row's (figure, tie-breaker) as objective_columns ranks it; None is unknown."""

    def one(value: float | None) -> np.ndarray:
        return np.array([math.nan if value is None else value], dtype=float)

    primary, secondary = objective_columns(intent, msrr_rps=one(msrr_rps), energy_per_request_j=one(energy_per_request_j),
                                           p95_unloaded_s=one(p95_unloaded_s), gpu_fraction=gpu_fraction)
    return float(primary[0]), float(secondary[0])


# A measured figure's resolution: 3 significant figures is a millisecond in a second, 0.1% of a rate.
SIGNIFICANT_FIGURES = 3


def _significant(values: np.ndarray) -> np.ndarray:
    """Each value rounded to SIGNIFICANT_FIGURES (infinities and zero as they are)."""
    rounded = np.isfinite(values) & (values != 0)
    magnitude = np.abs(np.where(rounded, values, 1.0))
    scale = 10.0 ** (np.floor(np.log10(magnitude)) - (SIGNIFICANT_FIGURES - 1))
    return np.where(rounded, np.round(values / scale) * scale, values)


def _known(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values), values, np.inf)
