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
(oasis_ray.intent_routing); it never starts or moves a replica.
"""

from __future__ import annotations

from enum import Enum

INTENT_HEADER = "x-oasis-intent"


class Intent(str, Enum):
    MIN_LATENCY = "min-latency"
    MIN_ENERGY = "min-energy"
    MIN_COST = "min-cost"
    SLO = "slo"
