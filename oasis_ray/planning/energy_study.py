"""The energy result: the four policies side by side on one trace at one rate, their ratios, and what binds.

For a trace (split round robin over the table's models, since a public
trace is one service's traffic) at a rate scale, every policy of
oasis_ray.planning.sim_policies is simulated with the same settings, and
oasis-joint is compared with static-peak and with the paper's Algorithm 1
on energy, at its SLO attainment per request and per 5-minute window.

Where a target is missed, `what_ifs` reruns the comparison with one
constraint lifted at a time and reports how far each moves it:

- start-up delay: replicas serve the moment they are asked for;
- burst size: the same requests, evenly spaced within each SLO window (the
  5-minute rate profile kept, the bursts inside it removed);
- idle power: boards draw nothing when idle (every policy alike);
- clock floor: oasis-joint runs with every clock the table has, so its floor
  is the table's lowest clock; what the clock lever is worth is shown by
  taking it away (oasis-joint at the default clock only): lifting the floor
  further needs rows below the table's lowest clock.

Each is a what-if on the simulator, not a deployment: it shows which
constraint holds the result back, and so what would lift it.

`fluid_ideal_wh` bounds what any autoscaler could reach with oasis-joint's
configurations: capacity that follows the rate exactly (no start-up, no
headroom, no whole-GPU rounding, each route never below its smallest
shape), every GPU at its MSRR. A saving target this ideal misses cannot be
met by a better policy on this table, only by other configurations or
hardware; the gap between the ideal and oasis-joint is what the policy's
dynamics cost: capacity held for bursts and start-ups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from oasis_ray.costs.table import CostTable, ShapeChoice
from oasis_ray.planning.inventory import DevicePool, Prices
from oasis_ray.planning.sim_policies import (
    FixedPolicy,
    OasisPolicy,
    SimulationSettings,
    STATIC_PEAK_HEADROOM,
    oasis_damped,
    oasis_joint,
    paper_algorithm1,
    static_peak_policy,
)
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.planning.simulator import SECONDS_PER_HOUR, SimRun, ranking_lengths, route_shape_choices, simulate

STATIC_PEAK = "static-peak"
PAPER = "paper-alg1"
OASIS = "oasis"
JOINT = "oasis-joint"
POLICY_ORDER = (STATIC_PEAK, PAPER, OASIS, JOINT)
SLO_TARGET = 0.99
SAVING_VS_STATIC_TARGET = 0.40
SAVING_VS_PAPER_TARGET = 0.15


@dataclass(frozen=True)
class Targets:
    slo_attainment: float = SLO_TARGET
    saving_vs_static: float = SAVING_VS_STATIC_TARGET
    saving_vs_paper: float = SAVING_VS_PAPER_TARGET


@dataclass(frozen=True, eq=False)
class Comparison:
    """Every policy's run on one workload, and oasis-joint's standing against the targets."""

    label: str
    runs: dict[str, SimRun]
    policies: dict[str, FixedPolicy | OasisPolicy]
    ideal_wh: float  # fluid_ideal_wh for oasis-joint's configurations

    def energy(self, policy: str) -> float:
        return self.runs[policy].result.energy_wh

    def ideal_saving(self) -> float:
        """1 - the fluid ideal's energy / static-peak's: the most any policy could save with these configurations."""
        return 1 - self.ideal_wh / self.energy(STATIC_PEAK)

    def saving(self, against: str) -> float:
        """1 - oasis-joint's energy / the other policy's."""
        return 1 - self.energy(JOINT) / self.energy(against)

    def keeps_slo(self, policy: str, targets: Targets) -> bool:
        result = self.runs[policy].result
        return min(result.slo_attainment_requests, result.slo_attainment_windows) >= targets.slo_attainment

    def misses(self, targets: Targets) -> list[str]:
        """The targets oasis-joint misses here, in words; empty when it meets them all."""
        missed = []
        if not self.keeps_slo(JOINT, targets):
            result = self.runs[JOINT].result
            missed.append(f"SLO attainment {result.slo_attainment_requests:.1%} of requests / "
                          f"{result.slo_attainment_windows:.1%} of windows < {targets.slo_attainment:.0%}")
        if self.saving(STATIC_PEAK) < targets.saving_vs_static:
            missed.append(f"saving vs static-peak {self.saving(STATIC_PEAK):.1%} < {targets.saving_vs_static:.0%}")
        if self.saving(PAPER) < targets.saving_vs_paper:
            missed.append(f"saving vs paper-alg1 {self.saving(PAPER):.1%} < {targets.saving_vs_paper:.0%}")
        return missed


@dataclass(frozen=True)
class StudySetup:
    """What every comparison shares: the table, the pool and prices, the simulation settings and headrooms."""

    table: CostTable
    pool: DevicePool
    prices: Prices
    settings: SimulationSettings
    headroom: float
    static_headroom: float = STATIC_PEAK_HEADROOM
    joint_default_clock_only: bool = False


def policies_for(workload: Workload, setup: StudySetup) -> dict[str, FixedPolicy | OasisPolicy]:
    return {
        STATIC_PEAK: static_peak_keeping_slo(workload, setup),
        PAPER: paper_algorithm1(),
        OASIS: oasis_damped(setup.headroom),
        JOINT: joint_policy(setup),
    }


def joint_policy(setup: StudySetup) -> OasisPolicy:
    return oasis_joint(setup.headroom, default_clock_only=setup.joint_default_clock_only)


def compare(workload: Workload, setup: StudySetup, label: str) -> Comparison:
    policies = policies_for(workload, setup)
    runs = {name: simulate(workload, policy, setup.table, setup.pool, setup.prices, setup.settings)
            for name, policy in policies.items()}
    ideal = fluid_ideal_wh(workload, setup.table, setup.pool, setup.settings, joint_policy(setup))
    return Comparison(label=label, runs=runs, policies=policies, ideal_wh=ideal)


def fluid_ideal_wh(
    workload: Workload, table: CostTable, pool: DevicePool, settings: SimulationSettings, policy: OasisPolicy
) -> float:
    """The energy of a fleet on the policy's configurations whose capacity follows the rate exactly.

    Each request runs on the shape (whole GPU or slice) where its type costs
    the least energy at the MSRR, and takes cost x GPUs / MSRR GPU-seconds
    there, its cost being its length relative to the profiled request, as
    the simulator charges it. Each route holds, in every rate window, the
    GPU time its requests take, in fractions of a GPU, but never less than
    its smallest shape (a route keeps one replica, as the policies do). Held
    time draws the board's idle; each request adds the draw over idle at its
    shape's MSRR. No start-up, no headroom, no whole-GPU rounding and no
    engine drawing more than the idle board while it waits, so no policy
    that keeps each GPU within its MSRR uses less on these configurations.
    Routes and types no whole GPU serves under the SLO are left out, as the
    simulator refuses them. NaN where the table gives no power.
    """
    idle_w = (math.nan if pool.idle_power_w is None else pool.idle_power_w) if settings.board_idle_charged else 0.0
    window_s = settings.rate_window_s
    windows = max(1, math.ceil(workload.duration_s / window_s))
    window_of = np.minimum((workload.arrival_s // window_s).astype(np.int64), windows - 1)

    def joules_per_profiled_request(choice: ShapeChoice) -> float:
        curve = choice.curve
        return (idle_w * choice.option.gpus + curve.increment_at(curve.msrr_rps)) / curve.msrr_rps

    joules = 0.0
    for model_index, model_id in enumerate(workload.models):
        of_model = workload.model_index == model_index
        counts = np.bincount(workload.type_code[of_model], minlength=len(QUERY_TYPES))
        for types in policy.routes.route_types().values():
            present = [qt for qt in types if counts[QUERY_TYPES.index(qt)]]
            shares, shapes = route_shape_choices(model_id, present, counts, table, pool, policy.config_choice,
                                                 ranking_lengths(policy, workload, of_model))
            if not shapes:
                continue
            floor = min(next(iter(by_type.values())).option.gpus for by_type in shapes)
            gpu_seconds = np.zeros(windows)
            for query_type in shares:
                best = min((by_type[query_type] for by_type in shapes), key=joules_per_profiled_request)
                gpus, curve = best.option.gpus, best.curve
                of_type = of_model & (workload.type_code == QUERY_TYPES.index(query_type))
                lengths = (curve.length_factor(workload.input_tokens[of_type], workload.output_tokens[of_type])
                           if settings.scale_by_length else np.ones(int(of_type.sum())))
                busy = lengths * gpus / curve.msrr_rps
                gpu_seconds += np.bincount(window_of[of_type], weights=busy, minlength=windows)
                joules += curve.increment_at(curve.msrr_rps) / gpus * float(busy.sum())
            joules += idle_w * float(np.maximum(gpu_seconds, floor * window_s).sum())
    return joules / SECONDS_PER_HOUR  # J / (s per h) = Wh


def static_peak_keeping_slo(
    workload: Workload, setup: StudySetup, targets: Targets = Targets(), max_extra: int = 8
) -> FixedPolicy:
    """Static-peak as a user would deploy it: sized for the busiest rate window, then one more GPU per model at
    a time until its simulated run keeps the SLO (both measures), or another GPU no longer helps.

    The peak-window sizing counts MSRRs, which hold for profiled requests at a steady rate; bursts inside a
    window and longer requests can still miss, and a static deployment is only worth comparing with when it
    keeps the SLO. Where no number of GPUs does (a latency floor the table sets), the last size that still
    helped is kept and its attainment is what the comparison prints.
    """
    policy = static_peak_policy(workload, setup.table, setup.pool, setup.settings, setup.static_headroom)

    def attainment(candidate: FixedPolicy) -> float:
        result = simulate(workload, candidate, setup.table, setup.pool, setup.prices, setup.settings).result
        return min(result.slo_attainment_requests, result.slo_attainment_windows)

    reached = attainment(policy)
    for _ in range(max_extra):
        if reached >= targets.slo_attainment:
            break
        bigger = policy.model_copy(update={"groups": tuple(
            group.model_copy(update={"replicas": group.replicas + 1}) for group in policy.groups)})
        better = attainment(bigger)
        if better <= reached:
            break
        policy, reached = bigger, better
    return policy


@dataclass(frozen=True, eq=False)
class WhatIf:
    """One constraint lifted: the comparison it gives, next to the one it moves."""

    constraint: str
    change: str
    comparison: Comparison


def what_ifs(workload: Workload, setup: StudySetup) -> list[WhatIf]:
    """The comparison rerun with each constraint lifted in turn (see the module docstring)."""
    lifted: list[tuple[str, str, Workload, StudySetup]] = [
        ("start-up delay", f"start-up {setup.settings.startup_s:g} s -> 0 s", workload,
         replace(setup, settings=setup.settings.model_copy(update={"startup_s": 0.0}))),
        ("burst size", f"arrivals evenly spaced within each {setup.settings.slo_window_s:g} s window",
         without_bursts(workload, setup.settings.slo_window_s), setup),
        ("idle power", f"board idle {setup.pool.idle_power_w or math.nan:.1f} W -> 0 W for every policy", workload,
         replace(setup, settings=setup.settings.model_copy(update={"board_idle_charged": False}))),
    ]
    lifted.append(("clock lever", "oasis-joint at the default clock only (the clock choice taken away)", workload,
                   replace(setup, joint_default_clock_only=True)))
    return [WhatIf(constraint, change, compare(load, changed, f"{constraint} lifted"))
            for constraint, change, load, changed in lifted]


def without_bursts(workload: Workload, window_s: float) -> Workload:
    """The same requests, in the same order, spread evenly over each window they arrived in."""
    window = np.floor(workload.arrival_s / window_s).astype(np.int64)
    _, starts, counts = np.unique(window, return_index=True, return_counts=True)
    position = np.arange(len(window)) - np.repeat(starts, counts)
    spread = window * window_s + (position + 0.5) * window_s / np.repeat(counts, counts)
    return replace(workload, name=f"{workload.name} (bursts spread)", arrival_s=spread)
