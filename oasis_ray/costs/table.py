"""The hardware cost table read once, under one SLO: what each route can run on given hardware, and at what cost.

This is the one place that turns HCT rows into capacities. The live
autoscaler (oasis_ray.costs.live), the planner and the simulator all ask it
the same questions: which shapes of some hardware can serve a model's query
types, with which configuration (clock, batch, variant), at what MSRR, power
and latency. The answers come back as the scaling core's own ShapeOption and
RouteCapacity, so Algorithm 1 runs on exactly what every caller sees, plus the
ServiceCurve (oasis_ray.costs.curves) for power and latency at any rate.

The MSRR is recomputed for the SLO asked for from the load points (the best
throughput whose P95 meets it), so one table answers for any SLO its load
points cover; by default the SLO is the table's own. A row without load
points keeps its own MSRR when it was measured under the same or a stricter
SLO, and counts as infeasible under a stricter one, since nothing says what
it would do there.

Built once per (table, SLO) with the rows grouped into numpy arrays, because
a 1,000-GPU plan asks this for hundreds of routes and pandas filtering per
route would dominate it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from oasis_ray.costs.config_choice import (
    DEFAULT_CLOCK,
    DEFAULT_POWER_LIMIT,
    Candidates,
    FixedConfiguration,
    Selection,
    best_row,
    choose_configuration,
    configured_rows,
    knob_value,
    setting_of,
)
from oasis_ray.costs.curves import LoadPoints, ServiceCurve, length_factor, prefill_share, service_curve
from oasis_ray.intents import Intent
from oasis_ray.profiling.hct import HardwareCostTable
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.mix import mix_capacity
from oasis_ray.scaling.shapes import CPU, FULL_GPU, RouteCapacity, SettingLevel, ShapeOption, default_gpu_fraction


Shares = Mapping[QueryType, float]
ENGINE_IDLE_COLUMN = "engine_idle_power_w"


@dataclass(frozen=True)
class ServedLengths:
    """The mean input and output tokens of the requests a route serves, per query type.

    A configuration's MSRR and energy per request hold for requests of the
    profiled lengths; each request costs its length factor (ServiceCurve.
    length_factor) times that, and the factor differs between configurations,
    since it splits a request between prefill and decode as each one's own
    unloaded TTFT does. So the configuration that costs least per profiled
    request need not cost least per request of the traffic (Llama-3-8B at 60%
    LISO on the paper table: standard scheduling at 1,000 / 50 tokens, chunked
    prefill at 1,155 / 211), and a choice for known traffic ranks at its
    lengths. A type not listed is ranked at its profiled lengths.
    """

    by_type: Mapping[QueryType, tuple[float, float]]


@dataclass(frozen=True)
class Hardware:
    """The devices a route may run on: a whole unit, the MIG shapes allowed on it, and the board's idle power
    (the board with no engine loaded, MIG on or off).

    The planner and simulator derive it from a device pool (DevicePool.hardware),
    the live app from a route's configured shapes (oasis_ray.costs.live).
    `accelerator_type` None accepts any GPU row; MIG rows of real sweeps carry
    no accelerator type and are accepted for any. The whole unit's rows are
    those of `tensor_parallel_size` (GPUs per replica); a MIG slice's are of 1.
    """

    whole_shape: str
    accelerator_type: str | None = None
    mig_shapes: tuple[str, ...] = ()
    idle_power_w: float | None = None
    tensor_parallel_size: int = 1

    @property
    def shapes(self) -> tuple[str, ...]:
        """Whole unit first, then MIG shapes smallest first."""
        return (self.whole_shape, *sorted(self.mig_shapes, key=lambda name: (int(name[0]), name)))


@dataclass(frozen=True)
class ShapeChoice:
    """A shape the route can run on: Algorithm 1's option, the HCT row it came from, and (on demand) its curve.

    The curve is built on first use: a plan needs it only for the shape
    Algorithm 1 picks, and most routes have five or six shapes.
    """

    option: ShapeOption
    trial_id: str
    build_curve: Callable[[], ServiceCurve] = field(repr=False)
    p95_unloaded_s: float | None = None
    """P95 end-to-end latency on an otherwise idle replica (the lowest measured load); None where not known."""

    @functools.cached_property
    def curve(self) -> ServiceCurve:
        return self.build_curve()


ShapeChoices = dict[QueryType, ShapeChoice]
"""One shape's choice for each query type of a route: one configuration, each type's own row at it."""


@dataclass(frozen=True)
class IntentConfiguration:
    """The configuration an intent picked for a route, and its figures on the route's whole unit at an even mix."""

    configuration: FixedConfiguration
    clock_mhz: int | None
    msrr_rps: float
    energy_per_request_j: float
    p95_unloaded_s: float


class IntentUnanswered(ValueError):
    """The table cannot answer an intent for a route; the message says why, the caller names the route."""


@dataclass(frozen=True)
class _Group:
    """One (model, query type)'s ok rows as arrays, in table order."""

    positions: np.ndarray
    shape: np.ndarray
    accelerator_type: np.ndarray
    accelerator_unknown: np.ndarray
    tensor_parallel: np.ndarray
    candidates: Candidates
    power_at_msrr_w: np.ndarray
    # One integer per (clock, power limit, batch, variant), equal across groups for the same configuration.
    config_key: np.ndarray
    # Rows per (shape, accelerator type, TP degree) asked for so far: a plan asks the same few for hundreds of routes.
    on_shape: dict[tuple[str, str | None, int], np.ndarray] = field(default_factory=dict, compare=False)
    first_rows: dict[tuple[str, str | None, int], tuple[np.ndarray, Candidates]] = field(default_factory=dict,
                                                                                         compare=False)


class CostTable:
    def __init__(self, table: HardwareCostTable, slo_p95_e2e_s: float | None = None) -> None:
        """`slo_p95_e2e_s` None: the SLO the table was profiled under."""
        slo = table.metadata.slo.p95_e2e_s if slo_p95_e2e_s is None else slo_p95_e2e_s
        if not (math.isfinite(slo) and slo > 0):
            raise ValueError(f"slo_p95_e2e_s: must be a positive number of seconds, got {slo!r}")
        self.slo_p95_e2e_s = slo
        rows = table.rows[table.rows["status"] == "ok"].reset_index(drop=True)
        self._rows = rows
        points = table.load_points
        # Trials as integer codes, shared by rows and points, so grouping points never compares strings.
        codes = pd.factorize(pd.concat([rows["trial_id"], points["trial_id"]], ignore_index=True))[0]
        self._row_codes, point_codes = codes[: len(rows)], codes[len(rows):]
        order = np.lexsort((points["order"].to_numpy(dtype=np.int64), point_codes))
        self._point_codes = point_codes[order]
        self._point_columns = {
            name: points[column].to_numpy(dtype=float, na_value=np.nan)[order]
            for name, column in (("concurrency", "concurrency"), ("requests_per_s", "requests_per_s"),
                                 ("ttft_p50_s", "ttft_p50_s"), ("e2e_p50_s", "e2e_p50_s"), ("e2e_p95_s", "e2e_p95_s"),
                                 ("e2e_p99_s", "e2e_p99_s"), ("power_w", "mean_power_w"))
        }
        self._trial_ids = rows["trial_id"].to_numpy(dtype=object)
        self._lengths = rows[["input_tokens", "output_tokens"]].to_numpy(dtype=np.int64)
        self._prefill_shares: dict[int, float] = {}  # per row position, from its load points on first use
        # Schema 2 tables give each row the board's power with the engine loaded and idle; older ones do not.
        self._engine_idle_w = (rows[ENGINE_IDLE_COLUMN].to_numpy(dtype=float, na_value=np.nan)
                               if ENGINE_IDLE_COLUMN in rows else np.full(len(rows), np.nan))
        msrr, power = self._msrr_under_slo(rows)
        self._groups = self._group(rows, msrr, power, self._unloaded_p95(rows))

    def shape_choices(
        self, model_id: str, query_type: QueryType, hardware: Hardware, selection: Selection,
        intent: Intent = Intent.MIN_ENERGY,
    ) -> list[ShapeChoice]:
        """Every shape of the hardware on which some configuration meets the SLO, whole unit first."""
        return [choices[query_type] for choices in self.shared_shape_choices(model_id, {query_type: 1.0}, hardware,
                                                                              selection, intent)]

    def shared_shape_choices(
        self, model_id: str, shares: Shares, hardware: Hardware, selection: Selection,
        intent: Intent = Intent.MIN_ENERGY, lengths: ServedLengths | None = None,
    ) -> list[ShapeChoices]:
        """Per shape, whole unit first, one configuration every listed query type runs, chosen for their mix.

        A replica runs one engine configuration whatever type it serves, so a
        route of several types must pick one (clock, batch, variant) for all
        of them; each type keeps its own measured row at that configuration.
        The choice is the selection's, ranked by the intent's objective over the
        mix's MSRR (harmonic by share: a replica serves one request per
        sum(share / MSRR) seconds), energy per request (sum of share x the
        type's power / MSRR) and P95 (share-weighted). With `lengths` each
        type's MSRR and energy per request are those of requests of the
        served lengths (ServedLengths), so the ranking is at the traffic's
        lengths; the choices returned keep the rows' own figures. A shape appears
        only when some configuration measured for every type meets the SLO
        for all of them (`why_not` says why one does not).
        """
        groups = self._model_groups(model_id, _checked(shares))
        if groups is None:
            return []
        if len(groups) == 1 and intent is not Intent.SLO:
            # A type's candidates on each shape are slices of its rows: ranked in one pass here, sliced there.
            next(iter(groups.values())).candidates.ranking(intent)
        choices = []
        for shape in hardware.shapes:
            mixed = self._mixed_on_shape(groups, shares, shape, hardware)
            if mixed is None:
                continue
            candidates, rows = mixed
            if lengths is not None:
                candidates = _mixed(groups, rows, shares, self._length_factors(groups, rows, lengths))
            chosen = choose_configuration(candidates, selection, intent)
            if chosen is not None:
                choices.append({qt: self._choice(groups[qt], int(at[chosen]), shape, hardware)
                                for qt, at in rows.items()})
        return choices

    def setting_levels(
        self, model_id: str, shares: Shares, hardware: Hardware, selection: FixedConfiguration
    ) -> tuple[SettingLevel, ...]:
        """Every GPU setting the table measured the route's configuration at on a full GPU, where it meets the SLO
        for all of the route's types: the levels the scaling core may move the route's clock among.

        A level's MSRR is its slowest type's (safe for any mix; the core weighs
        it by the reported mix), its power the types' mean weighed by `shares`.
        """
        groups = self._model_groups(model_id, shares)
        if groups is None or hardware.whole_shape != FULL_GPU:
            return ()
        mixed = self._mixed_on_shape(groups, shares, FULL_GPU, hardware)
        if mixed is None:
            return ()
        candidates, rows = mixed
        total = sum(shares.values())
        levels: dict[tuple[int, int], SettingLevel] = {}
        for position in np.flatnonzero(configured_rows(candidates, selection) & (candidates.msrr_rps > 0)):
            key = (int(candidates.clock_mhz[position]), int(candidates.power_limit_w[position]))
            by_type = {qt: float(groups[qt].candidates.msrr_rps[at[position]]) for qt, at in rows.items()}
            powers = [float(groups[qt].power_at_msrr_w[at[position]]) for qt, at in rows.items()]
            known = all(math.isfinite(p) and p > 0 for p in powers)
            power = math.fsum(shares[qt] / total * p for qt, p in zip(rows, powers)) if known else None
            level = SettingLevel(setting=setting_of(*key), msrr_rps=min(by_type.values()), msrr_by_type=by_type,
                                 power_w=power)
            if key not in levels or level.msrr_rps > levels[key].msrr_rps:
                levels[key] = level
        return tuple(levels.values())

    def intent_configuration(self, model_id: str, shares: Shares, hardware: Hardware,
                             intent: Intent) -> IntentConfiguration:
        """The (batch, variant) a route of these types should run on this hardware to best meet the intent.

        A route runs one engine configuration on all its shapes, so only a
        configuration that meets the SLO for every type on every shape of the
        hardware qualifies; it is ranked on the whole unit, the shape Algorithm
        1 counts in. Each configuration is taken at the clock a live replica
        runs it at (FixedConfiguration: default clocks where profiled, else the
        highest), so the figures the choice is made on are the ones the
        autoscaler then sizes by. Raises IntentUnanswered saying why none qualifies.
        """
        groups = self._model_groups(model_id, _checked(shares))
        if groups is None:
            missing = sorted(qt.value for qt in shares if (model_id, qt.value) not in self._groups)
            raise IntentUnanswered(f"the HCT has no successful row for {', '.join(missing)} of '{model_id}'")
        per_shape = {}
        for shape in hardware.shapes:
            mixed = self._mixed_on_shape(groups, shares, shape, hardware)
            if mixed is None:
                types = ", ".join(qt.value for qt in groups)
                raise IntentUnanswered(f"no configuration was measured for every query type ({types}) on {shape}")
            per_shape[shape] = mixed[0]
        whole = per_shape[hardware.whole_shape]
        qualified = []
        for batch, variant in dict.fromkeys(zip(whole.max_num_seqs.tolist(), whole.variant.tolist())):
            fixed = FixedConfiguration(max_num_seqs=int(batch), variant=str(variant))
            rows = {shape: choose_configuration(candidates, fixed) for shape, candidates in per_shape.items()}
            if all(row is not None for row in rows.values()):
                qualified.append(rows[hardware.whole_shape])
        if not qualified:
            raise IntentUnanswered(f"no configuration meets the SLO (P95 <= {self.slo_p95_e2e_s:g} s) "
                                   f"on every shape ({', '.join(hardware.shapes)})")
        if intent is Intent.MIN_ENERGY and not np.isfinite(whole.energy_per_request_j[qualified]).any():
            raise IntentUnanswered("no power was measured for its configurations (power_available false), "
                                   "so there are no joules per request to minimise")
        chosen = best_row(whole, np.asarray(qualified, dtype=np.int64), intent)
        clock = int(whole.clock_mhz[chosen])
        p95 = whole.p95_unloaded_s
        return IntentConfiguration(
            configuration=FixedConfiguration(max_num_seqs=int(whole.max_num_seqs[chosen]),
                                             variant=str(whole.variant[chosen])),
            clock_mhz=None if clock == DEFAULT_CLOCK else clock,
            msrr_rps=float(whole.msrr_rps[chosen]),
            energy_per_request_j=float(whole.energy_per_request_j[chosen]),
            p95_unloaded_s=float(p95[chosen]) if p95 is not None else math.nan,
        )

    @staticmethod
    def _mixed_on_shape(
        groups: dict[QueryType, _Group], shares: Shares, shape: str, hardware: Hardware
    ) -> tuple[Candidates, dict[QueryType, np.ndarray]] | None:
        """One shape's configurations measured for every type, with the mix's figures, and each type's rows there.

        None when no configuration was measured for all of them on the shape.
        """
        on_shape = {qt: _on_shape(group, shape, hardware) for qt, group in groups.items()}
        if any(not at.size for at in on_shape.values()):
            return None
        if len(groups) == 1:
            # One type: its own rows are the mix (its share is 1), so they are chosen from as they stand.
            ((qt, group),) = groups.items()
            at, mixed = _first_of_each_configuration(group, shape, hardware)
            return mixed, {qt: at}
        aligned = _aligned_configurations({qt: groups[qt].config_key[at] for qt, at in on_shape.items()})
        if aligned is None:
            return None
        _, positions = aligned
        rows = {qt: on_shape[qt][positions[qt]] for qt in groups}
        return _mixed(groups, rows, shares), rows

    def why_not(self, model_id: str, query_type: QueryType, shape: str, hardware: Hardware, selection: Selection) -> str:
        """Why a shape offers the type no configuration: no row the selection may use, or none meets the SLO."""
        group = self._groups.get((model_id, query_type.value))
        on_shape = _on_shape(group, shape, hardware) if group is not None else np.empty(0, np.int64)
        if not on_shape.size:
            return f"the HCT has no successful row for {query_type.value} on {shape}"
        candidates = group.candidates.subset(on_shape)
        if choose_configuration(candidates, selection) is not None:
            return f"{query_type.value} is served, but the route's other types were measured at other configurations"
        reachable = replace(candidates, msrr_rps=np.ones(len(on_shape)))
        if choose_configuration(reachable, selection) is None:
            return f"the HCT has no successful row for {query_type.value} at {selection}"
        return f"the HCT never meets the SLO (P95 <= {self.slo_p95_e2e_s:g} s) for {query_type.value} at {selection}"

    def route_capacity(
        self, model_id: str, query_type: QueryType, hardware: Hardware, selection: Selection,
        intent: Intent = Intent.MIN_ENERGY,
    ) -> tuple[RouteCapacity, dict[str, ShapeChoice]] | None:
        """A one-type route's capacity for Algorithm 1; None when the whole unit cannot meet the SLO."""
        choices = self.shape_choices(model_id, query_type, hardware, selection, intent)
        if not choices or choices[0].option.shape != hardware.whole_shape:
            return None
        capacity = RouteCapacity(route=route_name(model_id, query_type), options=tuple(c.option for c in choices))
        return capacity, {choice.option.shape: choice for choice in choices}

    def _model_groups(self, model_id: str, types: Iterable[QueryType]) -> dict[QueryType, _Group] | None:
        """Each type's group, or None when one of them has no successful row at all."""
        groups = {qt: self._groups.get((model_id, qt.value)) for qt in types}
        if any(group is None for group in groups.values()):
            return None
        return {qt: group for qt, group in groups.items() if group is not None}

    def _choice(self, group: _Group, index: int, shape: str, hardware: Hardware) -> ShapeChoice:
        position = int(group.positions[index])
        msrr = float(group.candidates.msrr_rps[index])
        power = float(group.power_at_msrr_w[index])
        # Every field comes from a row the table's loader validated, and a chosen row's MSRR is positive: built
        # without re-validation, since a 4,000-route plan builds some 13,000 of these.
        option = ShapeOption.model_construct(
            shape=shape,
            gpu_fraction=default_gpu_fraction(shape),
            msrr_rps=msrr,
            msrr_by_type={},
            power_w=power if math.isfinite(power) and power > 0 else None,
            clock_mhz=knob_value(int(group.candidates.clock_mhz[index]), DEFAULT_CLOCK),
            power_limit_w=knob_value(int(group.candidates.power_limit_w[index]), DEFAULT_POWER_LIMIT),
            tensor_parallel_size=int(group.tensor_parallel[index]),
            max_num_seqs=int(group.candidates.max_num_seqs[index]),
            variant=str(group.candidates.variant[index]),
            levels=(),  # given, not defaulted: model_construct resolving a default costs more than the rest here
        )

        p95 = float(group.candidates.p95_unloaded_s[index])
        return ShapeChoice(option=option, trial_id=str(self._trial_ids[position]),
                           build_curve=functools.partial(self._curve, position, msrr, hardware),
                           p95_unloaded_s=p95 if math.isfinite(p95) else None)

    def baseline_curve(
        self, model_id: str, query_type: QueryType, shape: str, hardware: Hardware
    ) -> ServiceCurve | None:
        """The curve of the sweep's first row on a shape (its baseline configuration), whatever its MSRR.

        What an always-on replica nobody sized from the table serves with: it
        takes every request it is sent, so a type that misses the SLO there
        is served late rather than not at all. None: no row on that shape.
        """
        group = self._groups.get((model_id, query_type.value))
        at = _on_shape(group, shape, hardware) if group is not None else np.empty(0, np.int64)
        if group is None or not at.size:
            return None
        index = int(at[0])
        return self._curve(int(group.positions[index]), float(group.candidates.msrr_rps[index]), hardware)

    def _curve(self, position: int, msrr: float, hardware: Hardware) -> ServiceCurve:
        input_tokens, output_tokens = (int(n) for n in self._lengths[position])
        engine_idle = float(self._engine_idle_w[position])
        return service_curve(self._load_points(position), msrr_rps=msrr, board_idle_w=hardware.idle_power_w,
                             engine_idle_power_w=engine_idle if math.isfinite(engine_idle) else None,
                             input_tokens=input_tokens, output_tokens=output_tokens)

    def _length_factors(
        self, groups: dict[QueryType, _Group], rows: dict[QueryType, np.ndarray], lengths: ServedLengths
    ) -> dict[QueryType, np.ndarray]:
        """Per type, each aligned row's cost for a request of the served lengths relative to its profiled one."""
        factors = {}
        for query_type, at in rows.items():
            served = lengths.by_type.get(query_type)
            if served is None:
                continue
            positions = groups[query_type].positions[at]
            shares = np.array([self._prefill_share(int(position)) for position in positions])
            profiled = self._lengths[positions]
            factors[query_type] = length_factor(shares, served[0], served[1], profiled[:, 0], profiled[:, 1])
        return factors

    def _prefill_share(self, position: int) -> float:
        """A row's prefill share (curves.prefill_share), from its load points on first use."""
        share = self._prefill_shares.get(position)
        if share is None:
            share = self._prefill_shares[position] = prefill_share(self._load_points(position))
        return share

    def _load_points(self, position: int) -> LoadPoints:
        """The trial's points, or its row alone (at its MSRR) when the table has none for it."""
        code = self._row_codes[position]
        lo = int(np.searchsorted(self._point_codes, code, side="left"))
        hi = int(np.searchsorted(self._point_codes, code, side="right"))
        if hi == lo:
            return _row_as_point(self._rows.iloc[position])
        columns = self._point_columns
        return LoadPoints(**{name: values[lo:hi] for name, values in columns.items()})

    def _msrr_under_slo(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each row's MSRR under the SLO (its best passing point's throughput, the first such point on a tie) and
        the power there; a row without points keeps its own figures where its SLO was no looser."""
        columns, codes = self._point_columns, self._point_codes
        trials = int(max(codes.max(initial=-1), self._row_codes.max(initial=-1))) + 1
        passing = np.flatnonzero(columns["e2e_p95_s"] <= self.slo_p95_e2e_s)
        ranked = passing[np.lexsort((passing, -columns["requests_per_s"][passing], codes[passing]))]
        first = ranked[np.unique(codes[ranked], return_index=True)[1]]
        best_rps, best_power = np.zeros(trials), np.full(trials, np.nan)
        best_rps[codes[first]] = columns["requests_per_s"][first]
        best_power[codes[first]] = columns["power_w"][first]
        has_points = np.zeros(trials, dtype=bool)
        has_points[codes] = True
        on_row = self._row_codes
        row_holds = (rows["slo_p95_e2e_s"] <= self.slo_p95_e2e_s).to_numpy()
        msrr = np.where(has_points[on_row], best_rps[on_row],
                        np.where(row_holds, rows["msrr_req_s"].to_numpy(dtype=float), 0.0))
        power = np.where(has_points[on_row], best_power[on_row],
                         rows["mean_power_w"].to_numpy(dtype=float, na_value=np.nan))
        return msrr, power

    def _unloaded_p95(self, rows: pd.DataFrame) -> np.ndarray:
        """Per row, the P95 at its lowest measured load: a request on an otherwise idle replica.

        This is what min-latency ranks: under load Algorithm 1 holds every
        configuration within the SLO, so what sets configurations apart is how
        fast one serves a request it need not queue (a full GPU against a MIG
        slice, a higher clock). A row without load points gives its P95 at
        the MSRR, as its service curve does: pessimistic, never optimistic.
        """
        columns, codes = self._point_columns, self._point_codes
        trials = int(max(codes.max(initial=-1), self._row_codes.max(initial=-1))) + 1
        # Per trial, its point of lowest concurrency (the first in order on a tie).
        ranked = np.lexsort((np.arange(len(codes)), columns["concurrency"], codes))
        lowest = ranked[np.unique(codes[ranked], return_index=True)[1]]
        p95_by_trial = np.full(trials, np.nan)
        p95_by_trial[codes[lowest]] = columns["e2e_p95_s"][lowest]
        p95 = p95_by_trial[self._row_codes]
        return np.where(np.isfinite(p95), p95, rows["e2e_p95_s"].to_numpy(dtype=float, na_value=np.nan))

    @staticmethod
    def _group(
        rows: pd.DataFrame, msrr: np.ndarray, power: np.ndarray, p95: np.ndarray
    ) -> dict[tuple[str, str], _Group]:
        kind = rows["hardware_kind"].to_numpy(dtype=object)
        mig = rows["mig_profile"].to_numpy(dtype=object)
        shape = np.where(kind == "mig", mig, np.where(kind == "cpu", CPU, FULL_GPU))
        clock = rows["clock_mhz"].astype("Float64").fillna(DEFAULT_CLOCK).to_numpy(dtype=np.int64)
        batch = rows["max_num_seqs"].to_numpy(dtype=np.int64)
        variant = rows["variant"].to_numpy(dtype=object)
        limit = rows["power_limit_w"].astype("Float64").fillna(DEFAULT_POWER_LIMIT).to_numpy(dtype=np.int64)
        tensor_parallel = rows["tensor_parallel_size"].to_numpy(dtype=np.int64)
        config_key = pd.MultiIndex.from_arrays([clock, limit, batch, variant]).factorize()[0].astype(np.int64) \
            if len(rows) else np.empty(0, np.int64)
        accelerator = rows["accelerator_type"].to_numpy(dtype=object)
        unknown = rows["accelerator_type"].isna().to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            energy = np.where(msrr > 0, power / msrr, np.nan)
        groups: dict[tuple[str, str], _Group] = {}
        for key, positions in rows.groupby(["model_id", "query_type"], sort=False).indices.items():
            at = np.sort(positions)
            groups[(str(key[0]), str(key[1]))] = _Group(
                positions=at,
                shape=shape[at],
                accelerator_type=accelerator[at],
                accelerator_unknown=unknown[at],
                tensor_parallel=tensor_parallel[at],
                candidates=Candidates(
                    clock_mhz=clock[at], power_limit_w=limit[at], max_num_seqs=batch[at], variant=variant[at],
                    msrr_rps=msrr[at], energy_per_request_j=energy[at], p95_unloaded_s=p95[at],
                ),
                power_at_msrr_w=power[at],
                config_key=config_key[at],
            )
        return groups


def _on_shape(group: _Group, shape: str, hardware: Hardware) -> np.ndarray:
    """Positions of rows measured on this shape of the hardware's devices, at its tensor-parallel degree; MIG rows
    of real sweeps carry no accelerator type."""
    key = _shape_key(shape, hardware)
    found = group.on_shape.get(key)
    if found is None:
        found = group.on_shape[key] = np.flatnonzero(_matches(group, shape, hardware))
    return found


def _shape_key(shape: str, hardware: Hardware) -> tuple[str, str | None, int]:
    return (shape, None if shape == CPU else hardware.accelerator_type, _degree(shape, hardware))


def _degree(shape: str, hardware: Hardware) -> int:
    """The tensor-parallel degree of the shape's rows: the whole unit's, or 1 for a MIG slice."""
    return hardware.tensor_parallel_size if shape == hardware.whole_shape else 1


def _first_of_each_configuration(group: _Group, shape: str, hardware: Hardware) -> tuple[np.ndarray, Candidates]:
    """Positions of the first row of each configuration on the shape, in table order, and their candidates
    (cached like `_on_shape`)."""
    key = _shape_key(shape, hardware)
    found = group.first_rows.get(key)
    if found is None:
        at = _on_shape(group, shape, hardware)
        first = at[np.sort(np.unique(group.config_key[at], return_index=True)[1])]
        found = group.first_rows[key] = (first, group.candidates.subset(first))
    return found


def _matches(group: _Group, shape: str, hardware: Hardware) -> np.ndarray:
    on_shape = (group.shape == shape) & (group.tensor_parallel == _degree(shape, hardware))
    if hardware.accelerator_type is None or shape == CPU:
        return on_shape
    same_device = group.accelerator_type == hardware.accelerator_type
    if shape == FULL_GPU:
        return on_shape & same_device
    return on_shape & (same_device | group.accelerator_unknown)


def route_name(model_id: str, query_type: QueryType) -> str:
    """Planner routes are one per (model, query type), as in the paper."""
    return f"{model_id}/{query_type.value}"


def route_capacity_at_mix(
    route: str,
    choices: list[ShapeChoices],
    shares: Shares,
    cost: Mapping[str, Mapping[QueryType, float]] | None = None,
    *,
    at_mix: bool = True,
) -> RouteCapacity:
    """A route's capacity per shape from its shared choices; each option keeps its types' MSRRs.

    `cost[shape][type]` is the type's mean request cost relative to its
    profiled request (1 when absent), so each type's MSRR is the one an
    operator would have measured at the traffic's own lengths. With `at_mix`
    the route MSRR is the one at `shares` (oasis_ray.scaling.mix); without,
    the slowest type's, safe for any mix until the rates per type are known.
    """
    options = []
    total = sum(shares.values())
    for by_type in choices:
        any_choice = next(iter(by_type.values()))
        shape = any_choice.option.shape
        factors = (cost or {}).get(shape, {})
        effective = {qt: choice.option.msrr_rps / factors.get(qt, 1.0) for qt, choice in by_type.items()}
        powers = [choice.option.power_w for choice in by_type.values()]
        power = None if any(p is None for p in powers) else math.fsum(
            shares[qt] / total * p for qt, p in zip(by_type, powers) if p is not None)
        options.append(ShapeOption(
            shape=shape, gpu_fraction=any_choice.option.gpu_fraction, msrr_rps=min(effective.values()),
            msrr_by_type=effective, power_w=power, clock_mhz=any_choice.option.clock_mhz,
            power_limit_w=any_choice.option.power_limit_w, max_num_seqs=any_choice.option.max_num_seqs,
            variant=any_choice.option.variant, tensor_parallel_size=any_choice.option.tensor_parallel_size,
        ))
    capacity = RouteCapacity(route=route, options=tuple(options))
    return mix_capacity(capacity, shares) if at_mix else capacity


def _row_as_point(row: pd.Series) -> LoadPoints:
    def one(name: str) -> np.ndarray:
        value = row[name]
        return np.asarray([math.nan if pd.isna(value) else float(value)])

    return LoadPoints(
        concurrency=np.asarray([1.0]),
        requests_per_s=one("msrr_req_s"),
        ttft_p50_s=one("ttft_p50_s"),
        e2e_p50_s=one("e2e_p50_s"),
        e2e_p95_s=one("e2e_p95_s"),
        e2e_p99_s=one("e2e_p99_s"),
        power_w=one("mean_power_w"),
    )


def _mixed(
    groups: dict[QueryType, _Group], rows: dict[QueryType, np.ndarray], shares: Shares,
    costs: Mapping[QueryType, np.ndarray] | None = None,
) -> Candidates:
    """Each aligned configuration as the mix sees it: harmonic MSRR, share-weighted energy per request and P95.

    `costs[type]` is each row's request cost relative to its profiled one (1 where absent): a request of the
    type takes that many times the row's seconds and energy.
    """
    total = sum(shares.values())
    first = next(iter(groups.values())).candidates.subset(next(iter(rows.values())))
    cost = costs or {}

    def weighted(column: str, by_cost: bool = False) -> np.ndarray:
        return sum(shares[qt] / total * getattr(groups[qt].candidates, column)[at]
                   * (cost.get(qt, 1.0) if by_cost else 1.0) for qt, at in rows.items())

    # An infeasible type (MSRR 0) makes the mix's seconds per request infinite, so its MSRR 0.
    with np.errstate(divide="ignore"):
        seconds = sum(shares[qt] / total * cost.get(qt, 1.0) / groups[qt].candidates.msrr_rps[at]
                      for qt, at in rows.items())
    return replace(first, msrr_rps=1.0 / seconds, energy_per_request_j=weighted("energy_per_request_j", by_cost=True),
                   p95_unloaded_s=weighted("p95_unloaded_s"))


def _aligned_configurations(
    keys_by_type: dict[QueryType, np.ndarray],
) -> tuple[np.ndarray, dict[QueryType, np.ndarray]] | None:
    """Configurations (keys in each type's table order) measured for every type, in the first type's order.

    Returns the positions, among the first type's keys, of each such configuration's first row, and for
    every type the position of its own first row of it; None when no configuration was measured for all.
    """
    first_type, first_keys = next(iter(keys_by_type.items()))
    firsts = {qt: np.unique(keys, return_index=True) for qt, keys in keys_by_type.items()}
    first_of_first = np.zeros(len(first_keys), dtype=bool)
    first_of_first[firsts[first_type][1]] = True
    in_all = np.logical_and.reduce([_members(first_keys, unique) for unique, _ in firsts.values()])
    common = np.flatnonzero(first_of_first & in_all)
    if not common.size:
        return None
    positions = {qt: at[np.searchsorted(unique, first_keys[common])] for qt, (unique, at) in firsts.items()}
    return common, positions


def _members(keys: np.ndarray, unique: np.ndarray) -> np.ndarray:
    """np.isin for a handful of keys against a sorted handful, without isin's per-call set-up."""
    at = np.minimum(np.searchsorted(unique, keys), len(unique) - 1)
    return unique[at] == keys


def _checked(shares: Shares) -> Shares:
    if not shares or min(shares.values()) <= 0:
        raise ValueError(f"shares: every listed query type needs a positive share, got {dict(shares)}")
    return shares
