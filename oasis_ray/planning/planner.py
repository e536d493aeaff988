"""Capacity planning: traffic, SLO, devices and prices in; what to deploy and what it costs out.

Per route (one model and query type) and per device pool, the configuration
of every shape is chosen one knob at a time (the paper) or jointly, for the
request's intent (fewest joules per request by default; see
oasis_ray.costs.config_choice), or is the sweep's baseline for intent `slo`; then OASIS Algorithm 1 (`scaling_allocation.algorithm1`,
the function the live autoscaler runs) picks the shape and replica count for
rate x (1 + headroom). Where several pools could serve a route, the cheaper
per hour (devices plus energy) is preferred.

Routes are then given devices, largest first: whole GPUs before MIG slices,
bigger slices before smaller, so slices are packed first-fit decreasing onto
the GPUs left over, in the placements the hardware allows
(oasis_ray.planning.mig_placement). A route that fits on no pool is planned on its
preferred pool as far as devices last, and the rest is reported as a
shortfall naming the route, shape, pool and how many replicas are missing.

Power, cost and CO2 charge the GPUs the plan holds, as a fleet pays for
them: every GPU given whole or partitioned for slices pays its price and its
board's idle power, and each replica adds its draw over that idle at its
planned rate (oasis_ray.costs.curves). So the unused rest of a partly sliced
GPU is charged to the fleet (the pool's line), not to any route, and a free
GPU is off the bill. Unknown power (no meter, no idle figure) makes the
energy figures NaN, never 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oasis_ray.costs.config_choice import ConfigChoice, Selection
from oasis_ray.costs.table import CostTable, ShapeChoice, route_name
from oasis_ray.intents import Intent
from oasis_ray.planning.inventory import DevicePool, Inventory
from oasis_ray.mig_geometry import mig_profile
from oasis_ray.planning.mig_placement import GpuPacker
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.allocation import algorithm1, gpus_required
from oasis_ray.scaling.settings import ScalingConfig

WH_PER_KWH = 1000.0


class RouteDemand(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model_id: str = Field(min_length=1)
    query_type: QueryType
    rate_rps: float = Field(ge=0, description="Mean requests per second to plan for.")


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    slo_p95_e2e_s: float = Field(gt=0)
    demands: tuple[RouteDemand, ...] = Field(min_length=1)
    inventory: Inventory
    config_choice: ConfigChoice = "joint"
    intent: Intent = Field(
        Intent.MIN_ENERGY,
        description="What configurations are chosen for; 'slo' plans the sweep's baseline configuration, as deployed "
                    "without a choice.",
    )
    headroom: float = Field(
        ScalingConfig().headroom, ge=0, le=10, description="Plan for rate x (1 + headroom), as the autoscaler does."
    )
    allow_mig: bool = True

    @property
    def selection(self) -> Selection:
        return "baseline" if self.intent is Intent.SLO else self.config_choice

    @model_validator(mode="after")
    def _one_demand_per_route(self) -> PlanRequest:
        keys = [route_name(d.model_id, d.query_type) for d in self.demands]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"demands: route(s) {duplicates} appear more than once")
        return self


class RoutePlan(BaseModel):
    """One route's deployment; `replicas` may fall short of Algorithm 1's answer, see Plan.shortfalls."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str
    model_id: str
    query_type: QueryType
    rate_rps: float
    need_rps: float
    pool: str | None
    shape: str | None
    mig: bool
    replicas: int
    clock_mhz: int | None
    max_num_seqs: int | None
    variant: str | None
    trial_id: str | None = Field(description="The HCT row the configuration and figures come from.")
    msrr_rps: float | None = Field(description="Per replica, under the plan's SLO.")
    gpus_required: float | None = Field(description="Algorithm 1's need / MSRR(whole unit).")
    gpu_equivalents: float
    power_w: float = Field(description="The replicas' draw over their boards' idle at the planned rate; the boards' "
                                       "idle is charged per GPU held, on the pool's line.")
    p95_s: float | None = Field(description="Predicted P95 latency of a profiled-length request at the planned rate.")
    reason: str


class MigSlice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    gpu_index: int
    profile: str
    start_slot: int
    route: str


class PoolUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str
    devices: int
    whole_devices: int = Field(description="Devices given whole to one replica.")
    mig_devices: int = Field(description="GPUs partitioned for the MIG slices placed on them.")
    free_devices: int
    gpu_equivalents: float = Field(description="Devices' worth of replicas: whole ones plus slices' shares.")
    idle_power_w: float = Field(description="Board idle power of every device held (whole or partitioned).")


class Shortfall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str
    pool: str | None
    shape: str | None
    missing_replicas: int
    message: str


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    config_choice: ConfigChoice
    intent: Intent
    slo_p95_e2e_s: float
    headroom: float
    routes: list[RoutePlan]
    mig_slices: list[MigSlice]
    pools: list[PoolUsage]
    shortfalls: list[Shortfall]
    power_w: float = Field(description="Routes' draw plus the idle of every device held; free devices are off "
                                       "the bill.")
    energy_kwh_per_hour: float
    device_usd_per_hour: float
    energy_usd_per_hour: float
    co2_g_per_hour: float

    @property
    def feasible(self) -> bool:
        return not self.shortfalls

    @property
    def usd_per_hour(self) -> float:
        return self.device_usd_per_hour + self.energy_usd_per_hour


@dataclass(frozen=True)
class _Candidate:
    """Algorithm 1's answer for one route on one pool, with its hourly price for ranking pools."""

    pool: DevicePool
    choice: ShapeChoice
    replicas: int
    reason: str
    gpus_required: float
    power_w: float
    usd_per_hour: float

    @property
    def is_slice(self) -> bool:
        return not self.choice.option.is_whole_unit

    def size(self) -> tuple[int, int]:
        """Allocation order: whole replicas first, most first; then slices by memory slices, biggest first."""
        geometry = self.pool.mig_geometry
        if not self.is_slice or geometry is None:
            return (1, self.replicas)
        return (0, mig_profile(geometry, self.choice.option.shape).memory_slices)


def plan(request: PlanRequest, table: CostTable) -> Plan:
    """`table` must be built for the request's SLO (CostTable(hct, request.slo_p95_e2e_s))."""
    if table.slo_p95_e2e_s != request.slo_p95_e2e_s:
        raise ValueError(
            f"slo_p95_e2e_s: the table was prepared for {table.slo_p95_e2e_s:g} s, the request asks for "
            f"{request.slo_p95_e2e_s:g} s"
        )
    inventory = request.inventory
    packers = {pool.name: GpuPacker(count=pool.count, geometry=pool.mig_geometry) for pool in inventory.pools}
    planned: dict[str, RoutePlan] = {}
    shortfalls: list[Shortfall] = []
    ranked: list[tuple[RouteDemand, list[_Candidate]]] = []
    for demand in request.demands:
        name = route_name(demand.model_id, demand.query_type)
        if demand.rate_rps == 0:
            planned[name] = _unplaced(demand, request, "no traffic: nothing to deploy")
            continue
        candidates = _candidates(demand, request, table)
        if not candidates:
            message = (
                f"{name}: no configuration in the cost table meets P95 <= {request.slo_p95_e2e_s:g} s "
                f"on any pool ({', '.join(pool.name for pool in inventory.pools)})"
            )
            shortfalls.append(Shortfall(route=name, pool=None, shape=None, missing_replicas=0, message=message))
            planned[name] = _unplaced(demand, request, message)
            continue
        ranked.append((demand, candidates))
    ranked.sort(key=lambda item: item[1][0].size(), reverse=True)
    for demand, candidates in ranked:
        route_plan, shortfall = _allocate(demand, request, candidates, packers)
        planned[route_plan.route] = route_plan
        if shortfall is not None:
            shortfalls.append(shortfall)
    routes = [planned[route_name(d.model_id, d.query_type)] for d in request.demands]
    return _summarise(request, routes, packers, shortfalls)


def _candidates(demand: RouteDemand, request: PlanRequest, table: CostTable) -> list[_Candidate]:
    need = demand.rate_rps * (1 + request.headroom)
    prices = request.inventory.prices
    candidates = []
    for pool in request.inventory.pools:
        found = table.route_capacity(
            demand.model_id, demand.query_type, pool.hardware(allow_mig=request.allow_mig), request.selection,
            Intent.MIN_ENERGY if request.intent is Intent.SLO else request.intent,
        )
        if found is None:
            continue
        capacity, choices = found
        option, replicas, reason = algorithm1(need, capacity)
        choice = choices[option.shape]
        # Ranks pools: a slice is priced at its share of the GPU it would share, idle power alike.
        power = replicas * (choice.curve.increment_at(demand.rate_rps / replicas)
                            + option.gpu_fraction * choice.curve.board_idle_w)
        energy_usd = power / WH_PER_KWH * prices.usd_per_kwh if math.isfinite(power) else 0.0
        usd = replicas * option.gpus * pool.usd_per_hour + energy_usd
        candidates.append(
            _Candidate(pool, choice, replicas, reason, gpus_required(need, capacity), power, usd)
        )
    return sorted(candidates, key=lambda c: (c.usd_per_hour, c.pool.name))


def _allocate(
    demand: RouteDemand, request: PlanRequest, candidates: list[_Candidate], packers: dict[str, GpuPacker]
) -> tuple[RoutePlan, Shortfall | None]:
    name = route_name(demand.model_id, demand.query_type)
    for candidate in candidates:
        packer = packers[candidate.pool.name]
        if candidate.is_slice:
            if packer.place_slice(candidate.choice.option.shape, owner=name) is not None:
                return _route_plan(demand, request, candidate, candidate.replicas), None
        elif packer.free_whole >= candidate.replicas:
            for _ in range(candidate.replicas):
                packer.take_whole(owner=name)
            return _route_plan(demand, request, candidate, candidate.replicas), None
    preferred = candidates[0]
    packer = packers[preferred.pool.name]
    granted = 0
    if not preferred.is_slice:
        while granted < preferred.replicas and packer.take_whole(owner=name) is not None:
            granted += 1
    missing = preferred.replicas - granted
    shape = preferred.choice.option.shape
    message = (
        f"{name}: needs {preferred.replicas} x {shape} on {preferred.pool.name} "
        f"({demand.rate_rps:.4g} req/s x (1 + {request.headroom:g}) at MSRR {preferred.choice.option.msrr_rps:.4g} "
        f"req/s each); {missing} missing, no pool has room"
    )
    shortfall = Shortfall(route=name, pool=preferred.pool.name, shape=shape, missing_replicas=missing, message=message)
    return _route_plan(demand, request, preferred, granted), shortfall


def _route_plan(demand: RouteDemand, request: PlanRequest, candidate: _Candidate, replicas: int) -> RoutePlan:
    option = candidate.choice.option
    curve = candidate.choice.curve
    power = replicas * curve.increment_at(demand.rate_rps / replicas) if replicas else 0.0
    p95 = curve.p95_at(demand.rate_rps / replicas) if replicas else None
    return RoutePlan(
        route=route_name(demand.model_id, demand.query_type),
        model_id=demand.model_id,
        query_type=demand.query_type,
        rate_rps=demand.rate_rps,
        need_rps=demand.rate_rps * (1 + request.headroom),
        pool=candidate.pool.name,
        shape=option.shape,
        mig=candidate.is_slice,
        replicas=replicas,
        clock_mhz=option.clock_mhz,
        max_num_seqs=option.max_num_seqs,
        variant=option.variant,
        trial_id=candidate.choice.trial_id,
        msrr_rps=option.msrr_rps,
        gpus_required=candidate.gpus_required,
        gpu_equivalents=replicas * option.gpus,
        power_w=power,
        p95_s=p95,
        reason=candidate.reason,
    )


def _unplaced(demand: RouteDemand, request: PlanRequest, reason: str) -> RoutePlan:
    return RoutePlan(
        route=route_name(demand.model_id, demand.query_type), model_id=demand.model_id,
        query_type=demand.query_type, rate_rps=demand.rate_rps, need_rps=demand.rate_rps * (1 + request.headroom),
        pool=None, shape=None, mig=False, replicas=0, clock_mhz=None, max_num_seqs=None, variant=None,
        trial_id=None, msrr_rps=None, gpus_required=None, gpu_equivalents=0.0, power_w=0.0, p95_s=None,
        reason=reason,
    )


def _summarise(
    request: PlanRequest, routes: list[RoutePlan], packers: dict[str, GpuPacker], shortfalls: list[Shortfall]
) -> Plan:
    inventory = request.inventory
    pools = []
    device_usd = 0.0
    idle_w = 0.0
    for pool in inventory.pools:
        packer = packers[pool.name]
        held = len(packer.whole) + packer.mig_gpus
        equivalents = sum(route.gpu_equivalents for route in routes if route.pool == pool.name)
        pool_idle_w = held * (math.nan if pool.idle_power_w is None else pool.idle_power_w) if held else 0.0
        device_usd += held * pool.usd_per_hour
        idle_w += pool_idle_w
        pools.append(PoolUsage(
            pool=pool.name, devices=pool.count, whole_devices=len(packer.whole), mig_devices=packer.mig_gpus,
            free_devices=packer.free_whole, gpu_equivalents=equivalents, idle_power_w=pool_idle_w,
        ))
    slices = [
        MigSlice(pool=pool.name, gpu_index=p.gpu_index, profile=p.profile, start_slot=p.start_slot, route=p.owner)
        for pool in inventory.pools
        for p in packers[pool.name].placements
    ]
    power = math.fsum(route.power_w for route in routes) + idle_w
    energy_kwh = power / WH_PER_KWH
    return Plan(
        config_choice=request.config_choice if request.intent is not Intent.SLO else "baseline",
        intent=request.intent,
        slo_p95_e2e_s=request.slo_p95_e2e_s,
        headroom=request.headroom,
        routes=routes,
        mig_slices=slices,
        pools=pools,
        shortfalls=shortfalls,
        power_w=power,
        energy_kwh_per_hour=energy_kwh,
        device_usd_per_hour=device_usd,
        energy_usd_per_hour=energy_kwh * inventory.prices.usd_per_kwh,
        co2_g_per_hour=energy_kwh * inventory.prices.gco2_per_kwh,
    )
