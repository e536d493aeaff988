"""Which engine configuration (clock, batch size, variant) a route should run on one shape.

The objective is energy per request at the MSRR (the row's power over its
MSRR): what a replica costs per request when it is kept busy, which is how
Algorithm 1 keeps it. Ties, and rows whose power was not measured, fall back
to the higher MSRR, since fewer replicas is the other half of the saving.

Three ways to choose, and every plan says which it used:

- "baseline": the first row the sweep measured for this shape (both sweep
  modes put the baseline first): what a deployment runs without OASIS's
  configuration choice, e.g. the static one-GPU-per-model comparison.
- "one-at-a-time" (the paper): start from the baseline and change one knob at a time (batch size, then variant, then
  clock), keeping a change only when it lowers the objective. Only measured
  rows are ever used, so after a one-at-a-time sweep a knob can move only
  while the others are still at their baseline: the combination of two
  individually best values was never measured, and is never assumed.
- "joint": the best measured row over every (clock, batch, variant)
  combination. After a grid sweep it finds combinations one knob at a time
  misses, e.g. a low clock that pays off only at a large batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ConfigChoice = Literal["baseline", "one-at-a-time", "joint"]


@dataclass(frozen=True)
class Candidates:
    """One shape's measured configurations, in table order; `clock_mhz` uses -1 for default clocks."""

    clock_mhz: np.ndarray
    max_num_seqs: np.ndarray
    variant: np.ndarray
    msrr_rps: np.ndarray
    energy_per_request_j: np.ndarray


def choose_configuration(candidates: Candidates, mode: ConfigChoice) -> int | None:
    """The position of the chosen row, or None when no configuration the mode may reach meets the SLO."""
    feasible = candidates.msrr_rps > 0
    if not feasible.any():
        return None
    if mode == "baseline":
        return 0 if feasible[0] else None
    if mode == "joint":
        return _best(candidates, np.flatnonzero(feasible))
    knobs = (candidates.max_num_seqs, candidates.variant, candidates.clock_mhz)
    current = 0
    for knob_index in range(len(knobs)):
        others = [knob for i, knob in enumerate(knobs) if i != knob_index]
        same_elsewhere = np.logical_and.reduce([knob == knob[current] for knob in others])
        reachable = np.flatnonzero(same_elsewhere & feasible)
        if reachable.size:
            best = _best(candidates, reachable)
            if not feasible[current] or _key(candidates, best) < _key(candidates, current):
                current = best
    return current if feasible[current] else None


def _key(candidates: Candidates, index: int) -> tuple[float, float]:
    energy = float(candidates.energy_per_request_j[index])
    return (energy if np.isfinite(energy) else np.inf, -float(candidates.msrr_rps[index]))


def _best(candidates: Candidates, positions: np.ndarray) -> int:
    return int(min(positions, key=lambda index: _key(candidates, int(index))))
