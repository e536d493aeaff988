"""Trace-driven what-if simulation: a day of real traffic against a policy, in seconds, on any laptop.

Requests are grouped the way the policy serves them (for OASIS one group
per model and route of its RouteGrouping, by default the live config's
short-output and long-output, with a capacity for the route's mix: see
oasis_ray.planning.sim_routes; per fixed group otherwise). Every `tick_s` the OASIS policies call
`oasis_ray.scaling.core.decide`, the function the live Serve autoscaler calls, with the
rates the ingress would report (arrivals over `rate_window_s`, per route and,
for the route's MSRR at its mix, per route and query type) and the
replicas that have finished starting (or, by default, the same decisions
from oasis_ray.planning.sim_decisions, much faster); a replica it asks for
serves `startup_s` later. Everything else is arrays over time bins and requests
(oasis_ray.planning.sim_queue), driven by the HCT's curves (oasis_ray.costs.curves):

- a group's capacity per bin is its ready replicas' saturated throughput;
  beyond it requests queue (fluid FIFO);
- a request's latency is a draw from the measured P50/P95/P99 of its
  replica's shape at the group's load (rate averaged over `load_window_s`,
  or saturated while a queue stands), scaled to its own token lengths, plus
  its wait in that queue; its share of capacity is scaled alike;
- power per bin: see below.

The run is charged from the first arrival to the last completion, so a
policy that falls behind pays for the time it takes to catch up.

Energy is the fleet's: per time bin, the physical GPUs the policy holds
(whole-GPU replicas, plus the GPUs its MIG slices are packed onto, first-fit
decreasing at valid placements, oasis_ray.planning.mig_placement, within the
policy's packing scope: one model's slices, or every model's), each charged
its board's idle power, plus each replica's draw over that idle at its load
(oasis_ray.costs.curves; a replica still starting draws its engine's idle
increment). So the unused rest of a partly sliced GPU is charged to the
fleet, not to any route, and a GPU the policy does not hold is off the bill.
Slices are re-packed whenever the set of slices changes, which a real fleet
does only by migrating them, so the count is the best a packer could hold.
Not modelled: attention's superlinear cost on long prompts (lengths scale
cost linearly), prefix-cache hits, failures, and inventory limits (use the
planner).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from oasis_ray.costs.curves import GRID_POINTS, UTILISATION_GRID, ServiceCurve
from oasis_ray.costs.config_choice import ConfigChoice, DefaultClock
from oasis_ray.costs.table import (
    CostTable,
    Hardware,
    ServedLengths,
    ShapeChoices,
    route_capacity_at_mix,
    route_name,
)
from oasis_ray.planning.inventory import DevicePool, Prices
from oasis_ray.planning.mig_placement import gpus_for_slices
from oasis_ray.planning.sim_decisions import RouteReplicas, decide_route_over_trace
from oasis_ray.planning.sim_policies import FixedGroup, FixedPolicy, OasisPolicy, SimulationSettings
from oasis_ray.planning.sim_queue import (
    latency_from_quantiles,
    latency_percentiles,
    queue_waits,
    trailing_mean,
    window_p95_attainment,
)
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.shapes import RouteCapacity
from oasis_ray.scaling.state import ScalingState
from oasis_ray.scaling.traffic import TrafficReport, decide_on_report

ProgressCallback = Callable[[float], None]
SECONDS_PER_HOUR = 3600.0
WH_PER_KWH = 1000.0
_PROGRESS_STEPS = 100
OFF_THE_BILL = "GPUs the policy does not hold are off the bill (no idle power, no price)."


class SimResult(BaseModel):
    """One policy on one workload. Latencies are end to end; inf where a request was never served.

    Energy, GPU-hours and device cost are the fleet's: every GPU held, idle
    time and unused slices included (see the module docstring).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str
    workload: str
    requests: int
    unserved: int
    unsupported_routes: list[str]
    charged_s: float
    energy_wh: float
    idle_energy_wh: float
    mean_power_w: float
    gpu_hours: float
    peak_gpus: int
    device_cost_usd: float
    energy_cost_usd: float
    co2_g: float
    p50_s: float
    p95_s: float
    p99_s: float
    slo_p95_e2e_s: float
    slo_window_s: float
    slo_attainment_requests: float
    slo_attainment_windows: float
    throughput_rps: float
    replica_changes: int

    @property
    def cost_usd(self) -> float:
        return self.device_cost_usd + self.energy_cost_usd


@dataclass(frozen=True, eq=False)
class SimRun:
    """The result plus what plots and comparisons need: power, GPUs held and replicas per shape per bin,
    latency per request."""

    result: SimResult
    bin_s: float
    power_w: np.ndarray
    gpus_held: np.ndarray
    replicas_by_shape: dict[str, np.ndarray]
    latency_s: np.ndarray


@dataclass(frozen=True, eq=False)
class _Shape:
    name: str
    whole: bool
    curves: dict[int, ServiceCurve]


@dataclass(eq=False)
class _Group:
    """Requests served together, the shapes they may land on (whole unit first) and their replicas."""

    label: str
    model_id: str
    requests: np.ndarray
    shapes: list[_Shape]
    replicas: RouteReplicas
    capacity: RouteCapacity | None = None


def simulate(
    workload: Workload,
    policy: FixedPolicy | OasisPolicy,
    table: CostTable,
    pool: DevicePool,
    prices: Prices,
    settings: SimulationSettings,
    progress: ProgressCallback | None = None,
) -> SimRun:
    """Run one policy over the workload; `table` must be prepared for `settings.slo_p95_e2e_s`."""
    if table.slo_p95_e2e_s != settings.slo_p95_e2e_s:
        raise ValueError(
            f"slo_p95_e2e_s: the table was prepared for {table.slo_p95_e2e_s:g} s, the simulation asks for "
            f"{settings.slo_p95_e2e_s:g} s"
        )
    n_bins = math.ceil((workload.duration_s + settings.drain_s) / settings.bin_s) + 1
    if isinstance(policy, FixedPolicy):
        groups, unsupported = _fixed_groups(workload, policy, table, pool)
        changes = 0
        scope = "model"
    else:
        groups, unsupported = _route_groups(workload, policy, table, pool, settings)
        changes = _autoscale(groups, workload, policy, settings, progress)
        scope = policy.packing
    rng = np.random.default_rng(settings.seed)
    quantile = rng.random(len(workload))
    landing = rng.random(len(workload))
    latency = np.full(len(workload), np.inf)
    increments = np.zeros(n_bins)
    whole_gpus = np.zeros(n_bins)
    slices: dict[str, dict[str, np.ndarray]] = {}
    by_shape: dict[str, np.ndarray] = {}
    for group in groups:
        alive, ready = _counts(group, n_bins, settings.bin_s)
        served, group_increments = _serve(group, alive, ready, workload, settings, quantile, landing)
        latency[group.requests] = served
        increments += group_increments
        for shape, count in zip(group.shapes, alive):
            by_shape[shape.name] = by_shape.get(shape.name, 0) + count
            if shape.whole:
                whole_gpus += count
            else:
                by_profile = slices.setdefault(group.model_id if scope == "model" else "", {})
                by_profile[shape.name] = by_profile.get(shape.name, 0) + count
    gpus_held = whole_gpus + sum((_packed_gpus(pool, by_profile, n_bins) for by_profile in slices.values()),
                                 np.zeros(n_bins))
    idle_w = (math.nan if pool.idle_power_w is None else pool.idle_power_w) if settings.board_idle_charged else 0.0
    if progress is not None:
        progress(1.0)
    return _run(workload, policy.name, unsupported, changes, latency, increments, gpus_held * idle_w, gpus_held,
                by_shape, pool, prices, settings)


def _packed_gpus(pool: DevicePool, by_profile: dict[str, np.ndarray], n_bins: int) -> np.ndarray:
    """GPUs per bin that first-fit decreasing needs for the slices alive in it; packed once per distinct set."""
    if pool.mig_geometry is None:
        raise ValueError(f"mig_geometry: pool '{pool.name}' holds MIG slices but has no MIG geometry")
    profiles = sorted(by_profile)
    counts = np.stack([by_profile[name] for name in profiles]).astype(np.int64)
    changes = np.flatnonzero(np.any(np.diff(counts, axis=1) != 0, axis=0)) + 1
    starts = np.concatenate(([0], changes))
    gpus = np.empty(len(starts))
    packed: dict[tuple[int, ...], int] = {}
    for index, start in enumerate(starts):
        key = tuple(int(n) for n in counts[:, start])
        if key not in packed:
            packed[key] = gpus_for_slices(pool.mig_geometry, dict(zip(profiles, key)))
        gpus[index] = packed[key]
    return np.repeat(gpus, np.diff(np.concatenate((starts, [n_bins]))))


def _fixed_groups(
    workload: Workload, policy: FixedPolicy, table: CostTable, pool: DevicePool
) -> tuple[list[_Group], list[str]]:
    groups, unsupported = [], []
    for fixed in policy.groups:
        if fixed.model_id not in workload.models:
            continue
        model_index = workload.models.index(fixed.model_id)
        shape_name = fixed.shape or pool.whole_shape
        hardware = pool.hardware(allow_mig=fixed.shape is not None)
        curves: dict[int, ServiceCurve] = {}
        for query_type in fixed.query_types:
            curve = _fixed_curve(table, fixed, query_type, shape_name, hardware)
            if curve is not None:
                curves[QUERY_TYPES.index(query_type)] = curve
            else:
                unsupported.append(route_name(fixed.model_id, query_type))
        served = (workload.model_index == model_index) & np.isin(workload.type_code, list(curves))
        if not served.any():
            continue
        label = f"{fixed.model_id}[{','.join(qt.value for qt in fixed.query_types)}]@{shape_name}"
        replicas = RouteReplicas(shapes=(shape_name,))
        replicas.reconcile({shape_name: fixed.replicas}, now_s=0.0, startup_s=0.0)
        shape = _Shape(name=shape_name, whole=fixed.shape is None, curves=curves)
        groups.append(_Group(label=label, model_id=fixed.model_id, requests=np.flatnonzero(served), shapes=[shape],
                             replicas=replicas))
    return groups, unsupported


def _fixed_curve(
    table: CostTable, fixed: FixedGroup, query_type: QueryType, shape: str, hardware: Hardware
) -> ServiceCurve | None:
    """The group's configuration on the shape, or the sweep's baseline row there, whatever its MSRR."""
    if fixed.configuration is not None:
        chosen = [c for c in table.shape_choices(fixed.model_id, query_type, hardware, fixed.configuration)
                  if c.option.shape == shape]
        if chosen:
            return chosen[0].curve
    return table.baseline_curve(fixed.model_id, query_type, shape, hardware)


def _route_groups(
    workload: Workload, policy: OasisPolicy, table: CostTable, pool: DevicePool, settings: SimulationSettings
) -> tuple[list[_Group], list[str]]:
    """One group per (model, route of the policy's grouping) with traffic; types no whole unit serves are refused."""
    groups, unsupported = [], []
    selection = policy.config_choice
    by_model = _requests_by_model(workload)
    for model_index, model_id in enumerate(workload.models):
        of_model = by_model[model_index]
        model_types = workload.type_code[of_model]
        counts = np.bincount(model_types, minlength=len(QUERY_TYPES))
        for route, types in policy.routes.route_types().items():
            present = [qt for qt in types if counts[QUERY_TYPES.index(qt)] > 0]
            shares, choices = route_shape_choices(model_id, present, counts, table, pool, selection,
                                                  ranking_lengths(policy, workload, of_model))
            if not choices:
                unsupported += [route_name(model_id, qt) for qt in present]
                continue
            served = list(shares)
            unsupported += [route_name(model_id, qt) for qt in present if qt not in served]
            codes = [QUERY_TYPES.index(qt) for qt in served]
            requests = of_model[np.isin(model_types, codes)]
            shapes = []
            for by_type in choices:
                option = next(iter(by_type.values())).option
                shapes.append(_Shape(name=option.shape, whole=option.is_whole_unit,
                                     curves={QUERY_TYPES.index(qt): choice.curve for qt, choice in by_type.items()}))
            cost = {shape.name: _mean_costs(shape, workload, requests, settings.scale_by_length) for shape in shapes}
            capacity = route_capacity_at_mix(f"{model_id}/{route}", choices, shares, cost,
                                             at_mix=policy.routes.capacity == "mix")
            groups.append(_Group(label=capacity.route, model_id=model_id, requests=requests, shapes=shapes,
                                 replicas=RouteReplicas(shapes=tuple(shape.name for shape in shapes)),
                                 capacity=capacity))
    return groups, unsupported


def route_shape_choices(
    model_id: str, present: list[QueryType], counts: np.ndarray, table: CostTable, pool: DevicePool,
    selection: ConfigChoice | DefaultClock, lengths: ServedLengths | None = None,
) -> tuple[dict[QueryType, float], list[ShapeChoices]]:
    """A route's shares of the present types a whole device serves under the SLO, and the shapes it can run on
    with one configuration for them all (whole device first), ranked at `lengths` (None: the profiled ones);
    no shapes where the whole device cannot run it."""
    served = [qt for qt in present if table.shape_choices(model_id, qt, pool.hardware(allow_mig=False), selection)]
    shares = {qt: float(counts[QUERY_TYPES.index(qt)]) for qt in served}
    choices = (table.shared_shape_choices(model_id, shares, pool.hardware(), selection, lengths=lengths)
               if served else [])
    if not choices or next(iter(choices[0].values())).option.shape != pool.whole_shape:
        return shares, []
    return shares, choices


def ranking_lengths(policy: OasisPolicy, workload: Workload, of_model: np.ndarray) -> ServedLengths | None:
    """The lengths a policy ranks one model's configurations at: its requests' own where it ranks at served
    lengths, else None (the profiled ones)."""
    return workload.served_lengths(of_model) if policy.ranked_at == "served" else None


def _requests_by_model(workload: Workload) -> list[np.ndarray]:
    """Each model's request indices in arrival order, from one sort rather than one scan per model."""
    order = np.argsort(workload.model_index, kind="stable")
    bounds = np.searchsorted(workload.model_index[order], np.arange(len(workload.models) + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(len(workload.models))]


def _mean_costs(
    shape: _Shape, workload: Workload, requests: np.ndarray, scale_by_length: bool
) -> dict[QueryType, float]:
    """Each type's mean request cost on the shape relative to its profiled request (1 when lengths do not count)."""
    if not scale_by_length:
        return {QUERY_TYPES[code]: 1.0 for code in shape.curves}
    costs = {}
    for code, curve in shape.curves.items():
        of_type = requests[workload.type_code[requests] == code]
        costs[QUERY_TYPES[code]] = float(curve.length_factor(workload.input_tokens[of_type],
                                                             workload.output_tokens[of_type]).mean())
    return costs


def _autoscale(
    groups: list[_Group],
    workload: Workload,
    policy: OasisPolicy,
    settings: SimulationSettings,
    progress: ProgressCallback | None,
) -> int:
    """Decide every tick, start and stop each route's replicas; returns starts plus stops after t = 0.

    The first tick provisions, with replicas ready at once, for the busiest
    rate window before a scale-up it orders could be ready (the first
    `rate_window_s + startup_s`), as a deployment planned for the trace's
    start would be: no policy is charged a cold start the static baseline
    does not pay, and a trace that opens on a ramp (the Azure conversation
    trace goes from 1 to 5 req/s in its first minute) does not fail windows
    that only a start-up transient fails.
    """
    routed = [group for group in groups if group.capacity is not None]
    if not routed:
        return 0
    ticks = np.arange(0.0, workload.duration_s + settings.drain_s + settings.tick_s, settings.tick_s)
    window = (ticks, settings.rate_window_s, settings.startup_s)
    type_rates = [_observed_type_rates(group, workload, *window) for group in routed]
    at_mix = policy.routes.capacity == "mix"
    if settings.decisions == "exact":
        return _autoscale_exact(routed, type_rates, ticks, policy, settings, progress)
    changes = 0
    for done, (group, rates) in enumerate(zip(routed, type_rates)):
        assert group.capacity is not None
        changes += decide_route_over_trace(group.capacity, rates, ticks, policy.scaling, at_mix=at_mix,
                                           startup_s=settings.startup_s, replicas=group.replicas)
        if progress is not None:
            progress(done / len(routed))
    return changes


def _autoscale_exact(
    routed: list[_Group],
    type_rates: list[dict[QueryType, np.ndarray]],
    ticks: np.ndarray,
    policy: OasisPolicy,
    settings: SimulationSettings,
    progress: ProgressCallback | None,
) -> int:
    """The live core (decide_on_report) called every tick with the report the ingress would send."""
    capacities = tuple(group.capacity for group in routed if group.capacity is not None)
    names = [capacity.route for capacity in capacities]
    state = ScalingState()
    changes = 0
    report_every = max(1, len(ticks) // _PROGRESS_STEPS)
    for k, now_s in enumerate(ticks):
        current = {name: group.replicas.ready(float(now_s)) for name, group in zip(names, routed)}
        report = TrafficReport(type_rates={
            name: {qt: float(series[k]) for qt, series in by_type.items()} for name, by_type in zip(names, type_rates)
        })
        decision, state = decide_on_report(report, capacities, now_s=float(now_s), current_replicas=current,
                                           config=policy.scaling, state=state,
                                           at_mix=policy.routes.capacity == "mix")
        assert decision is not None, "every simulated route reports, zeros included"
        startup_s = 0.0 if k == 0 else settings.startup_s
        for name, group in zip(names, routed):
            moved = group.replicas.reconcile(decision.routes[name].replicas, float(now_s), startup_s)
            changes += moved if k else 0
        if progress is not None and k % report_every == 0:
            progress(k / len(ticks))
    return changes


def _observed_rates(
    arrivals: list[np.ndarray], ticks: np.ndarray, window_s: float, startup_s: float
) -> np.ndarray:
    """(tick, series) rates of sorted arrival series as the ingress reports them; the first tick looks ahead
    instead (see `_autoscale`)."""
    rates = np.empty((len(ticks), len(arrivals)))
    span = np.minimum(window_s, np.maximum(ticks, 1e-3))
    for column, series in enumerate(arrivals):
        upto = np.searchsorted(series, ticks, side="right")
        before = np.searchsorted(series, ticks - window_s, side="right")
        rates[:, column] = (upto - before) / span
        ahead = (ticks >= window_s) & (ticks <= window_s + startup_s)
        first_window = np.searchsorted(series, window_s, side="left") / window_s
        rates[0, column] = max(first_window, float(rates[ahead, column].max(initial=0.0)))
    return rates


def _observed_type_rates(
    group: _Group, workload: Workload, ticks: np.ndarray, window_s: float, startup_s: float
) -> dict[QueryType, np.ndarray]:
    """Each of the group's types' rate per tick, as the ingress reports it per route and type.

    The first tick looks ahead (see `_autoscale`) at the route's total, which
    is then split by each type's own busiest early window, so the route is
    sized for its busiest window and its mix weighs every type it will see.
    """
    arrivals = workload.arrival_s[group.requests]
    types = workload.type_code[group.requests]
    codes = sorted(group.shapes[0].curves)
    rates = _observed_rates([arrivals[types == code] for code in codes], ticks, window_s, startup_s)
    first_total = _observed_rates([arrivals], ticks, window_s, startup_s)[0, 0]
    if rates[0].sum() > 0:
        rates[0] *= first_total / rates[0].sum()
    return {QUERY_TYPES[code]: rates[:, column] for column, code in enumerate(codes)}


def _counts(group: _Group, n_bins: int, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(alive, ready) replicas per shape per bin; a replica is ready from the first whole bin after its start-up."""
    alive = np.zeros((len(group.shapes), n_bins + 1))
    ready = np.zeros((len(group.shapes), n_bins + 1))
    for i, replicas in enumerate(group.replicas.history):
        for replica in replicas:
            start = min(n_bins, math.floor(replica.start_s / bin_s))
            stop = n_bins if replica.stop_s == math.inf else min(n_bins, math.floor(replica.stop_s / bin_s))
            ready_at = min(stop, math.ceil(replica.ready_s / bin_s))
            alive[i, start] += 1
            alive[i, stop] -= 1
            ready[i, ready_at] += 1
            ready[i, stop] -= 1
    return np.cumsum(alive, axis=1)[:, :n_bins], np.cumsum(ready, axis=1)[:, :n_bins]


def _serve(
    group: _Group,
    alive: np.ndarray,
    ready: np.ndarray,
    workload: Workload,
    settings: SimulationSettings,
    quantile: np.ndarray,
    landing: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(latency per request of the group, draw over the boards' idle per bin): queue, load, landing, latency, power."""
    ids = group.requests
    arrivals = workload.arrival_s[ids]
    types = workload.type_code[ids]
    inputs, outputs = _lengths(group, workload, settings.scale_by_length)
    n_bins = alive.shape[1]
    bins = np.minimum((arrivals / settings.bin_s).astype(np.int64), n_bins - 1)
    codes = sorted(group.shapes[0].curves)
    whole_rps = {code: group.shapes[0].curves[code].max_rps for code in codes}
    mix = np.bincount(types, minlength=len(QUERY_TYPES))[codes] / len(types)
    speeds = np.asarray([
        sum(share * shape.curves[code].max_rps / whole_rps[code] for share, code in zip(mix, codes))
        for shape in group.shapes
    ])
    whole_curves = [group.shapes[0].curves[code] for code in codes]
    work = _per_curve(whole_curves, np.searchsorted(codes, types),
                      lambda curve, at: curve.length_factor(inputs[at], outputs[at]) / curve.max_rps)
    serving = speeds @ ready
    window_bins = max(1, round(settings.load_window_s / settings.bin_s))
    load_by_type = np.stack([
        trailing_mean(np.bincount(bins, weights=np.where(types == code, work, 0.0), minlength=n_bins), window_bins)
        for code in codes
    ]) / settings.bin_s
    load = load_by_type.sum(axis=0)
    waits, waiting = queue_waits(arrivals, bins, load * settings.bin_s, serving * settings.bin_s, settings.bin_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        utilisation = np.where(serving > 0, np.minimum(1.0, load / serving), (load > 0).astype(float))
    utilisation = np.where(waiting > 0, 1.0, utilisation)
    shape_of = _landing_shapes(speeds[:, None] * ready, alive, bins, landing[ids])
    latency = _service_latency(group, codes, types, shape_of, utilisation[bins], quantile[ids], inputs, outputs)
    latency += waits
    type_share = np.divide(load_by_type, load, out=np.tile(mix[:, None], (1, n_bins)), where=load > 0)
    increments = np.zeros(n_bins)
    for i, shape in enumerate(group.shapes):
        if not alive[i].any():
            continue
        busy = sum(type_share[j] * np.interp(utilisation, UTILISATION_GRID, shape.curves[code].increment_w)
                   for j, code in enumerate(codes))
        starting = sum(type_share[j] * shape.curves[code].engine_idle_increment_w for j, code in enumerate(codes))
        increments += ready[i] * busy + (alive[i] - ready[i]) * starting
    return latency, increments


def _lengths(group: _Group, workload: Workload, scale_by_length: bool) -> tuple[np.ndarray, np.ndarray]:
    """The group's requests' token lengths, or each type's profiled lengths when lengths are not to count."""
    ids = group.requests
    if scale_by_length:
        return workload.input_tokens[ids], workload.output_tokens[ids]
    types = workload.type_code[ids]
    curves = group.shapes[0].curves
    inputs = np.asarray([curves[code].input_tokens if code in curves else 1 for code in range(len(QUERY_TYPES))])
    outputs = np.asarray([curves[code].output_tokens if code in curves else 1 for code in range(len(QUERY_TYPES))])
    return inputs[types], outputs[types]


def _landing_shapes(weights: np.ndarray, alive: np.ndarray, bins: np.ndarray, draw: np.ndarray) -> np.ndarray:
    """Each request's shape, drawn in proportion to ready capacity (the ingress's balancer); while none is
    ready, the shape with the most replicas starting.

    Only shapes that ever run and requests in bins where several shapes are ready need a draw; most have
    one, so the work follows the requests and the shapes used, not every bin of every shape."""
    used = np.flatnonzero(alive.any(axis=1))
    weights, alive = weights[used], alive[used]
    at = weights[:, bins]
    total = at.sum(axis=0)
    shape_of = np.where(total > 0, np.argmax(at, axis=0), np.argmax(alive[:, bins], axis=0))
    mixed = np.flatnonzero((at > 0).sum(axis=0) > 1)
    if mixed.size:
        drawn = (np.cumsum(at[:, mixed], axis=0) < (draw[mixed] * total[mixed])[None, :]).sum(axis=0)
        shape_of[mixed] = np.minimum(drawn, len(weights) - 1)
    return used[shape_of]


def _per_curve(
    curves: list[ServiceCurve], which: np.ndarray, value: Callable[[ServiceCurve, np.ndarray], np.ndarray]
) -> np.ndarray:
    """`value(curve, positions)` for the requests that use each curve, gathered into one array."""
    out = np.empty(len(which))
    for index, curve in enumerate(curves):
        at = np.flatnonzero(which == index)
        if at.size:
            out[at] = value(curve, at)
    return out


def _service_latency(
    group: _Group, codes: list[int], types: np.ndarray, shape_of: np.ndarray, utilisation: np.ndarray,
    quantile: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
) -> np.ndarray:
    """One gather over all (type, shape) curves stacked on the common utilisation grid, scaled by length."""
    curves = [shape.curves[code] for shape in group.shapes for code in codes]
    p50 = np.stack([curve.p50_s for curve in curves])
    p95 = np.stack([curve.p95_s for curve in curves])
    p99 = np.stack([curve.p99_s for curve in curves])
    which = shape_of * len(codes) + np.searchsorted(codes, types)
    position = utilisation * (GRID_POINTS - 1)
    low = np.minimum(position.astype(np.int64), GRID_POINTS - 2)
    frac = position - low

    def at(values: np.ndarray) -> np.ndarray:
        return values[which, low] * (1 - frac) + values[which, low + 1] * frac

    length = _per_curve(curves, which, lambda curve, positions: curve.length_factor(inputs[positions],
                                                                                     outputs[positions]))
    return latency_from_quantiles(quantile, at(p50), at(p95), at(p99)) * length


def _run(
    workload: Workload,
    policy_name: str,
    unsupported: list[str],
    changes: int,
    latency: np.ndarray,
    increments: np.ndarray,
    idle_power: np.ndarray,
    gpus_held: np.ndarray,
    by_shape: dict[str, np.ndarray],
    pool: DevicePool,
    prices: Prices,
    settings: SimulationSettings,
) -> SimRun:
    finite = np.isfinite(latency)
    departures = workload.arrival_s[finite] + latency[finite]
    last_s = max(workload.duration_s, float(departures.max()) if finite.any() else 0.0)
    window = max(1, min(len(increments), math.ceil(last_s / settings.bin_s)))
    charged_s = window * settings.bin_s
    power = (increments + idle_power)[:window]
    energy_wh = float(power.sum()) * settings.bin_s / SECONDS_PER_HOUR
    idle_energy_wh = float(idle_power[:window].sum()) * settings.bin_s / SECONDS_PER_HOUR
    gpu_hours = float(gpus_held[:window].sum()) * settings.bin_s / SECONDS_PER_HOUR
    energy_kwh = energy_wh / WH_PER_KWH
    p50, p95, p99 = latency_percentiles(latency)
    served_span = last_s - float(workload.arrival_s[0])
    result = SimResult(
        policy=policy_name,
        workload=workload.name,
        requests=len(workload),
        unserved=int((~finite).sum()),
        unsupported_routes=sorted(unsupported),
        charged_s=charged_s,
        energy_wh=energy_wh,
        idle_energy_wh=idle_energy_wh,
        mean_power_w=energy_wh * SECONDS_PER_HOUR / charged_s,
        gpu_hours=gpu_hours,
        peak_gpus=int(gpus_held[:window].max()),
        device_cost_usd=gpu_hours * pool.usd_per_hour,
        energy_cost_usd=energy_kwh * prices.usd_per_kwh,
        co2_g=energy_kwh * prices.gco2_per_kwh,
        p50_s=p50,
        p95_s=p95,
        p99_s=p99,
        slo_p95_e2e_s=settings.slo_p95_e2e_s,
        slo_window_s=settings.slo_window_s,
        slo_attainment_requests=float(np.mean(latency <= settings.slo_p95_e2e_s)),
        slo_attainment_windows=window_p95_attainment(
            workload.arrival_s, latency, settings.slo_window_s, settings.slo_p95_e2e_s
        ),
        throughput_rps=float(finite.sum()) / served_span if served_span > 0 else math.nan,
        replica_changes=changes,
    )
    return SimRun(result=result, bin_s=settings.bin_s, power_w=power, gpus_held=gpus_held[:window],
                  replicas_by_shape={shape: count[:window] for shape, count in by_shape.items()}, latency_s=latency)
