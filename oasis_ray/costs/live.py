"""The live app's routes sized from the cost table: what each configured route can serve on each of its shapes.

A route runs one engine configuration (batch size, variant) and serves one or
more query types, so its capacity on a shape is the table's MSRR for that
configuration and shape, per query type (CostTable with a FixedConfiguration),
at the route's tensor-parallel degree. The route MSRR given here is the
slowest type's, safe whatever the mix; each option also carries every type's
MSRR, so the policy sizes for the mix the ingress reports
(oasis_ray.scaling.traffic).

The GPU setting the capacity is read at is the one the replicas run at. Only
with clock_control `apply` do they set one: the route's `gpu_setting` where
it gives one (the table must have rows there), else the table's levels
(every setting it measured the configuration at on a full GPU), among which
the scaling core moves the route's clock; the replicas start at the setting
FixedConfiguration picks (default clocks where profiled, else the highest).
Under `advisory` and `off` the replicas run at the GPU's own setting, so the
capacity is read there, whatever the route asks for.

Any route or shape the table cannot vouch for (no row, only failed trials, or
an SLO never met) is refused here, at startup, with the route named.
"""

from __future__ import annotations

from oasis_ray.config import OasisAppConfig, RouteConfig
from oasis_ray.costs.config_choice import FixedConfiguration
from oasis_ray.costs.table import CostTable, Hardware, route_capacity_at_mix
from oasis_ray.profiling.sweep_spec import Variant
from oasis_ray.query_types import QueryType
from oasis_ray.routing import QueryRouter
from oasis_ray.scaling.shapes import FULL_GPU, RouteCapacity, SettingLevel


class CapacityError(ValueError):
    """The cost table cannot size a configured route; the message names each route and shape."""


def route_variant(route: RouteConfig) -> Variant | None:
    """The profiled variant a route's engine settings amount to; None for a mix the sweep never profiles."""
    engine = route.engine
    if engine.enable_prefix_caching and engine.enable_chunked_prefill:
        return None
    if engine.enable_prefix_caching:
        return Variant.PREFIX_CACHING
    if engine.enable_chunked_prefill:
        return Variant.CHUNKED_PREFILL
    return Variant.STANDARD


def route_hardware(route: RouteConfig) -> Hardware:
    """The route's configured shapes as the cost table selects rows: its whole unit and its MIG profiles."""
    return Hardware(
        whole_shape=route.whole_shape,
        accelerator_type=route.resources.accelerator_type,
        mig_shapes=tuple(shape.profile for shape in route.mig_shapes),
        tensor_parallel_size=route.resources.tensor_parallel_size,
    )


def _with_levels(capacity: RouteCapacity, levels: tuple[SettingLevel, ...]) -> RouteCapacity:
    """The full-GPU option with the table's levels; one level is no choice, and is left out."""
    if len(levels) < 2:
        return capacity
    options = tuple(option.model_copy(update={"levels": levels}) if option.shape == FULL_GPU else option
                    for option in capacity.options)
    return capacity.model_copy(update={"options": options})


def live_route_capacities(config: OasisAppConfig, table: CostTable) -> tuple[RouteCapacity, ...]:
    """Every route that serves some query type, with an option for each of its shapes; refuses what the table lacks."""
    router = QueryRouter(config)
    capacities, problems = [], []
    for route in config.routes:
        types = [qt for qt in QueryType if router.route_name(route.model, qt) == route.name]
        if not types:
            continue
        variant = route_variant(route)
        if variant is None:
            problems.append(f"route '{route.key}': prefix caching and chunked prefill together were never profiled")
            continue
        applies = config.clock_control == "apply"
        selection = FixedConfiguration(max_num_seqs=route.engine.max_num_seqs, variant=variant.value,
                                       setting=route.gpu_setting if applies else None)
        hardware = route_hardware(route)
        shares = dict.fromkeys(types, 1.0)
        choices = table.shared_shape_choices(route.model, shares, hardware, selection)
        offered = {next(iter(by_type.values())).option.shape for by_type in choices}
        missing = [shape for shape in hardware.shapes if shape not in offered]
        for shape in missing:
            reasons = {table.why_not(route.model, qt, shape, hardware, selection) for qt in types}
            problems += [f"route '{route.key}' shape '{shape}': {reason}" for reason in sorted(reasons)]
        if not missing:
            capacity = route_capacity_at_mix(route.key, choices, shares, at_mix=False)
            if applies and route.gpu_setting is None:
                capacity = _with_levels(capacity, table.setting_levels(route.model, shares, hardware, selection))
            capacities.append(capacity)
    if problems:
        raise CapacityError("the hardware cost table cannot size these routes:\n  " + "\n  ".join(problems))
    return tuple(capacities)
