"""Trace-driven what-if simulation: a day of real traffic against a policy, in seconds, on any laptop.

Requests are grouped the way the policy serves them (for OASIS one group
per model and route of its RouteGrouping, by default the live config's
short-output and long-output, with a capacity for the route's mix: see
oasis_ray.planning.sim_routes; per fixed group otherwise). Every `tick_s` the OASIS policies call
`oasis_ray.scaling.core.decide`, the function the live Serve autoscaler calls, with the
rates the ingress would report (arrivals over `rate_window_s`, per route and,
for the route's MSRR at its mix, per route and query type) and the
replicas that have finished starting; a replica it asks for serves
`startup_s` later. Everything else is arrays over time bins and requests
(oasis_ray.planning.sim_queue), driven by the HCT's curves (oasis_ray.costs.curves):

- a group's capacity per bin is its ready replicas' saturated throughput;
  beyond it requests queue (fluid FIFO);
- a request's latency is a draw from the measured P50/P95/P99 of its
  replica's shape at the group's load (rate averaged over `load_window_s`,
  or saturated while a queue stands), scaled to its own token lengths, plus
  its wait in that queue; its share of capacity is scaled alike;
- power per bin is each ready replica's power at that load plus the idle
  power of replicas still starting.

The run is charged from the first arrival to the last completion, so a
policy that falls behind pays for the time it takes to catch up. Energy is
what the replicas draw (a MIG slice its share of idle, see oasis_ray.costs.curves);
devices a policy does not hold are charged nothing, so the idle power of
the unused rest of a GPU that holds a slice is charged to no one (a
cluster that packs other work there pays it anyway; a dedicated one does not). Not modelled:
attention's superlinear cost on long prompts (lengths scale cost linearly),
prefix-cache hits, failures, and inventory limits (use the planner).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict

from oasis_ray.planning.inventory import DevicePool, Prices
from oasis_ray.costs.curves import GRID_POINTS, UTILISATION_GRID, ServiceCurve
from oasis_ray.costs.table import CostTable, route_capacity_at_mix, route_name
from oasis_ray.scaling.shapes import RouteCapacity
from oasis_ray.scaling.state import ScalingState
from oasis_ray.scaling.traffic import TrafficReport, decide_on_report
from oasis_ray.planning.sim_policies import FixedPolicy, OasisPolicy, SimulationSettings
from oasis_ray.planning.sim_queue import (
    latency_from_quantiles,
    latency_percentiles,
    queue_waits,
    trailing_mean,
    window_p95_attainment,
)
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.query_types import QueryType

ProgressCallback = Callable[[float], None]
SECONDS_PER_HOUR = 3600.0
WH_PER_KWH = 1000.0
_PROGRESS_STEPS = 100


class SimResult(BaseModel):
    """One policy on one workload. Latencies are end to end; inf where a request was never served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str
    workload: str
    requests: int
    unserved: int
    unsupported_routes: list[str]
    charged_s: float
    energy_wh: float
    mean_power_w: float
    gpu_hours: float
    peak_gpu_equivalents: float
    device_cost_usd: float
    energy_cost_usd: float
    co2_g: float
    p50_s: float
    p95_s: float
    p99_s: float
    slo_p95_e2e_s: float
    slo_attainment: float
    within_slo_share: float
    throughput_rps: float
    replica_changes: int

    @property
    def cost_usd(self) -> float:
        return self.device_cost_usd + self.energy_cost_usd


@dataclass(frozen=True, eq=False)
class SimRun:
    """The result plus what plots and comparisons need: power and devices per bin, latency per request."""

    result: SimResult
    bin_s: float
    power_w: np.ndarray
    gpu_equivalents: np.ndarray
    latency_s: np.ndarray


@dataclass(frozen=True, eq=False)
class _Shape:
    name: str
    gpu_fraction: float
    curves: dict[int, ServiceCurve]


@dataclass(eq=False)
class _Replica:
    start_s: float
    ready_s: float
    stop_s: float = math.inf


@dataclass(eq=False)
class _Group:
    """Requests served together, the shapes they may land on (whole unit first) and replicas per shape."""

    label: str
    requests: np.ndarray
    shapes: list[_Shape]
    replicas: list[list[_Replica]] = field(default_factory=list)
    capacity: RouteCapacity | None = field(default=None, repr=False)


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
    else:
        groups, unsupported = _route_groups(workload, policy, table, pool, settings)
        changes = _autoscale(groups, workload, policy, settings, progress)
    rng = np.random.default_rng(settings.seed)
    quantile = rng.random(len(workload))
    landing = rng.random(len(workload))
    latency = np.full(len(workload), np.inf)
    power = np.zeros(n_bins)
    equivalents = np.zeros(n_bins)
    for group in groups:
        alive, ready = _counts(group, n_bins, settings.bin_s)
        served, group_power = _serve(group, alive, ready, workload, settings, quantile, landing)
        latency[group.requests] = served
        power += group_power
        equivalents += np.asarray([shape.gpu_fraction for shape in group.shapes]) @ alive
    if progress is not None:
        progress(1.0)
    return _run(workload, policy.name, unsupported, changes, latency, power, equivalents, pool, prices, settings)


def _fixed_groups(
    workload: Workload, policy: FixedPolicy, table: CostTable, pool: DevicePool
) -> tuple[list[_Group], list[str]]:
    groups, unsupported = [], []
    for fixed in policy.groups:
        if fixed.model_id not in workload.models:
            continue
        model_index = workload.models.index(fixed.model_id)
        curves: dict[int, ServiceCurve] = {}
        for query_type in fixed.query_types:
            choices = table.shape_choices(fixed.model_id, query_type, pool.hardware(allow_mig=False),
                                          policy.config_choice)
            if choices:
                curves[QUERY_TYPES.index(query_type)] = choices[0].curve
            else:
                unsupported.append(route_name(fixed.model_id, query_type))
        served = (workload.model_index == model_index) & np.isin(workload.type_code, list(curves))
        if not served.any():
            continue
        label = f"{fixed.model_id}[{','.join(qt.value for qt in fixed.query_types)}]"
        shape = _Shape(name=pool.whole_shape, gpu_fraction=1.0, curves=curves)
        always_on = [_Replica(start_s=0.0, ready_s=0.0) for _ in range(fixed.replicas)]
        groups.append(_Group(label=label, requests=np.flatnonzero(served), shapes=[shape], replicas=[always_on]))
    return groups, unsupported


def _route_groups(
    workload: Workload, policy: OasisPolicy, table: CostTable, pool: DevicePool, settings: SimulationSettings
) -> tuple[list[_Group], list[str]]:
    """One group per (model, route of the policy's grouping) with traffic; types no whole unit serves are refused."""
    groups, unsupported = [], []
    for model_index, model_id in enumerate(workload.models):
        of_model = workload.model_index == model_index
        counts = np.bincount(workload.type_code[of_model], minlength=len(QUERY_TYPES))
        for route, types in policy.routes.route_types().items():
            present = [qt for qt in types if counts[QUERY_TYPES.index(qt)] > 0]
            served = [qt for qt in present
                      if table.shape_choices(model_id, qt, pool.hardware(allow_mig=False), policy.config_choice)]
            shares = {qt: float(counts[QUERY_TYPES.index(qt)]) for qt in served}
            choices = table.shared_shape_choices(model_id, shares, pool.hardware(), policy.config_choice) if served else []
            if not choices or next(iter(choices[0].values())).option.shape != pool.whole_shape:
                unsupported += [route_name(model_id, qt) for qt in present]
                continue
            unsupported += [route_name(model_id, qt) for qt in present if qt not in served]
            codes = [QUERY_TYPES.index(qt) for qt in served]
            requests = np.flatnonzero(of_model & np.isin(workload.type_code, codes))
            shapes = [
                _Shape(name=next(iter(by_type.values())).option.shape,
                       gpu_fraction=next(iter(by_type.values())).option.gpu_fraction,
                       curves={QUERY_TYPES.index(qt): choice.curve for qt, choice in by_type.items()})
                for by_type in choices
            ]
            cost = {shape.name: _mean_costs(shape, workload, requests, settings.scale_by_length) for shape in shapes}
            capacity = route_capacity_at_mix(f"{model_id}/{route}", choices, shares, cost,
                                             at_mix=policy.routes.capacity == "mix")
            groups.append(_Group(label=capacity.route, requests=requests, shapes=shapes,
                                 replicas=[[] for _ in shapes], capacity=capacity))
    return groups, unsupported


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
    """Drive `decide` tick by tick and record every replica's life; returns starts plus stops after t = 0.

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
    capacities = tuple(group.capacity for group in routed if group.capacity is not None)
    names = [capacity.route for capacity in capacities]
    ticks = np.arange(0.0, workload.duration_s + settings.drain_s + settings.tick_s, settings.tick_s)
    window = (ticks, settings.rate_window_s, settings.startup_s)
    type_rates = [_observed_type_rates(group, workload, *window) for group in routed]
    state = ScalingState()
    active: list[list[list[_Replica]]] = [[[] for _ in group.shapes] for group in routed]
    changes = 0
    report_every = max(1, len(ticks) // _PROGRESS_STEPS)
    for k, now_s in enumerate(ticks):
        current = {
            name: {shape.name: sum(1 for r in running[i] if r.ready_s <= now_s) for i, shape in enumerate(group.shapes)}
            for name, group, running in zip(names, routed, active)
        }
        report = TrafficReport(type_rates={
            name: {qt: float(series[k]) for qt, series in by_type.items()} for name, by_type in zip(names, type_rates)
        })
        decision, state = decide_on_report(report, capacities, now_s=float(now_s), current_replicas=current,
                                           config=policy.scaling, state=state, at_mix=policy.routes.capacity == "mix")
        assert decision is not None, "every simulated route reports, zeros included"
        startup_s = 0.0 if k == 0 else settings.startup_s
        for name, group, running in zip(names, routed, active):
            targets = decision.routes[name].replicas
            for i, shape in enumerate(group.shapes):
                moved = _reconcile(running[i], group.replicas[i], targets.get(shape.name, 0), float(now_s), startup_s)
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


def _reconcile(active: list[_Replica], history: list[_Replica], target: int, now_s: float, startup_s: float) -> int:
    """Start or stop replicas of one shape to meet the target; stopping prefers ones still starting.

    `active` holds the running ones and is updated in place; `history` keeps every replica ever started.
    """
    if target > len(active):
        started = [_Replica(start_s=now_s, ready_s=now_s + startup_s) for _ in range(target - len(active))]
        active.extend(started)
        history.extend(started)
        return len(started)
    surplus = len(active) - target
    active.sort(key=lambda replica: replica.ready_s)
    for _ in range(surplus):
        active.pop().stop_s = now_s
    return surplus


def _counts(group: _Group, n_bins: int, bin_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(alive, ready) replicas per shape per bin; a replica is ready from the first whole bin after its start-up."""
    alive = np.zeros((len(group.shapes), n_bins + 1))
    ready = np.zeros((len(group.shapes), n_bins + 1))
    for i, replicas in enumerate(group.replicas):
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
    """(latency per request of the group, power per bin): queue, load, landing shape, latency draw, power."""
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
    power = np.zeros(n_bins)
    for i, shape in enumerate(group.shapes):
        busy = sum(type_share[j] * np.interp(utilisation, UTILISATION_GRID, shape.curves[code].power_w)
                   for j, code in enumerate(codes))
        idle = sum(type_share[j] * shape.curves[code].power_w[0] for j, code in enumerate(codes))
        power += ready[i] * busy + (alive[i] - ready[i]) * idle
    return latency, power


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
    ready, the shape with the most replicas starting."""
    at = weights[:, bins]
    total = at.sum(axis=0)
    drawn = (np.cumsum(at, axis=0) < (draw * total)[None, :]).sum(axis=0)
    waiting_for = np.argmax(alive[:, bins], axis=0)
    return np.where(total > 0, np.minimum(drawn, len(weights) - 1), waiting_for)


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
    power: np.ndarray,
    equivalents: np.ndarray,
    pool: DevicePool,
    prices: Prices,
    settings: SimulationSettings,
) -> SimRun:
    finite = np.isfinite(latency)
    departures = workload.arrival_s[finite] + latency[finite]
    last_s = max(workload.duration_s, float(departures.max()) if finite.any() else 0.0)
    window = max(1, min(len(power), math.ceil(last_s / settings.bin_s)))
    charged_s = window * settings.bin_s
    energy_wh = float(power[:window].sum()) * settings.bin_s / SECONDS_PER_HOUR
    gpu_hours = float(equivalents[:window].sum()) * settings.bin_s / SECONDS_PER_HOUR
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
        mean_power_w=energy_wh * SECONDS_PER_HOUR / charged_s,
        gpu_hours=gpu_hours,
        peak_gpu_equivalents=float(equivalents[:window].max()),
        device_cost_usd=gpu_hours * pool.usd_per_hour,
        energy_cost_usd=energy_kwh * prices.usd_per_kwh,
        co2_g=energy_kwh * prices.gco2_per_kwh,
        p50_s=p50,
        p95_s=p95,
        p99_s=p99,
        slo_p95_e2e_s=settings.slo_p95_e2e_s,
        slo_attainment=window_p95_attainment(
            workload.arrival_s, latency, settings.slo_window_s, settings.slo_p95_e2e_s
        ),
        within_slo_share=float(np.mean(latency <= settings.slo_p95_e2e_s)),
        throughput_rps=float(finite.sum()) / served_span if served_span > 0 else math.nan,
        replica_changes=changes,
    )
    return SimRun(result=result, bin_s=settings.bin_s, power_w=power[:window], gpu_equivalents=equivalents[:window],
                  latency_s=latency)
