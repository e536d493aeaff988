"""Which engine configuration (clock, power limit, batch size, variant) a route should run on one shape.

Every choice ranks rows by an objective, the intent's (oasis_ray.intents):

- min-energy (the planner's and simulator's choice so far): energy per request
  at the MSRR, the load Algorithm 1 keeps a replica at (the row's power over
  its MSRR); ties, and rows whose power was not measured, fall back to fewer
  GPU-seconds per request, since fewer replicas is the other half of the saving.
- min-latency: the P95 end-to-end latency on an otherwise idle replica (the
  lowest measured load; under load Algorithm 1 holds every configuration
  within the SLO); ties to fewer GPU-seconds.
- min-cost: GPU-seconds per request (the shape's share of a GPU over the
  MSRR), i.e. the highest MSRR per GPU; ties to less energy.

The objectives are written once, in oasis_ray.intents (objective_columns);
the per-request choice among running targets (oasis_ray.intent_routing) ranks
by them too.

Four ways to choose, and every plan says which it used:

- "baseline": the first row the sweep measured for this shape (both sweep
  modes put the baseline first): what a deployment runs without OASIS's
  configuration choice, e.g. the static one-GPU-per-model comparison.
- "one-at-a-time" (the paper): start from the baseline and change one knob at a time (batch size, then variant, then
  clock, then power limit), keeping a change only when it lowers the objective. Only measured
  rows are ever used, so after a one-at-a-time sweep a knob can move only
  while the others are still at their baseline: the combination of two
  individually best values was never measured, and is never assumed.
- "joint": the best measured row over every (clock, power limit, batch, variant)
  combination. After a grid sweep it finds combinations one knob at a time
  misses, e.g. a low clock that pays off only at a large batch.
- FixedConfiguration: the batch size and variant a running route's engine
  was configured with (the live app), at its GPU setting where one is given
  (clock_control apply), else at default clocks and power limit where the
  table has them, since such replicas run unlocked, else the highest clock
  and limit profiled; among those rows the fastest.
- DefaultClock: one of the three ways above over the default clock's rows
  alone (a deployment that never locks clocks, as the paper's Algorithm 1
  runs, or a what-if of how much the clock choice is worth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.intents import Intent, objective_columns

ConfigChoice = Literal["baseline", "one-at-a-time", "joint"]
# Candidates' clock (and power limit) for rows measured at the GPU's default (unlocked) clocks (and limit).
DEFAULT_CLOCK = -1
DEFAULT_POWER_LIMIT = -1


@dataclass(frozen=True)
class FixedConfiguration:
    """A configuration already chosen elsewhere (a route's engine settings, and its GPU setting where it has one);
    the table is left the clock and power limit only when `setting` is None."""

    max_num_seqs: int
    variant: str
    setting: DeviceSetting | None = None

    def __str__(self) -> str:
        at = f", {self.setting.describe()}" if self.setting is not None else ""
        return f"max_num_seqs={self.max_num_seqs}, variant={self.variant}{at}"


def setting_of(clock_mhz: int, power_limit_w: int) -> DeviceSetting:
    """The GPU setting a row was measured at, from the candidates' codes."""
    return DeviceSetting(sm_clock_mhz=knob_value(clock_mhz, DEFAULT_CLOCK),
                         power_limit_w=knob_value(power_limit_w, DEFAULT_POWER_LIMIT))


def knob_value(code: int, default_code: int) -> int | None:
    """A clock or power limit from its candidates' code: None where the row was measured at the GPU's default."""
    return None if code == default_code else code


@dataclass(frozen=True)
class DefaultClock:
    """A ConfigChoice over the rows measured at the default clock only: a deployment that never locks clocks."""

    choice: ConfigChoice

    def __str__(self) -> str:
        return f"{self.choice} at the default clock"


Selection = ConfigChoice | FixedConfiguration | DefaultClock


@dataclass(frozen=True)
class Candidates:
    """One shape's measured configurations, in table order; DEFAULT_CLOCK and DEFAULT_POWER_LIMIT mark defaults."""

    clock_mhz: np.ndarray
    power_limit_w: np.ndarray
    max_num_seqs: np.ndarray
    variant: np.ndarray
    msrr_rps: np.ndarray
    energy_per_request_j: np.ndarray
    p95_unloaded_s: np.ndarray | None = None
    """P95 end-to-end latency at the lowest measured load; None where the caller has none (only min-latency needs it)."""
    rankings: dict[Intent, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, init=False, compare=False,
                                                                   repr=False)
    """Every row's (figure, tie-breaker) per intent, computed on first use: a plan ranks each route's rows on
    five or six shapes, and one pass over all of them costs what one shape's costs. Not an init field, so
    dataclasses.replace, which changes the figures, starts it afresh."""

    def ranking(self, intent: Intent) -> tuple[np.ndarray, np.ndarray]:
        """Every row's (figure, tie-breaker) under the intent (oasis_ray.intents.objective_columns)."""
        found = self.rankings.get(intent)
        if found is None:
            found = self.rankings[intent] = objective_columns(
                intent, msrr_rps=self.msrr_rps, energy_per_request_j=self.energy_per_request_j,
                p95_unloaded_s=self.p95_unloaded_s)
        return found

    def subset(self, at: np.ndarray) -> Candidates:
        """The rows at `at`, with the rankings already computed."""
        rows = Candidates(
            clock_mhz=self.clock_mhz[at], power_limit_w=self.power_limit_w[at], max_num_seqs=self.max_num_seqs[at],
            variant=self.variant[at], msrr_rps=self.msrr_rps[at], energy_per_request_j=self.energy_per_request_j[at],
            p95_unloaded_s=None if self.p95_unloaded_s is None else self.p95_unloaded_s[at],
        )
        rows.rankings.update({intent: (primary[at], secondary[at]) for intent, (primary, secondary) in self.rankings.items()})
        return rows


def choose_configuration(candidates: Candidates, selection: Selection, intent: Intent = Intent.MIN_ENERGY) -> int | None:
    """The position of the chosen row, or None when no configuration the selection may reach meets the SLO.

    `intent` is the objective "one-at-a-time" and "joint" rank by; a
    FixedConfiguration has nothing left to rank but its clock.
    """
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
        return best_row(candidates, np.flatnonzero(feasible), intent)
    knobs = (candidates.max_num_seqs, candidates.variant, candidates.clock_mhz, candidates.power_limit_w)
    current = 0
    for knob_index in range(len(knobs)):
        others = [knob for i, knob in enumerate(knobs) if i != knob_index]
        same_elsewhere = np.logical_and.reduce([knob == knob[current] for knob in others])
        reachable = np.flatnonzero(same_elsewhere & feasible)
        if reachable.size:
            best = best_row(candidates, reachable, intent)
            if not feasible[current] or _key(candidates, best, intent) < _key(candidates, current, intent):
                current = best
    return current if feasible[current] else None


def configured_rows(candidates: Candidates, selection: FixedConfiguration) -> np.ndarray:
    """Rows of the selection's batch size and variant, at any GPU setting."""
    return (candidates.max_num_seqs == selection.max_num_seqs) & (candidates.variant == selection.variant)


def _fixed(candidates: Candidates, selection: FixedConfiguration, feasible: np.ndarray) -> int | None:
    configured = configured_rows(candidates, selection)
    if not configured.any():
        return None
    if selection.setting is not None:
        wanted = selection.setting
        clock = DEFAULT_CLOCK if wanted.sm_clock_mhz is None else wanted.sm_clock_mhz
        limit = DEFAULT_POWER_LIMIT if wanted.power_limit_w is None else wanted.power_limit_w
    else:
        clocks = candidates.clock_mhz[configured]
        clock = DEFAULT_CLOCK if (clocks == DEFAULT_CLOCK).any() else clocks.max()
        limits = candidates.power_limit_w[configured & (candidates.clock_mhz == clock)]
        limit = DEFAULT_POWER_LIMIT if (limits == DEFAULT_POWER_LIMIT).any() else limits.max()
    at_setting = np.flatnonzero(configured & (candidates.clock_mhz == clock) & (candidates.power_limit_w == limit)
                                & feasible)
    if not at_setting.size:
        return None
    return int(max(at_setting, key=lambda index: (float(candidates.msrr_rps[index]), -int(index))))


def _ranked(candidates: Candidates, positions: np.ndarray, intent: Intent) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one shape: its share of a GPU is common to all, so 1 stands in for it."""
    primary, secondary = candidates.ranking(intent)
    return primary[positions], secondary[positions]


def _key(candidates: Candidates, index: int, intent: Intent) -> tuple[float, float]:
    primary, secondary = _ranked(candidates, np.array([index]), intent)
    return float(primary[0]), float(secondary[0])


def best_row(candidates: Candidates, positions: np.ndarray, intent: Intent) -> int:
    """The position, among `positions`, that the intent ranks first; the earlier row on a tie."""
    positions = np.asarray(positions, dtype=np.int64)
    primary, secondary = _ranked(candidates, positions, intent)
    return int(positions[np.lexsort((positions, secondary, primary))[0]])
