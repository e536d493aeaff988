"""The policies a what-if simulation compares, as a user would define them, and the simulation's own settings.

- static-peak (`static_peak_policy`): whole GPUs at the default clock, each
  model at the best configuration (batch size, variant) the table has there
  for its mix at its traffic's lengths, enough for the trace's busiest rate
  window, always on. The deployment
  that keeps the SLO without an autoscaler, so the one to beat
  (oasis_ray.planning.energy_study adds GPUs until its run keeps the SLO).
- paper Algorithm 1 (`paper_algorithm1`): the OASIS paper's runtime policy
  as published: a route per (model, query type), Algorithm 1 on the
  observed rate every tick (a MIG slice below one GPU, else ceil() whole
  GPUs), configurations chosen one knob at a time at the default clock, no
  headroom and no damping (no hysteresis, no cooldowns). Slices of one
  model share GPUs; models do not.
- oasis (`oasis_damped`): this project's decision core as the live app runs
  it: routes as serve_config.yaml groups the types (short-output and
  long-output), capacity at the observed mix, headroom, hysteresis and
  cooldowns, configurations one knob at a time over every clock. Slices of
  one model share GPUs.
- oasis-joint (`oasis_joint`): the same core with the configuration (clock x
  batch x variant) chosen jointly, at the lengths the route serves (not the
  profiled ones), for every query type of a model together
  (one route per model, so the rare long-output types hold no GPU of their
  own), a Holt trend forecast one start-up ahead (so replicas start before a
  ramp arrives; an EWMA with peak hold was tried and, on the bursty Azure
  traces, held a burst's capacity for minutes), and the MIG slices of every
  model packed together onto shared GPUs.

Every policy is printed with these settings next to its figures
(`policy_settings`), so no result is read without its assumptions.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.costs.config_choice import ConfigChoice, DefaultClock, FixedConfiguration
from oasis_ray.costs.table import CostTable
from oasis_ray.planning.inventory import DevicePool
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.settings import HoltForecast, RouteLimits, ScalingConfig
from oasis_ray.planning.sim_routes import BY_MODEL, BY_OUTPUT, PER_TYPE, RouteGrouping
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload

# Large enough that the simulator, not an operator's bound, decides how many replicas a burst gets.
SIMULATION_MAX_REPLICAS = 10_000
# Target utilisation 1 / 1.5 = 67% of the MSRR. Sizing at the MSRR puts P95 on the SLO by definition,
# and the rate the core sizes for is a 30 s mean of a bursty trace while a scale-up lands a tick plus
# a start-up later. Pass --headroom to compare.
SIMULATION_HEADROOM = 0.5
# Static-peak is sized from the trace's own busiest rate window, so it needs headroom only for bursts
# inside a window: the live default.
STATIC_PEAK_HEADROOM = 0.1
DEFAULT_CLOCK_ONE_AT_A_TIME = DefaultClock(choice="one-at-a-time")

Packing = Literal["model", "fleet"]
RankedAt = Literal["profiled", "served"]


class FixedGroup(BaseModel):
    """Always-on replicas of one model on one shape, serving the listed query types together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field(min_length=1)
    query_types: tuple[QueryType, ...] = Field(min_length=1)
    replicas: int = Field(1, ge=1)
    shape: str | None = Field(None, description="A MIG profile of the pool; None: the pool's whole device.")
    configuration: FixedConfiguration | None = Field(
        None, description="Batch size and variant every type runs with, at the default clock; None: each type's "
                          "baseline row (the sweep's first).")


class FixedPolicy(BaseModel):
    """Groups that never change, each at its configuration (or the sweep's baseline row) on its shape, serving
    whatever it is sent (a type that misses the SLO there is served late, not refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fixed"] = "fixed"
    name: str = Field(min_length=1)
    groups: tuple[FixedGroup, ...] = Field(min_length=1)


class OasisPolicy(BaseModel):
    """Routes sized every tick by the live decision core; `packing` says whose MIG slices may share a GPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["oasis"] = "oasis"
    name: str = Field(min_length=1)
    config_choice: ConfigChoice | DefaultClock
    scaling: ScalingConfig
    routes: RouteGrouping = BY_OUTPUT
    packing: Packing = Field("model", description="'model': one model's slices share GPUs; 'fleet': any model's.")
    ranked_at: RankedAt = Field(
        "profiled", description="Lengths configurations are ranked at: 'profiled' (the rows' own, as the live app "
        "ranks them) or 'served' (each route's mean lengths per type, oasis_ray.costs.table.ServedLengths).")


class SimulationSettings(BaseModel):
    """Time steps and delays of the simulated system; defaults mirror the live autoscaler's."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    slo_p95_e2e_s: float = Field(gt=0)
    bin_s: float = Field(1.0, gt=0, description="Resolution of queues, power and the power plot.")
    tick_s: float = Field(10.0, gt=0, description="How often the autoscaler decides.")
    rate_window_s: float = Field(30.0, gt=0, description="The ingress's rate window (rate_window_s in the app).")
    startup_s: float = Field(60.0, ge=0, description="From asking for a replica to its first request.")
    load_window_s: float = Field(
        10.0, gt=0, description="A replica's load is the arrival rate averaged over this long (its batch's memory)."
    )
    slo_window_s: float = Field(300.0, gt=0, description="SLO attainment per window: share of such windows "
                                                         "whose P95 meets the SLO.")
    drain_s: float = Field(1800.0, ge=0, description="Time after the last arrival for queues to empty.")
    scale_by_length: bool = Field(
        True, description="Charge each request its own token lengths; False: every request of a query type costs "
        "its profiled lengths (the paper's per-type assumption).",
    )
    board_idle_charged: bool = Field(
        True, description="Charge each GPU held its board's idle power; False only to measure what idle power "
        "costs a policy (a what-if, not a deployment).",
    )
    decisions: Literal["fast", "exact"] = Field(
        "fast", description="'exact' calls the live decision core every tick; 'fast' gives the same decisions "
        "(oasis_ray.planning.sim_decisions, checked against 'exact' by the tests) in a fraction of the time.",
    )
    seed: int = 0


STATIC_SELECTION = DefaultClock(choice="joint")


def static_peak_policy(
    workload: Workload, table: CostTable, pool: DevicePool, settings: SimulationSettings, headroom: float
) -> FixedPolicy:
    """Whole devices per model for its peak: max over rate windows of sum(rate x cost / MSRR) x (1 + headroom).

    Each model runs one engine configuration for every type it serves, as a
    static deployment does: the best the table has at the default clock for
    the model's mix, ranked at its requests' lengths as a user sizing for
    known traffic would (clocks stay unlocked; batch size and variant are
    chosen jointly, STATIC_SELECTION), or the sweep's baseline row per type
    where no default-clock configuration serves all of them under the SLO.
    A type no configuration serves adds nothing to the sizing. `cost` is the
    type's mean request cost relative to its profiled request when the
    simulation charges requests by their lengths (else 1), the same
    correction the OASIS policies' route capacities get (sim_routes), so
    neither side is sized for cheaper requests than it serves.
    """
    if not 0 <= headroom <= 10:
        raise ValueError(f"headroom: must be within [0, 10], got {headroom}")
    groups = []
    windows = max(1, math.ceil(workload.duration_s / settings.rate_window_s))
    window_of = np.minimum((workload.arrival_s // settings.rate_window_s).astype(np.int64), windows - 1)
    whole = pool.hardware(allow_mig=False)
    for model_index, model_id in enumerate(workload.models):
        of_model = workload.model_index == model_index
        if not of_model.any():
            continue
        counts_by_type = np.bincount(workload.type_code[of_model], minlength=len(QUERY_TYPES))
        shares = {qt: float(counts_by_type[code]) for code, qt in enumerate(QUERY_TYPES) if counts_by_type[code]}
        shared = table.shared_shape_choices(model_id, shares, whole, STATIC_SELECTION,
                                            lengths=workload.served_lengths(of_model))
        configuration = None
        if shared:
            chosen = next(iter(shared[0].values())).option
            configuration = FixedConfiguration(max_num_seqs=chosen.max_num_seqs or 1, variant=chosen.variant or "")
        gpus_per_window = np.zeros(windows)
        for code, query_type in enumerate(QUERY_TYPES):
            of_type = of_model & (workload.type_code == code)
            choices = table.shape_choices(model_id, query_type, whole, configuration or "baseline")
            if choices and of_type.any():
                cost = 1.0
                if settings.scale_by_length:
                    lengths = workload.input_tokens[of_type], workload.output_tokens[of_type]
                    cost = float(choices[0].curve.length_factor(*lengths).mean())
                counts = np.bincount(window_of[of_type], minlength=windows)
                gpus_per_window += counts / settings.rate_window_s / choices[0].option.msrr_rps * cost
        replicas = max(1, math.ceil(float(gpus_per_window.max()) * (1 + headroom) - 1e-9))
        groups.append(FixedGroup(model_id=model_id, query_types=tuple(QueryType), replicas=replicas,
                                 configuration=configuration))
    return FixedPolicy(name="static-peak", groups=tuple(groups))


def _limits() -> RouteLimits:
    return RouteLimits(max_replicas=SIMULATION_MAX_REPLICAS)


def paper_algorithm1() -> OasisPolicy:
    """The paper's Algorithm 1 as published: per-type routes, reactive, default clock, no headroom, no damping."""
    scaling = ScalingConfig(default_limits=_limits(), headroom=0.0, hysteresis=0.0, upscale_cooldown_s=0.0,
                            downscale_cooldown_s=0.0)
    return OasisPolicy(name="paper-alg1", config_choice=DEFAULT_CLOCK_ONE_AT_A_TIME, scaling=scaling,
                       routes=PER_TYPE, packing="model")


def oasis_damped(headroom: float = SIMULATION_HEADROOM) -> OasisPolicy:
    """The live core's damping (hysteresis, cooldowns), routes by output, configurations one knob at a time."""
    scaling = ScalingConfig(default_limits=_limits(), headroom=headroom)
    return OasisPolicy(name="oasis", config_choice="one-at-a-time", scaling=scaling, packing="model")


def oasis_joint(headroom: float = SIMULATION_HEADROOM, default_clock_only: bool = False) -> OasisPolicy:
    """Joint configuration choice for a model's whole mix at its served lengths (over every clock, or the default
    clock alone), Holt forecast a start-up ahead, fleet-wide MIG packing."""
    scaling = ScalingConfig(default_limits=_limits(), headroom=headroom, forecast=HoltForecast())
    choice: ConfigChoice | DefaultClock = DefaultClock(choice="joint") if default_clock_only else "joint"
    return OasisPolicy(name="oasis-joint", config_choice=choice, scaling=scaling, routes=BY_MODEL, packing="fleet",
                       ranked_at="served")


def policy_settings(policy: FixedPolicy | OasisPolicy) -> str:
    """What a policy ran with, so a table is never read without its sizing assumptions."""
    if isinstance(policy, FixedPolicy):
        devices = ", ".join(f"{group.model_id} x{group.replicas} ({group.configuration or 'baseline row'})"
                            for group in policy.groups)
        return (f"{policy.name}: always-on whole GPUs at the default clock ({devices}), sized for the busiest rate "
                f"window, plus GPUs while they raise its SLO attainment")
    scaling = policy.scaling
    damping = ("no damping" if scaling.hysteresis == 0 and scaling.upscale_cooldown_s == 0
               and scaling.downscale_cooldown_s == 0 else
               f"hysteresis {scaling.hysteresis:g}, cooldowns up {scaling.upscale_cooldown_s:g} s / down "
               f"{scaling.downscale_cooldown_s:g} s")
    return (
        f"{policy.name}: routes {policy.routes.name} (route MSRR: {policy.routes.capacity}), configuration "
        f"{policy.config_choice} at {policy.ranked_at} lengths, headroom {scaling.headroom:g} (target utilisation "
        f"{1 / (1 + scaling.headroom):.0%} of MSRR), {damping}, forecast {scaling.forecast.mode}, "
        f"MIG slices packed per {policy.packing}"
    )
