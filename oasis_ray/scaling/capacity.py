"""What each route can serve per shape, read from the hardware cost table for the scaling core.

A route runs one engine configuration (batch size, variant) and serves one or
more query types, so its capacity on a shape is the HCT's MSRR for that
configuration and shape, per query type. The route MSRR given here is the
slowest type's, which keeps the SLO whatever the mix; each option also carries
every type's MSRR, so the policy can size for the mix the ingress reports
(oasis_ray.scaling.mix). Rows measured at default clocks are preferred, since
live replicas run unlocked; otherwise the highest clock profiled.

Any route or shape the table cannot vouch for (no row, only failed trials, or
an SLO never met) is refused here, at startup, with the route named.
"""

from __future__ import annotations

import math

import pandas as pd

from oasis_ray.config import OasisAppConfig, RouteConfig, RouteResources
from oasis_ray.query_types import QueryType
from oasis_ray.routing import QueryRouter
from oasis_ray.scaling.settings import RouteLimits, ScalingConfig
from oasis_ray.scaling.shapes import CPU, FULL_GPU, RouteCapacity, ShapeOption
from oasis_ray.profiling.sweep_spec import Variant


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


def _rows_for_shape(rows: pd.DataFrame, shape: str, resources: RouteResources) -> pd.Series:
    if shape == CPU:
        return rows["hardware_kind"] == "cpu"
    if shape == FULL_GPU:
        matches = rows["hardware_kind"] == "gpu"
        if resources.accelerator_type:
            matches &= rows["accelerator_type"] == resources.accelerator_type
        return matches
    return (rows["hardware_kind"] == "mig") & (rows["mig_profile"] == shape)


def _preferred_clock(rows: pd.DataFrame) -> pd.DataFrame:
    default = rows[rows["clock_mhz"].isna()]
    if not default.empty:
        return default
    return rows[rows["clock_mhz"] == rows["clock_mhz"].max()]


def _shape_option(
    route: RouteConfig, shape: str, resources: RouteResources, types: list[QueryType], rows: pd.DataFrame
) -> ShapeOption | str:
    """The shape's option, or the reason there is none."""
    variant = route_variant(route)
    where = f"route '{route.key}' shape '{shape}'"
    if variant is None:
        return f"{where}: prefix caching and chunked prefill together were never profiled"
    candidates = rows[
        (rows["model_id"] == route.model)
        & (rows["status"] == "ok")
        & _rows_for_shape(rows, shape, resources)
        & (rows["max_num_seqs"] == route.engine.max_num_seqs)
        & (rows["variant"] == variant.value)
    ]
    msrr_by_type: dict[QueryType, float] = {}
    power: list[float] = []
    clock: int | None = None
    for query_type in types:
        of_type = candidates[candidates["query_type"] == query_type.value]
        if of_type.empty:
            return (f"{where}: the HCT has no successful row for {query_type.value} at max_num_seqs="
                    f"{route.engine.max_num_seqs}, variant={variant.value}")
        best = _preferred_clock(of_type).sort_values("msrr_req_s").iloc[-1]
        msrr_by_type[query_type] = float(best["msrr_req_s"])
        if bool(best["power_available"]):
            power.append(float(best["mean_power_w"]))
        clock = None if pd.isna(best["clock_mhz"]) else int(best["clock_mhz"])
    slowest = min(msrr_by_type, key=msrr_by_type.__getitem__)
    if msrr_by_type[slowest] <= 0:
        return f"{where}: the HCT never meets the SLO for {slowest.value} (MSRR 0)"
    return ShapeOption(
        shape=shape,
        msrr_rps=msrr_by_type[slowest],
        msrr_by_type=msrr_by_type,
        power_w=max(power) if power and all(math.isfinite(p) for p in power) else None,
        clock_mhz=clock,
        max_num_seqs=route.engine.max_num_seqs,
        variant=variant.value,
    )


def route_capacities(config: OasisAppConfig, rows: pd.DataFrame) -> tuple[RouteCapacity, ...]:
    router = QueryRouter(config)
    capacities, problems = [], []
    for route in config.routes:
        types = [qt for qt in QueryType if router.route_name(route.model, qt) == route.name]
        if not types:
            continue
        options = []
        for shape, resources in route.shapes().items():
            option = _shape_option(route, shape, resources, types, rows)
            if isinstance(option, str):
                problems.append(option)
            else:
                options.append(option)
        if len(options) == len(route.shapes()):
            capacities.append(RouteCapacity(route=route.key, options=tuple(options)))
    if problems:
        raise CapacityError("the hardware cost table cannot size these routes:\n  " + "\n  ".join(problems))
    return tuple(capacities)


def scaling_config_for(config: OasisAppConfig) -> ScalingConfig:
    """The core's config, with each route's bounds taken from the route (min_replicas 0 allows scale to zero).

    Limits set explicitly under autoscaling.scaling.route_limits win.
    """
    if config.autoscaling is None:
        raise ValueError("autoscaling: not configured")
    scaling = config.autoscaling.scaling
    derived = {
        route.key: RouteLimits(
            min_replicas=max(route.min_replicas, 1),
            max_replicas=route.max_replicas,
            allow_scale_to_zero=route.min_replicas == 0,
        )
        for route in config.routes
    }
    return scaling.model_copy(update={"route_limits": {**derived, **scaling.route_limits}})
