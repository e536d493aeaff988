"""Algorithm 1 of OASIS: how many of which shape a route needs for a given rate.

GPUs_required = need / MSRR(whole unit). Below one, the smallest MIG slice
whose MSRR covers the need is enough, and the rest of the GPU can serve other
routes; if no slice covers it, one whole GPU. At one or more, ceil of it whole
GPUs, because MIG slices of one model do not pool into a faster replica.

This is the instantaneous answer. Whether to act on it now (cooldowns,
hysteresis, make-before-break) is decided in scaling.core, so the algorithm
stays checkable against the paper's numbers on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.scaling.settings import RouteLimits
from oasis_ray.scaling.shapes import RouteCapacity, ShapeOption

# 0.2 rps x 1.1 headroom / MSRR 0.11 is 2.0000000000000004 in floating point; without slack it buys a third GPU.
_CEIL_SLACK = 1e-9


class Allocation(BaseModel):
    """A route's plan: one shape, and how many replicas of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: str
    replicas: int = Field(ge=0)

    def as_replicas(self) -> dict[str, int]:
        return {self.shape: self.replicas} if self.replicas else {}


@dataclass(frozen=True)
class Sizing:
    """Algorithm 1's answer within the route's bounds, with the arithmetic spelled out for the record."""

    allocation: Allocation
    option: ShapeOption
    gpus_required: float
    explanation: str


def gpus_required(need_rps: float, capacity: RouteCapacity) -> float:
    return need_rps / capacity.whole_unit.msrr_rps


def algorithm1(need_rps: float, capacity: RouteCapacity) -> tuple[ShapeOption, int, str]:
    """The unbounded choice: (shape, replicas, why)."""
    required = gpus_required(need_rps, capacity)
    whole = capacity.whole_unit
    if required < 1:
        for option in capacity.fractions_smallest_first:
            if option.msrr_rps >= need_rps:
                return option, 1, f"{option.shape} is the smallest slice whose MSRR covers the need"
        return whole, 1, f"no MIG slice covers the need, so 1 {whole.shape}"
    replicas = math.ceil(required - _CEIL_SLACK)
    return whole, replicas, f"ceil({required:.4g}) = {replicas} {whole.shape}"


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
