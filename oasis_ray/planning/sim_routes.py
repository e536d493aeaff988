"""Which query types share a route (and so its replicas) in a simulation, and what such a route can serve.

The live app groups query types into routes (serve_config.yaml: short-output
= SISO + LISO, long-output = SILO + LILO), so the simulator does the same by
default: a route of its own per query type (the paper's layout) holds a
replica for a type with a trickle of traffic all day, capacity the types of
one route would share. "per-type" keeps the paper's layout for comparison;
"by-model" puts every type of a model on one route, so a type with a trickle
of traffic (the Azure traces' long outputs are 0.4% and 3.2% of requests)
rides on the replicas the others keep busy instead of holding a GPU of its own.

A route's replica runs one configuration for all its types
(CostTable.shared_shape_choices) and serves their mix. Its MSRR for
Algorithm 1 is, per shape (oasis_ray.costs.table.route_capacity_at_mix):

- "mix" (default): harmonic by rate, rate / sum(rate_i / MSRR_i), computed
  by oasis_ray.scaling.mix as the live policy does. The replica's capacity
  is spent request by request, so at the route's mix it serves exactly this
  many per second. The route starts at the workload's shares; the simulator
  then re-weighs every tick by the rates per type it observes, as the live
  policy does with the ingress's per-type reports (a TrafficReport).
- "slowest": the slowest type's MSRR, what the live policy uses until the
  ingress reports a route's types: safe for any mix, wasteful for a mix of
  mostly fast requests.

When the simulation charges each request by its own token lengths, each
type's MSRR is first divided by its requests' mean cost relative to the
profiled request on that shape: the MSRR an operator would have measured at
the traffic's own lengths. Without it, an autoscaler that counts requests
sizes for profiled requests while the trace's cost more, and is overloaded
whatever its policy (the live one has the same blind spot when the table was
profiled at other lengths than the traffic's).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oasis_ray.query_types import QueryType

RouteCapacityRule = Literal["mix", "slowest"]


class RouteGrouping(BaseModel):
    """Route name per query type; types with one name share that route's replicas."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    routes: dict[QueryType, str]
    capacity: RouteCapacityRule = "mix"

    @model_validator(mode="after")
    def _every_type_routed(self) -> RouteGrouping:
        missing = sorted(qt.value for qt in QueryType if qt not in self.routes)
        if missing:
            raise ValueError(f"routes: query type(s) {missing} have no route")
        return self

    def route_types(self) -> dict[str, tuple[QueryType, ...]]:
        """Each route's types in QueryType order, routes in order of their first type."""
        grouped: dict[str, list[QueryType]] = {}
        for query_type in QueryType:
            grouped.setdefault(self.routes[query_type], []).append(query_type)
        return {route: tuple(types) for route, types in grouped.items()}


BY_OUTPUT = RouteGrouping(
    name="by-output",
    routes={QueryType.SISO: "short-output", QueryType.LISO: "short-output",
            QueryType.SILO: "long-output", QueryType.LILO: "long-output"},
)
PER_TYPE = RouteGrouping(name="per-type", routes={query_type: query_type.value for query_type in QueryType})
# One route per model: every type shares the model's replicas and one configuration chosen for its mix.
BY_MODEL = RouteGrouping(name="by-model", routes=dict.fromkeys(QueryType, "all"))
GROUPINGS = {grouping.name: grouping for grouping in (BY_OUTPUT, PER_TYPE, BY_MODEL)}
