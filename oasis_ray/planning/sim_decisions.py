"""The decision core's answers over a whole trace at once, and the replicas they start and stop, for the simulator.

The live autoscaler calls `oasis_ray.scaling.core.decide` about every 0.1 s
on one tick's traffic. A simulation of a fleet asks the same question for
every route at every tick of days of traffic, and calling the core, with its
typed inputs and records, for each of them costs about 100 us: 200 routes
for a day are minutes. This module gives the same decisions without a
Python call per route and tick:

- everything that does not depend on the plan is computed for all ticks at
  once with numpy: the rate each tick observes, the forecast (by the core's
  own `advance_forecast`, tick by tick, so it is the same number), the idle
  clock, the need (rate x (1 + headroom)), each shape's MSRR at the tick's
  mix (oasis_ray.scaling.mix's formula, summed in the same order), and
  Algorithm 1's answer within the route's bounds;
- the part that does depend on the plan (the core's rules for acting now:
  cooldowns, hysteresis, make before break) runs as plain arithmetic, only
  at the ticks where it can change anything. While a plan stands and no
  move between shapes is finishing, the core's holds (Algorithm 1 agrees
  with the plan, the need sits in the hysteresis band, a cooldown runs, the
  plan already serves the need) leave the plan, the targets and the time of
  the last change as they are, so the next tick that acts is found with the
  same rules over a block of ticks at once, and only it is visited. While a
  move is finishing every tick is visited (the running replicas decide when
  the old shape retires).

Each step follows the core's arithmetic operation for operation, so the
floats, and hence every decision, are the same, not merely close.
`SimulationSettings(decisions="exact")` runs the core itself, and the tests
compare the two on real and synthetic traces replica by replica: a change
to the core that this module does not follow fails them. Advisory mode is
not simulated (it changes nothing by design).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from oasis_ray.query_types import QueryType
from oasis_ray.scaling.forecast import advance_forecast
from oasis_ray.scaling.settings import ReactiveForecast, ScalingConfig
from oasis_ray.scaling.shapes import RouteCapacity

# scaling.allocation's slack under ceil(), so 2.0000000000000004 GPUs is 2.
CEIL_SLACK = 1e-9
_NO_SHAPE = -1
_FIRST_SCAN = 64


@dataclass(eq=False)
class Replica:
    start_s: float
    ready_s: float
    stop_s: float = math.inf


@dataclass(eq=False)
class RouteReplicas:
    """Every replica a route ever started, per shape, and the ones still running; what the simulator serves with."""

    shapes: tuple[str, ...]
    history: list[list[Replica]] = field(default_factory=list)
    active: list[list[Replica]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history = [[] for _ in self.shapes]
        self.active = [[] for _ in self.shapes]

    def ready(self, now_s: float) -> dict[str, int]:
        """Running replicas per shape that finished starting: what the adapter reports as current."""
        return {shape: sum(1 for r in running if r.ready_s <= now_s) for shape, running in zip(self.shapes, self.active)}

    def reconcile(self, targets: Mapping[str, int], now_s: float, startup_s: float) -> int:
        """Start or stop replicas of each shape to meet the targets; returns how many started or stopped.

        Stopping prefers replicas still starting (the newest first).
        """
        moved = 0
        for shape, active, history in zip(self.shapes, self.active, self.history):
            target = targets.get(shape, 0)
            if target > len(active):
                started = [Replica(start_s=now_s, ready_s=now_s + startup_s) for _ in range(target - len(active))]
                active.extend(started)
                history.extend(started)
                moved += len(started)
            elif target < len(active):
                active.sort(key=lambda replica: replica.ready_s)
                for _ in range(len(active) - target):
                    active.pop().stop_s = now_s
                    moved += 1
        return moved


@dataclass(frozen=True)
class _Series:
    """What the core computes from one tick's input, for every tick of one route."""

    need: np.ndarray
    msrr: np.ndarray  # (shapes, ticks): each shape's MSRR at the tick's mix
    wanted_shape: np.ndarray  # Algorithm 1 within bounds; _NO_SHAPE for the zero plan
    wanted_replicas: np.ndarray


def decide_route_over_trace(
    capacity: RouteCapacity,
    type_rates: Mapping[QueryType, np.ndarray],
    ticks: np.ndarray,
    config: ScalingConfig,
    *,
    at_mix: bool,
    startup_s: float,
    replicas: RouteReplicas,
) -> int:
    """Run the core's decisions for one route over every tick and apply them to `replicas`.

    Returns replica starts plus stops after the first tick, as the exact path
    counts them. The first tick starts replicas ready at once (provisioned
    before the trace), later ones `startup_s` after they are asked for.
    """
    if config.advisory:
        raise ValueError("config.advisory: advisory mode changes no replica, so it is not simulated")
    series = _series(capacity, type_rates, ticks, config, at_mix)
    limits = config.limits_for(capacity.route)
    shape_names = [option.shape for option in capacity.options]
    plan_shape, plan_replicas = _NO_SHAPE, 0
    targets: dict[int, int] = {}
    changed_at: float | None = None
    changes = 0
    k = 0
    while k < len(ticks):
        now = float(ticks[k])
        current = replicas.ready(now)
        plan = _judge(k, now, (plan_shape, plan_replicas), series, config, changed_at)
        if plan != (plan_shape, plan_replicas):
            changed_at = now
        plan_shape, plan_replicas = plan
        targets = _make_before_break(plan, targets, current, shape_names)
        moved = replicas.reconcile({shape_names[i]: n for i, n in targets.items()}, now,
                                   0.0 if k == 0 else startup_s)
        changes += moved if k else 0
        pending = any(i != plan_shape for i in targets)
        k = k + 1 if pending else _next_action(series, ticks, k + 1, plan, changed_at, config)
    return changes


def _series(
    capacity: RouteCapacity, type_rates: Mapping[QueryType, np.ndarray], ticks: np.ndarray, config: ScalingConfig,
    at_mix: bool,
) -> _Series:
    limits = config.limits_for(capacity.route)
    observed = np.zeros(len(ticks))
    for rates in type_rates.values():  # the report's order, as TrafficReport.route_rates sums
        observed = observed + rates
    rate = observed
    if not isinstance(config.forecast, ReactiveForecast):
        forecast = np.empty(len(ticks))
        state = None
        for k, now in enumerate(ticks.tolist()):
            state = advance_forecast(config.forecast, state, now, float(observed[k]))
            forecast[k] = state.forecast_rps if state is not None else 0.0
        rate = np.maximum(observed, forecast)
    idle = observed == 0
    if limits.allow_scale_to_zero:
        run_start = np.maximum.accumulate(np.where(idle & ~np.concatenate(([False], idle[:-1])),
                                                   np.arange(len(ticks)), 0))
        idle_to_zero = idle & (ticks - ticks[run_start] >= limits.scale_to_zero_after_s)
    else:
        idle_to_zero = np.zeros(len(ticks), dtype=bool)
    need = np.where(idle_to_zero, 0.0, rate) * (1 + config.headroom)
    msrr = np.stack([_mix_msrr(option.msrr_by_type, option.msrr_rps, type_rates, len(ticks), at_mix)
                     for option in capacity.options])
    wanted_shape, wanted_replicas = _algorithm1(capacity, msrr, need, limits.min_replicas, limits.max_replicas)
    wanted_shape = np.where(idle_to_zero, _NO_SHAPE, wanted_shape)
    wanted_replicas = np.where(idle_to_zero, 0, wanted_replicas)
    return _Series(need=need, msrr=msrr, wanted_shape=wanted_shape, wanted_replicas=wanted_replicas)


def _mix_msrr(
    msrr_by_type: Mapping[QueryType, float], msrr_rps: float, type_rates: Mapping[QueryType, np.ndarray],
    count: int, at_mix: bool,
) -> np.ndarray:
    """oasis_ray.scaling.mix.mix_msrr at every tick, adding in the same order."""
    if not (at_mix and msrr_by_type):
        return np.full(count, msrr_rps)
    zeros = np.zeros(count)
    served = {qt: type_rates.get(qt, zeros) for qt in msrr_by_type}
    total = np.zeros(count)
    seconds = np.zeros(count)
    for qt, rates in served.items():
        total = total + rates
        seconds = seconds + rates / msrr_by_type[qt]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total <= 0, min(msrr_by_type.values()), total / seconds)


def _algorithm1(
    capacity: RouteCapacity, msrr: np.ndarray, need: np.ndarray, min_replicas: int, max_replicas: int
) -> tuple[np.ndarray, np.ndarray]:
    """oasis_ray.scaling.allocation.size_route at every tick: (option index, replicas)."""
    options = capacity.options
    whole = next(i for i, option in enumerate(options) if option.is_whole_unit)
    required = need / msrr[whole]
    names = sorted(option.shape for option in options)
    best = np.full(len(need), whole)
    best_key: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for i, option in enumerate(options):
        if option.is_whole_unit:
            continue
        # fractions_smallest_first orders by (gpu_fraction, -msrr, name); the first that covers the need wins.
        key = (np.full(len(need), option.gpu_fraction), -msrr[i], np.full(len(need), names.index(option.shape)))
        covers = msrr[i] >= need
        if best_key is None:
            better = covers
            best_key = tuple(np.where(covers, part, np.inf) for part in key)  # type: ignore[assignment]
        else:
            better = covers & _lexicographic_less(key, best_key)
            best_key = tuple(np.where(better, new, old) for new, old in zip(key, best_key))  # type: ignore[assignment]
        best = np.where(better, i, best)
    fraction = required < 1
    shape = np.where(fraction, best, whole)
    with np.errstate(invalid="ignore"):
        whole_units = np.ceil(np.where(fraction, 1.0, required) - CEIL_SLACK)
    replicas = np.where(fraction, 1, whole_units).astype(np.int64)
    replicas = np.where(replicas > max_replicas, max_replicas, np.where(replicas < min_replicas, min_replicas,
                                                                        replicas))
    return shape, replicas


def _lexicographic_less(
    first: tuple[np.ndarray, np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    (a0, a1, a2), (b0, b1, b2) = first, second
    return (a0 < b0) | ((a0 == b0) & ((a1 < b1) | ((a1 == b1) & (a2 < b2))))


def _same_plan(shape: int, replicas: int, plan: tuple[int, int]) -> bool:
    """Every zero plan is the same plan (scaling.core._same_plan)."""
    return (shape, replicas) == plan or replicas == plan[1] == 0


def _serving(series: _Series, k: int, shape: int, replicas: int) -> float:
    """RouteCapacity.serving_rps of a one-shape plan at the tick's mix."""
    return 0.0 if replicas == 0 else 0.0 + float(series.msrr[shape, k]) * replicas


def _cooldown_left(cooldown_s: float, changed_at_s: float | None, now_s: float) -> float:
    return 0.0 if changed_at_s is None else max(0.0, cooldown_s - (now_s - changed_at_s))


def _judge(
    k: int, now: float, before: tuple[int, int], series: _Series, config: ScalingConfig, changed_at: float | None,
) -> tuple[int, int]:
    """scaling.core._judge: the plan after this tick (the rules are in that module's docstring)."""
    shape, replicas = int(series.wanted_shape[k]), int(series.wanted_replicas[k])
    if _same_plan(shape, replicas, before):
        return before
    wanted = (shape, replicas)
    serving = _serving(series, k, *before)
    scale_up = _serving(series, k, *wanted) > serving
    need = float(series.need[k])
    if before[1] == 0:
        return wanted
    # The core's rule for a plan outside [min, max] cannot apply: every plan here is Algorithm 1's answer
    # within the route's bounds (or zero, handled above).
    if need > serving:
        return before if _cooldown_left(config.upscale_cooldown_s, changed_at, now) > 0 else wanted
    if scale_up:
        return before
    if replicas != 0:
        floor = _serving(series, k, *wanted) * (1 - config.hysteresis)
        if need >= floor:
            return before
    return before if _cooldown_left(config.downscale_cooldown_s, changed_at, now) > 0 else wanted


def _make_before_break(
    plan: tuple[int, int], targets_before: dict[int, int], current: Mapping[str, int], shape_names: list[str]
) -> dict[int, int]:
    """scaling.core._make_before_break: the plan's replicas plus shapes still serving until the plan's run."""
    shape, replicas = plan
    if replicas == 0:
        return {}
    targets = {shape: replicas}
    plan_running = current.get(shape_names[shape], 0) >= replicas
    for other, count in targets_before.items():
        if other != shape and count > 0 and not plan_running:
            targets[other] = count
    return targets


def _next_action(
    series: _Series, ticks: np.ndarray, start: int, plan: tuple[int, int], changed_at: float | None,
    config: ScalingConfig,
) -> int:
    """The first tick from `start` at which `_judge` adopts Algorithm 1's answer (len(ticks) if none).

    `_judge`'s rules for a standing plan, over a block of ticks at once, with the same arithmetic.
    """
    total = len(ticks)
    width = _FIRST_SCAN
    while start < total:
        stop = min(total, start + width)
        acts = _acts(series, ticks, slice(start, stop), plan, changed_at, config)
        found = np.flatnonzero(acts)
        if found.size:
            return start + int(found[0])
        start, width = stop, width * 4
    return total


def _acts(
    series: _Series, ticks: np.ndarray, at: slice, plan: tuple[int, int], changed_at: float | None,
    config: ScalingConfig,
) -> np.ndarray:
    shape, replicas = plan
    wanted_shape, wanted_replicas = series.wanted_shape[at], series.wanted_replicas[at]
    same = (wanted_shape == shape) & (wanted_replicas == replicas)
    if replicas == 0:
        return ~(same | (wanted_replicas == 0))
    need = series.need[at]
    msrr = series.msrr[:, at]
    serving = msrr[shape] * replicas
    offered = np.where(wanted_replicas > 0, np.take_along_axis(msrr, np.maximum(wanted_shape, 0)[None, :], 0)[0]
                       * wanted_replicas, 0.0)
    now = ticks[at]
    if changed_at is None:
        up_waits = down_waits = np.zeros(len(need), dtype=bool)
    else:
        up_waits = config.upscale_cooldown_s - (now - changed_at) > 0
        down_waits = config.downscale_cooldown_s - (now - changed_at) > 0
    short = need > serving
    below_band = need < offered * (1 - config.hysteresis)
    downscale = ~short & ~(offered > serving) & ((wanted_replicas == 0) | below_band) & ~down_waits
    return ~same & ((short & ~up_waits) | downscale)
