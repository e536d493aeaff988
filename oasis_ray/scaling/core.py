"""The autoscaler's decision core: one tick in, target replicas per route and shape out.

A pure function of its input, like NVIDIA Dynamo's planner: the Serve policy,
the simulator and the tests all call `decide`, and only the adapters around it
touch Ray, metrics or files. Everything it remembers travels in ScalingState,
which the caller hands back on the next tick.

Per route, a tick goes: forecast (optional) -> need = rate x (1 + headroom)
-> Algorithm 1 within the route's bounds -> whether to act on it now -> which
old replicas to keep while new ones start.

Whether to act compares the new answer with the current *plan* (what was last
decided), not with the replicas running, because real replicas take minutes
to start and counting only running ones would order the same scale-up again
on every tick until they did. The rules, in order:

- the plan is unchanged: nothing to do;
- the current plan has no replicas, sits outside [min_replicas, max_replicas]
  or uses a shape the cost table no longer has: act at once, since these are
  a waiting first request, an operator's bound or a replica with unknown
  capacity, and no cooldown should stand in the way;
- need exceeds what the plan serves: scale up, unless a change happened less
  than `upscale_cooldown_s` ago;
- the new answer is smaller and need is below *its* capacity x (1 -
  hysteresis): scale down, unless a change happened less than
  `downscale_cooldown_s` ago. The band is taken on the smaller plan, not the
  current one: a plan that would run at its limit is one small rise away
  from the scale-up that undoes it;
- otherwise hold: the need sits in the hysteresis band.
Both cooldowns count from the last change in either direction, so a scale-up
also postpones the next scale-down; this is what stops a bursty rate from
flapping. Under-provision therefore lasts at most `upscale_cooldown_s`, or
for good at max_replicas, which the record says.

GPU settings (clock, power limit), where the full-GPU option offers levels
(oasis_ray.scaling.allocation sizes at the cheapest one): a plan that differs
from the current one only in its setting is a `set_clock`. A raise is taken
at once, whatever the cooldowns, since it takes effect at once and costs no
start-up; a lowering waits `clock_cooldown_s` and the same hysteresis band as
a scale-down. The setting the replicas are told (`RouteTarget.setting`) is
the plan's, except while the plan is short of the need (a scale-up waiting
for its cooldown or its replicas to start, or capped at max_replicas): then
the fastest level, so a rise is met by the clock first and by new replicas
when they are up.

Make before break: when the plan moves to another shape (a MIG slice to a full
GPU, or back), the core keeps the old shape's replicas targeted until the
running replicas it is given show every planned replica of the new shape, then
retires the old shape. The core cannot see readiness itself; the adapter must
report only replicas that are running (ready) as current, and Serve drains the
retired ones gracefully. If the new shape can never be placed, the old one
simply keeps serving. Once state exists, only shapes the core itself asked for
are kept during a move; a shape running that it never targeted gets 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.allocation import Allocation, Sizing, size_route
from oasis_ray.scaling.settings import RouteLimits, ScalingConfig
from oasis_ray.scaling.forecast import ForecasterState, advance_forecast
from oasis_ray.scaling.record import Action, ScalingRecord, running_replicas
from oasis_ray.scaling.shapes import RouteCapacity
from oasis_ray.scaling.state import RouteState, ScalingState

ADVISORY_PREFIX = "advisory: "

RatePerSecond = Annotated[float, Field(ge=0)]
ReplicaCount = Annotated[int, Field(ge=0)]


class TickInput(BaseModel):
    """Everything one decision depends on.

    A route with no entry in `observed_rps` keeps its plan: a missing metric
    (just after a redeploy, say) must not read as zero traffic and scale down.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    now_s: float = Field(description="Seconds on any clock that only moves forward (cooldowns are differences).")
    observed_rps: dict[str, RatePerSecond]
    current_replicas: dict[str, dict[str, ReplicaCount]] = Field(
        default_factory=dict, description="Running (ready) replicas per route and shape."
    )
    routes: tuple[RouteCapacity, ...] = Field(min_length=1)
    config: ScalingConfig = Field(default_factory=ScalingConfig)
    state: ScalingState = Field(default_factory=ScalingState)

    @model_validator(mode="after")
    def _routes_known(self) -> TickInput:
        names = [capacity.route for capacity in self.routes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"routes: route(s) {duplicates} appear more than once")
        for field_name, keyed in (("observed_rps", self.observed_rps), ("current_replicas", self.current_replicas)):
            unknown = sorted(set(keyed) - set(names))
            if unknown:
                raise ValueError(f"{field_name}: route(s) {unknown} have no capacity entry (known: {names})")
        return self


class RouteTarget(BaseModel):
    """Replicas per shape for every shape of the route, zeros included, so the adapter sets each deployment;
    and the GPU setting its full-GPU replicas run at (None: the route has no levels, or the mode is advisory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: dict[str, int]
    record: ScalingRecord
    setting: DeviceSetting | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: dict[str, RouteTarget]

    def targets(self) -> dict[str, dict[str, int]]:
        return {route: target.replicas for route, target in self.routes.items()}

    def changes(self) -> list[ScalingRecord]:
        """The records worth a log line: those that moved, or in advisory mode would have moved, a count or a
        GPU setting."""
        return [target.record for target in self.routes.values() if target.record.changed]

    def settings(self) -> dict[str, DeviceSetting]:
        """The GPU setting of every route that has one to apply."""
        return {route: target.setting for route, target in self.routes.items() if target.setting is not None}


@dataclass(frozen=True)
class _Reading:
    """The route's load this tick, as Algorithm 1 saw it."""

    observed_rps: float
    forecast_rps: float | None
    need_rps: float
    sizing: Sizing


@dataclass(frozen=True)
class _Judgement:
    action: Action
    plan: Allocation
    reason: str


def decide(tick: TickInput) -> tuple[Decision, ScalingState]:
    """Targets for every route in `tick.routes`, and the state to pass to the next tick."""
    targets: dict[str, RouteTarget] = {}
    states: dict[str, RouteState] = {}
    for capacity in tick.routes:
        targets[capacity.route], states[capacity.route] = _decide_route(tick, capacity)
    return Decision(routes=targets), ScalingState(routes=states)


def _decide_route(tick: TickInput, capacity: RouteCapacity) -> tuple[RouteTarget, RouteState]:
    route, now_s, config = capacity.route, tick.now_s, tick.config
    limits = config.limits_for(route)
    current = running_replicas(tick.current_replicas.get(route, {}))
    previous = tick.state.routes.get(route)
    history = previous if _history_applies(previous, now_s, config.advisory) else None
    plan_before = history.plan if history else _plan_from_running(current, capacity)
    targets_before = history.targets if history else current
    changed_at_s = history.changed_at_s if history else None
    idle_since_s = previous.idle_since_s if previous and _not_after(previous.idle_since_s, now_s) else None
    forecaster = previous.forecaster if previous else None

    observed = tick.observed_rps.get(route)
    reading: _Reading | None = None
    if observed is None:
        judgement = _Judgement("hold", plan_before, "no rate observed for this route; keeping the current plan")
    else:
        forecaster = advance_forecast(config.forecast, forecaster, now_s, observed)
        idle_since_s = (now_s if idle_since_s is None else idle_since_s) if observed == 0 else None
        reading = _read_load(observed, forecaster, idle_since_s, now_s, capacity, limits, config)
        judgement = _judge(plan_before, reading, capacity, limits, config, changed_at_s, now_s)

    plan = judgement.plan
    if plan != plan_before:
        changed_at_s = now_s
    targets, retired = _make_before_break(plan, targets_before, current)
    action, reason = judgement.action, judgement.reason
    if retired:
        action = "finish_move" if action == "hold" else action
        reason += f"; retired {', '.join(retired)}: all {plan.replicas} {plan.shape} replica(s) running"
    if config.advisory:
        reason = ADVISORY_PREFIX + reason

    setting = _told_setting(plan, capacity, current, reading)
    setting_before = previous.told if previous and previous.advisory == config.advisory else None
    record = _record(route, action, config.advisory, reading, plan, capacity, targets_before, targets, reason,
                     setting_before, setting)
    every_shape = {option.shape for option in capacity.options} | set(current) | set(targets_before)
    applied = current if config.advisory else targets
    route_target = RouteTarget(replicas={shape: applied.get(shape, 0) for shape in sorted(every_shape)}, record=record,
                               setting=None if config.advisory else setting)
    state = RouteState(
        plan=plan,
        targets=targets,
        changed_at_s=changed_at_s,
        idle_since_s=idle_since_s,
        forecaster=forecaster,
        advisory=config.advisory,
        told=setting,
    )
    return route_target, state


def _not_after(moment_s: float | None, now_s: float) -> bool:
    """A remembered time in the future means the clock went backwards; trusting it would freeze the route."""
    return moment_s is not None and moment_s <= now_s


def _history_applies(previous: RouteState | None, now_s: float, advisory: bool) -> bool:
    """A shadow plan is not what runs and a real plan is not the shadow, so a mode switch starts from scratch."""
    if previous is None or previous.advisory != advisory:
        return False
    return previous.changed_at_s is None or _not_after(previous.changed_at_s, now_s)


def _told_setting(plan: Allocation, capacity: RouteCapacity, current: dict[str, int],
                  reading: _Reading | None) -> DeviceSetting | None:
    """The setting full-GPU replicas run at: the plan's, or the fastest while the plan is short of the need."""
    option = capacity.option(plan.shape)
    if option is None or not option.levels or plan.replicas == 0:
        return None
    short = current.get(plan.shape, 0) < plan.replicas or (
        reading is not None and reading.need_rps > capacity.serving_rps(plan.as_replicas(), plan.setting))
    return option.fastest_level.setting if short else option.level(plan.setting).setting


def _plan_from_running(current: dict[str, int], capacity: RouteCapacity) -> Allocation:
    """Rebuild a lost plan from what runs; mid-move, the shape serving the most is taken as the plan."""
    if not current:
        return Allocation(shape=capacity.smallest.shape, replicas=0)
    shape = max(sorted(current), key=lambda name: capacity.serving_rps({name: current[name]}))
    return Allocation(shape=shape, replicas=current[shape])


def _read_load(
    observed: float,
    forecaster: ForecasterState | None,
    idle_since_s: float | None,
    now_s: float,
    capacity: RouteCapacity,
    limits: RouteLimits,
    config: ScalingConfig,
) -> _Reading:
    """The need to size for: max(observed, forecast) with headroom, or nothing once an allowed route has idled.

    The idle test uses the observed rate only: a forecast of an idle route is
    the memory of old traffic decaying towards zero, and would never reach it.
    """
    forecast = forecaster.forecast_rps if forecaster else None
    idle_to_zero = (
        limits.allow_scale_to_zero
        and idle_since_s is not None
        and now_s - idle_since_s >= limits.scale_to_zero_after_s
    )
    rate = 0.0 if idle_to_zero else max(observed, forecast or 0.0)
    need = rate * (1 + config.headroom)
    return _Reading(observed, forecast, need, size_route(need, capacity, limits, idle_to_zero=idle_to_zero))


def _cooldown_left(cooldown_s: float, changed_at_s: float | None, now_s: float) -> float:
    return 0.0 if changed_at_s is None else max(0.0, cooldown_s - (now_s - changed_at_s))


def _same_plan(first: Allocation, second: Allocation) -> bool:
    """Every zero plan is the same plan, whichever shape it would restart on."""
    return first == second or first.replicas == second.replicas == 0


def _judge(
    before: Allocation,
    reading: _Reading,
    capacity: RouteCapacity,
    limits: RouteLimits,
    config: ScalingConfig,
    changed_at_s: float | None,
    now_s: float,
) -> _Judgement:
    """Whether to adopt Algorithm 1's answer now; the rules are in the module docstring."""
    wanted = reading.sizing.allocation
    sizing_note = reading.sizing.explanation
    if _same_plan(wanted, before):
        return _Judgement("hold", before, f"plan unchanged: {sizing_note}")
    serving = capacity.serving_rps(before.as_replicas(), before.setting)
    need = reading.need_rps
    if wanted.shape == before.shape and wanted.replicas == before.replicas:
        return _judge_setting(before, wanted, serving, need, capacity, config, changed_at_s, now_s, sizing_note)
    direction: Action = "scale_up" if capacity.serving_rps(wanted.as_replicas(), wanted.setting) > serving \
        else "scale_down"
    if before.replicas == 0:
        return _Judgement(direction, wanted, f"scale from zero: {sizing_note}")
    if capacity.option(before.shape) is None:
        return _Judgement(direction, wanted, f"replace {before.shape}: not in the route's cost table; {sizing_note}")
    if before.replicas > limits.max_replicas or (before.replicas < limits.min_replicas and wanted.replicas > 0):
        bounds = f"[{limits.min_replicas}, {limits.max_replicas}]"
        return _Judgement(direction, wanted, f"{before.replicas} replicas outside bounds {bounds}; {sizing_note}")
    if need > serving:
        wait_s = _cooldown_left(config.upscale_cooldown_s, changed_at_s, now_s)
        shortfall = f"need {need:.4g} rps exceeds capacity {serving:.4g} rps"
        if wait_s > 0:
            return _Judgement("hold", before, f"upscale cooldown, {wait_s:.4g}s left: {shortfall}")
        return _Judgement(direction, wanted, f"{shortfall}; {sizing_note}")
    if direction == "scale_up":
        return _Judgement("hold", before, f"current plan serves {serving:.4g} rps, more than the need {need:.4g}")
    if wanted.replicas == 0:
        surplus = "no traffic"
    else:
        smaller = capacity.serving_rps(wanted.as_replicas(), wanted.setting)
        floor = smaller * (1 - config.hysteresis)
        if need >= floor:
            band = (f"need {need:.4g} rps would leave the smaller plan ({smaller:.4g} rps) less than "
                    f"{config.hysteresis:g} spare (hysteresis); keeping {serving:.4g} rps")
            return _Judgement("hold", before, band)
        surplus = (f"need {need:.4g} rps below {floor:.4g} (smaller plan's capacity {smaller:.4g} x "
                   f"(1 - {config.hysteresis:g}))")
    wait_s = _cooldown_left(config.downscale_cooldown_s, changed_at_s, now_s)
    if wait_s > 0:
        return _Judgement("hold", before, f"downscale cooldown, {wait_s:.4g}s left: {surplus}")
    return _Judgement(direction, wanted, f"{surplus}; {sizing_note}")


def _judge_setting(before: Allocation, wanted: Allocation, serving: float, need: float, capacity: RouteCapacity,
                   config: ScalingConfig, changed_at_s: float | None, now_s: float, sizing_note: str) -> _Judgement:
    """Same replicas, another GPU setting: a raise at once, a lowering after the clock cooldown and hysteresis."""
    option = capacity.option(wanted.shape)
    assert option is not None
    target = option.level(wanted.setting).setting.describe()
    after = capacity.serving_rps(wanted.as_replicas(), wanted.setting)
    if after >= serving:
        return _Judgement("set_clock", wanted, f"to {target} at once (a setting takes effect without a start-up); "
                                               f"{sizing_note}")
    floor = after * (1 - config.hysteresis)
    if need >= floor:
        return _Judgement("hold", before, f"need {need:.4g} rps would leave {target} ({after:.4g} rps) less than "
                                          f"{config.hysteresis:g} spare (hysteresis); keeping {serving:.4g} rps")
    wait_s = _cooldown_left(config.clock_cooldown_s, changed_at_s, now_s)
    if wait_s > 0:
        return _Judgement("hold", before, f"clock cooldown, {wait_s:.4g}s left: {target} would serve the need")
    return _Judgement("set_clock", wanted, f"need {need:.4g} rps below {floor:.4g} at {target}; {sizing_note}")


def _make_before_break(
    plan: Allocation, targets_before: dict[str, int], current: dict[str, int]
) -> tuple[dict[str, int], list[str]]:
    """The plan's replicas, plus every other shape still asked for until the plan's shape fully runs.

    A zero plan is not a move: there is nothing new to wait for, so everything goes.
    """
    if plan.replicas == 0:
        return {}, []
    targets = plan.as_replicas()
    plan_running = current.get(plan.shape, 0) >= plan.replicas
    retired: list[str] = []
    for shape, count in sorted(running_replicas(targets_before).items()):
        if shape == plan.shape:
            continue
        if plan_running:
            retired.append(shape)
        else:
            targets[shape] = count
    return targets, retired


def _record(
    route: str,
    action: Action,
    advisory: bool,
    reading: _Reading | None,
    plan: Allocation,
    capacity: RouteCapacity,
    targets_before: dict[str, int],
    targets: dict[str, int],
    reason: str,
    setting_before: DeviceSetting | None,
    setting: DeviceSetting | None,
) -> ScalingRecord:
    """Algorithm 1's numbers when there was a rate to size for, else the plan kept."""
    settings = {"setting_before": setting_before, "setting_after": setting}
    if reading is None:
        kept = capacity.option(plan.shape)
        return ScalingRecord(
            route=route, action=action, advisory=advisory, observed_rps=None, forecast_rps=None, need_rps=None,
            gpus_required=None, chosen_shape=plan.shape, chosen_replicas=plan.replicas,
            msrr_rps=kept.level(plan.setting).msrr_rps if kept else None, replicas_before=targets_before,
            replicas_after=targets, reason=reason, **settings,
        )
    sizing = reading.sizing
    return ScalingRecord(
        route=route, action=action, advisory=advisory, observed_rps=reading.observed_rps,
        forecast_rps=reading.forecast_rps, need_rps=reading.need_rps, gpus_required=sizing.gpus_required,
        chosen_shape=sizing.allocation.shape, chosen_replicas=sizing.allocation.replicas,
        msrr_rps=sizing.option.level(sizing.allocation.setting).msrr_rps, replicas_before=targets_before,
        replicas_after=targets, reason=reason, **settings,
    )
