"""What the ingress saw, as the autoscaler reads it: request rates per route and query type.

The ingress is the one place that sees every request with its route and
query type. It reports its rates through Serve's custom autoscaling metrics
(record_autoscaling_stats), one number per (route, query type), and the Serve
policy sums them over ingress replicas; the simulator builds the same report
from a trace. A route's rate is the sum of its types' (each type of a model
has exactly one route), and its types' rates are the mix that sets its MSRR
(oasis_ray.scaling.mix). Encoding and decoding live here, once, so the metric
names cannot drift between the writer and the reader, and `tick_input` turns
a report into the decision core's input the same way for both callers.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, NonNegativeFloat

from oasis_ray.query_types import QueryType
from oasis_ray.scaling.core import Decision, TickInput, decide
from oasis_ray.scaling.mix import mix_capacity
from oasis_ray.scaling.settings import ScalingConfig
from oasis_ray.scaling.shapes import RouteCapacity
from oasis_ray.scaling.state import ScalingState

# Custom autoscaling metric names: this prefix plus "<route key>/<query type>".
TYPE_RATE_METRIC_PREFIX = "oasis_type_rps:"


class TrafficReport(BaseModel):
    """Requests per second over the reporter's window, per route key and query type (zeros included)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    type_rates: dict[str, dict[QueryType, NonNegativeFloat]]

    def route_rates(self) -> dict[str, float]:
        """A route's rate is the sum of its types'; a route that reported only zeros is quiet, not unknown."""
        return {route: sum(by_type.values()) for route, by_type in self.type_rates.items()}

    def to_metrics(self) -> dict[str, float]:
        return {
            f"{TYPE_RATE_METRIC_PREFIX}{route}/{query_type.value}": rate
            for route, by_type in self.type_rates.items()
            for query_type, rate in by_type.items()
        }

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Mapping[str, float]]) -> TrafficReport:
        """Decode Serve's aggregated metrics ({name: {replica: value}}), summing over ingress replicas.

        The type is split off the right, since model ids (and so route keys)
        may hold '/'. Other metrics, and names that do not decode, are ignored;
        a metric no replica has reported yet is absent, not zero.
        """
        rates: dict[str, dict[QueryType, float]] = {}
        for name, per_replica in metrics.items():
            if not name.startswith(TYPE_RATE_METRIC_PREFIX) or not per_replica:
                continue
            route, _, type_name = name.removeprefix(TYPE_RATE_METRIC_PREFIX).rpartition("/")
            try:
                query_type = QueryType(type_name)
            except ValueError:
                continue
            if route:
                by_type = rates.setdefault(route, {})
                by_type[query_type] = by_type.get(query_type, 0.0) + sum(per_replica.values())
        return cls(type_rates=rates)


def decide_on_report(
    report: TrafficReport,
    capacities: tuple[RouteCapacity, ...],
    *,
    now_s: float,
    current_replicas: Mapping[str, Mapping[str, int]],
    config: ScalingConfig,
    state: ScalingState,
    at_mix: bool = True,
) -> tuple[Decision | None, ScalingState]:
    """One tick of the core on a report: the decision (None when the report covers no route) and the next state,
    which keeps what it remembers of routes the report did not cover."""
    tick = tick_input(report, capacities, now_s=now_s, current_replicas=current_replicas, config=config,
                      state=state, at_mix=at_mix)
    if tick is None:
        return None, state
    decision, ticked = decide(tick)
    return decision, ScalingState(routes={**state.routes, **ticked.routes})


def tick_input(
    report: TrafficReport,
    capacities: tuple[RouteCapacity, ...],
    *,
    now_s: float,
    current_replicas: Mapping[str, Mapping[str, int]],
    config: ScalingConfig,
    state: ScalingState,
    at_mix: bool = True,
) -> TickInput | None:
    """The core's input for the routes the report covers, each at its reported mix; None if it covers none.

    A route missing from the report is left out rather than read as idle: it
    may be just deployed, with replicas still starting, and the core would
    read "none running, no rate" as a plan of zero. `at_mix` False sizes every
    route at its slowest type's MSRR (what-if comparisons of that rule).
    """
    reported = tuple(
        mix_capacity(capacity, report.type_rates[capacity.route]) if at_mix else capacity
        for capacity in capacities
        if capacity.route in report.type_rates
    )
    if not reported:
        return None
    names = {capacity.route for capacity in reported}
    rates = report.route_rates()
    return TickInput(
        now_s=now_s,
        observed_rps={route: rates[route] for route in names},
        current_replicas={route: dict(shapes) for route, shapes in current_replicas.items() if route in names},
        routes=reported,
        config=config,
        state=state,
    )
