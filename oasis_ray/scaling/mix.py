"""A route's capacity at the mix of query types it is serving now.

A route's replica serves several query types with one configuration, and
spends its capacity request by request: a request of type i takes 1 / MSRR_i
of a replica-second. Algorithm 1 summed over the route's types is therefore
GPUs_required = sum_i rate_i / MSRR_i = rate_total / MSRR_mix, with
MSRR_mix = rate_total / sum_i (rate_i / MSRR_i), the harmonic mean weighted
by rate. Handing the core that MSRR lets it size the route's total rate as
it sizes any other, instead of charging every request at the slowest type's
cost. With no traffic there is no mix to weigh, so the slowest type's MSRR
stands in: it is safe for whatever mix arrives first.

The live policy calls this with the rates the ingress reports per type, the
simulator with the rates it observes per tick (or a trace's shares: only the
proportions matter), so the formula exists once.
"""

from __future__ import annotations

from collections.abc import Mapping

from oasis_ray.query_types import QueryType
from oasis_ray.scaling.shapes import RouteCapacity, ShapeOption


def mix_msrr(msrr_by_type: Mapping[QueryType, float], rates: Mapping[QueryType, float]) -> float:
    """Requests per second a replica serves at the given rates (types missing from `rates` count 0).

    Rates of types the route does not serve are ignored, so a caller can pass
    every type's rate without filtering.
    """
    if not msrr_by_type:
        raise ValueError("msrr_by_type: no query type to weigh")
    negative = sorted(qt.value for qt, rate in rates.items() if rate < 0)
    if negative:
        raise ValueError(f"rates: negative for {negative}")
    served = {qt: rates.get(qt, 0.0) for qt in msrr_by_type}
    total = sum(served.values())
    if total <= 0:
        return min(msrr_by_type.values())
    return total / sum(rate / msrr_by_type[qt] for qt, rate in served.items())


def mix_option(option: ShapeOption, rates: Mapping[QueryType, float]) -> ShapeOption:
    """The option, and each of its GPU-setting levels, at the mix; what knows only its route MSRR is left as it is."""
    levels = tuple(
        level.model_copy(update={"msrr_rps": mix_msrr(level.msrr_by_type, rates)}) if level.msrr_by_type else level
        for level in option.levels
    )
    if not option.msrr_by_type:
        return option.model_copy(update={"levels": levels})
    return option.model_copy(update={"msrr_rps": mix_msrr(option.msrr_by_type, rates), "levels": levels})


def mix_capacity(capacity: RouteCapacity, rates: Mapping[QueryType, float]) -> RouteCapacity:
    """Every shape of the route at the mix the rates describe."""
    return capacity.model_copy(update={"options": tuple(mix_option(option, rates) for option in capacity.options)})
