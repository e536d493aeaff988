"""Which engine configuration (clock, batch size, variant) a route should run on one shape.

The objective is energy per request at the MSRR (the row's power over its
MSRR): what a replica costs per request when it is kept busy, which is how
Algorithm 1 keeps it. Ties, and rows whose power was not measured, fall back
to the higher MSRR, since fewer replicas is the other half of the saving.

Four ways to choose, and every plan says which it used:

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
- FixedConfiguration: the batch size and variant a running route's engine
  was configured with (the live app), at default clocks where the table has
  them, since live replicas run unlocked, else the highest clock profiled;
  among those rows the fastest.
- DefaultClock: one of the three ways above over the default clock's rows
  alone (a deployment that never locks clocks, as the paper's Algorithm 1
  runs, or a what-if of how much the clock choice is worth).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ConfigChoice = Literal["baseline", "one-at-a-time", "joint"]
# Candidates' clock for rows measured at the GPU's default (unlocked) clocks.
DEFAULT_CLOCK = -1


@dataclass(frozen=True)
class FixedConfiguration:
    """A configuration already chosen elsewhere (a route's engine settings); only its clock is left to the table."""

    max_num_seqs: int
    variant: str

    def __str__(self) -> str:
        return f"max_num_seqs={self.max_num_seqs}, variant={self.variant}"


@dataclass(frozen=True)
class DefaultClock:
    """A ConfigChoice over the rows measured at the default clock only: a deployment that never locks clocks."""

    choice: ConfigChoice

    def __str__(self) -> str:
        return f"{self.choice} at the default clock"


Selection = ConfigChoice | FixedConfiguration | DefaultClock


@dataclass(frozen=True)
class Candidates:
    """One shape's measured configurations, in table order; `clock_mhz` uses DEFAULT_CLOCK for default clocks."""

    clock_mhz: np.ndarray
    max_num_seqs: np.ndarray
    variant: np.ndarray
    msrr_rps: np.ndarray
    energy_per_request_j: np.ndarray


def choose_configuration(candidates: Candidates, selection: Selection) -> int | None:
    """The position of the chosen row, or None when no configuration the selection may reach meets the SLO."""
    feasible = candidates.msrr_rps > 0
    if isinstance(selection, DefaultClock):
        feasible &= candidates.clock_mhz == DEFAULT_CLOCK
        selection = selection.choice
    if not feasible.any():
        return None
    if isinstance(selection, FixedConfiguration):
        return _fixed(candidates, selection, feasible)
    if selection == "baseline":
        return 0 if feasible[0] else None
    if selection == "joint":
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


def _fixed(candidates: Candidates, selection: FixedConfiguration, feasible: np.ndarray) -> int | None:
    configured = (candidates.max_num_seqs == selection.max_num_seqs) & (candidates.variant == selection.variant)
    if not configured.any():
        return None
    clocks = candidates.clock_mhz[configured]
    clock = DEFAULT_CLOCK if (clocks == DEFAULT_CLOCK).any() else clocks.max()
    at_clock = np.flatnonzero(configured & (candidates.clock_mhz == clock) & feasible)
    if not at_clock.size:
        return None
    return int(max(at_clock, key=lambda index: (float(candidates.msrr_rps[index]), -int(index))))


def _key(candidates: Candidates, index: int) -> tuple[float, float]:
    energy = float(candidates.energy_per_request_j[index])
    return (energy if np.isfinite(energy) else np.inf, -float(candidates.msrr_rps[index]))


def _best(candidates: Candidates, positions: np.ndarray) -> int:
    """The position with the least energy per request (unknown counts as worst), then the highest MSRR, then
    the earliest: `min` over `_key` in one vectorised sort."""
    energy = candidates.energy_per_request_j[positions]
    energy = np.where(np.isfinite(energy), energy, np.inf)
    order = np.lexsort((-candidates.msrr_rps[positions], energy))
    return int(positions[order[0]])
