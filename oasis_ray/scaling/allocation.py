"""Algorithm 1 of OASIS: how many of which shape a route needs for a given rate.

GPUs_required = need / MSRR(whole unit). Below one, the smallest MIG slice
whose MSRR covers the need is enough, and the rest of the GPU can serve other
routes; if no slice covers it, one whole GPU. At one or more, ceil of it whole
GPUs, because MIG slices of one model do not pool into a faster replica.

A tensor-parallel whole unit is one replica of N GPUs whose MSRR is the
replica's: the test and the ceil are taken in replicas (need / MSRR), and
GPUs_required is that times N, in GPUs as the paper counts them.

Where the full-GPU option lists GPU-setting levels (clock, power limit), the
replicas are sized at each level and the cheapest plan that covers the need
is taken: the fewest watts (replicas x the level's power at its MSRR), ties
to fewer replicas. A light load so runs one replica at a low clock; a rise
that one replica at a higher clock covers is met by the clock, not a second
replica. Where any level's power is unknown, watts cannot be compared and
the fastest level is taken.

This is the instantaneous answer. Whether to act on it now (cooldowns,
hysteresis, make-before-break) is decided in scaling.core, so the algorithm
stays checkable against the paper's numbers on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.settings import RouteLimits
from oasis_ray.scaling.shapes import RouteCapacity, SettingLevel, ShapeOption

# 0.2 rps x 1.1 headroom / MSRR 0.11 is 2.0000000000000004 in floating point; without slack it buys a third GPU.
_CEIL_SLACK = 1e-9


class Allocation(BaseModel):
    """A route's plan: one shape, how many replicas of it, and the GPU setting they run at (None: the option's own)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: str
    replicas: int = Field(ge=0)
    setting: DeviceSetting | None = None

    def as_replicas(self) -> dict[str, int]:
        return {self.shape: self.replicas} if self.replicas else {}


@dataclass(frozen=True)
class Sizing:
    """Algorithm 1's answer within the route's bounds, with the arithmetic spelled out for the record."""

    allocation: Allocation
    option: ShapeOption
    gpus_required: float
    explanation: str


def replicas_required(need_rps: float, capacity: RouteCapacity) -> float:
    """Whole-unit replicas the need takes, fractional (a tensor-parallel replica is one unit of N GPUs)."""
    return need_rps / capacity.whole_unit.msrr_rps


def gpus_required(need_rps: float, capacity: RouteCapacity) -> float:
    """Algorithm 1's GPUs_required, in GPUs: a TP-N replica counts N."""
    return replicas_required(need_rps, capacity) * capacity.whole_unit.tensor_parallel_size


def algorithm1(need_rps: float, capacity: RouteCapacity) -> tuple[ShapeOption, int, str]:
    """The unbounded choice: (shape, replicas, why)."""
    required = replicas_required(need_rps, capacity)
    whole = capacity.whole_unit
    if required < 1:
        for option in capacity.fractions_smallest_first:
            if option.msrr_rps >= need_rps:
                return option, 1, f"{option.shape} is the smallest slice whose MSRR covers the need"
        return whole, 1, f"no MIG slice covers the need, so 1 {whole.shape}"
    replicas = _ceil(required)
    tensor_parallel = f" of {whole.tensor_parallel_size} GPUs" if whole.tensor_parallel_size > 1 else ""
    return whole, replicas, f"ceil({required:.4g}) = {replicas} {whole.shape}{tensor_parallel}"


def _ceil(required: float) -> int:
    return math.ceil(required - _CEIL_SLACK)


def _within(replicas: int, limits: RouteLimits) -> int:
    return min(max(replicas, limits.min_replicas), limits.max_replicas)


def cheapest_level(need_rps: float, option: ShapeOption, limits: RouteLimits) -> tuple[SettingLevel, int, str]:
    """The GPU setting (and replicas at it) that serves the need for the fewest watts; see the module docstring."""
    sized = [(level, _within(max(_ceil(need_rps / level.msrr_rps), 1), limits)) for level in option.levels]
    covering = [(level, replicas) for level, replicas in sized if replicas * level.msrr_rps >= need_rps]
    if not covering:
        fastest = option.fastest_level
        why = f"no setting covers the need, so the fastest ({fastest.setting.describe()})"
        return fastest, limits.max_replicas, why
    if any(level.power_w is None for level, _ in covering):
        level, replicas = max(covering, key=lambda pair: (pair[0].msrr_rps, -pair[1]))
        return level, replicas, f"at {level.setting.describe()}, the fastest (power unknown: watts not comparable)"
    level, replicas = min(covering, key=lambda pair: (pair[1] * (pair[0].power_w or 0.0), pair[1], -pair[0].msrr_rps))
    watts = ", ".join(f"{r} x {lv.power_w:.4g} W at {lv.setting.describe()}" for lv, r in covering)
    return level, replicas, f"at {level.setting.describe()}, the fewest watts of {watts}"


def size_route(need_rps: float, capacity: RouteCapacity, limits: RouteLimits, *, idle_to_zero: bool) -> Sizing:
    """Algorithm 1, then the route's bounds.

    `idle_to_zero` is decided by the caller, which knows how long the route has
    been idle. The zero plan keeps the shape that would serve the first request
    again, so every zero plan of a route compares equal.
    """
    required = gpus_required(need_rps, capacity)
    if idle_to_zero:
        smallest = capacity.smallest
        explanation = f"idle for at least {limits.scale_to_zero_after_s:g}s and scale to zero is allowed"
        return Sizing(Allocation(shape=smallest.shape, replicas=0), smallest, required, explanation)
    option, replicas, explanation = algorithm1(need_rps, capacity)
    if option.levels:
        level, replicas, why = cheapest_level(need_rps, option, limits)
        allocation = Allocation(shape=option.shape, replicas=replicas, setting=level.setting)
        return Sizing(allocation, option, required, f"{replicas} {option.shape} {why}")
    if replicas > limits.max_replicas:
        replicas = limits.max_replicas
        explanation += (
            f"; capped at max_replicas {replicas}, which serve {replicas * option.msrr_rps:.4g} "
            f"of the {need_rps:.4g} rps needed"
        )
    elif replicas < limits.min_replicas:
        replicas = limits.min_replicas
        explanation += f"; raised to min_replicas {replicas}"
    return Sizing(Allocation(shape=option.shape, replicas=replicas), option, required, explanation)
