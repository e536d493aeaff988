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

from oasis_ray.costs.config_choice import DEFAULT_CLOCK, Candidates, Selection, choose_configuration
from oasis_ray.costs.curves import LoadPoints, ServiceCurve, service_curve
from oasis_ray.profiling.hct import HardwareCostTable
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.mix import mix_capacity
from oasis_ray.scaling.shapes import CPU, FULL_GPU, RouteCapacity, ShapeOption, default_gpu_fraction


Shares = Mapping[QueryType, float]
ENGINE_IDLE_COLUMN = "engine_idle_power_w"


@dataclass(frozen=True)
class Hardware:
    """The devices a route may run on: a whole unit, the MIG shapes allowed on it, and the board's idle power
    (the board with no engine loaded, MIG on or off).

    The planner and simulator derive it from a device pool (DevicePool.hardware),
    the live app from a route's configured shapes (oasis_ray.costs.live).
    `accelerator_type` None accepts any GPU row; MIG rows of real sweeps carry
    no accelerator type and are accepted for any.
    """

    whole_shape: str
    accelerator_type: str | None = None
    mig_shapes: tuple[str, ...] = ()
    idle_power_w: float | None = None

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

    @functools.cached_property
    def curve(self) -> ServiceCurve:
        return self.build_curve()


ShapeChoices = dict[QueryType, ShapeChoice]
"""One shape's choice for each query type of a route: one configuration, each type's own row at it."""


@dataclass(frozen=True)
class _Group:
    """One (model, query type)'s ok rows as arrays, in table order."""

    positions: np.ndarray
    shape: np.ndarray
    accelerator_type: np.ndarray
    accelerator_unknown: np.ndarray
    candidates: Candidates
    power_at_msrr_w: np.ndarray
    # One integer per (clock, batch, variant), equal across groups for the same configuration.
    config_key: np.ndarray
    # Rows per (shape, accelerator type) asked for so far: a plan asks the same few for hundreds of routes.
    on_shape: dict[tuple[str, str | None], np.ndarray] = field(default_factory=dict, compare=False)
    first_rows: dict[tuple[str, str, str | None], tuple[np.ndarray, Candidates]] = field(default_factory=dict,
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
        # Schema 2 tables give each row the board's power with the engine loaded and idle; older ones do not.
        self._engine_idle_w = (rows[ENGINE_IDLE_COLUMN].to_numpy(dtype=float, na_value=np.nan)
                               if ENGINE_IDLE_COLUMN in rows else np.full(len(rows), np.nan))
        msrr, power = self._msrr_under_slo(rows)
        self._groups = self._group(rows, msrr, power)

    def shape_choices(
        self, model_id: str, query_type: QueryType, hardware: Hardware, selection: Selection
    ) -> list[ShapeChoice]:
        """Every shape of the hardware on which some configuration meets the SLO, whole unit first."""
        return [choices[query_type] for choices in self.shared_shape_choices(model_id, {query_type: 1.0}, hardware,
                                                                              selection)]

    def shared_shape_choices(
        self, model_id: str, shares: Shares, hardware: Hardware, selection: Selection
    ) -> list[ShapeChoices]:
        """Per shape, whole unit first, one configuration every listed query type runs, chosen for their mix.

        A replica runs one engine configuration whatever type it serves, so a
        route of several types must pick one (clock, batch, variant) for all
        of them; each type keeps its own measured row at that configuration.
        The choice is the selection's, over the mix's MSRR (harmonic by share:
        a replica serves one request per sum(share / MSRR) seconds) and energy
        per request (sum of share x the type's power / MSRR). A shape appears
        only when some configuration measured for every type meets the SLO
        for all of them (`why_not` says why one does not).
        """
        if not shares or min(shares.values()) <= 0:
            raise ValueError(f"shares: every listed query type needs a positive share, got {dict(shares)}")
        groups = self._model_groups(model_id, shares)
        if groups is None:
            return []
        choices = []
        for shape in hardware.shapes:
            on_shape = {qt: _on_shape(group, shape, hardware) for qt, group in groups.items()}
            if any(not at.size for at in on_shape.values()):
                continue
            if len(groups) == 1:
                # One type: its own rows are the mix (its share is 1), so they are chosen from as they stand.
                ((qt, group),) = groups.items()
                at, mixed = _first_of_each_configuration(group, shape, hardware)
                rows = {qt: at}
            else:
                aligned = _aligned_configurations({qt: groups[qt].config_key[at] for qt, at in on_shape.items()})
                if aligned is None:
                    continue
                _, positions = aligned
                rows = {qt: on_shape[qt][positions[qt]] for qt in groups}
                mixed = _mixed(groups, rows, shares)
            chosen = choose_configuration(mixed, selection)
            if chosen is not None:
                choices.append({qt: self._choice(groups[qt], int(at[chosen]), shape, hardware) for qt, at in rows.items()})
        return choices

    def why_not(self, model_id: str, query_type: QueryType, shape: str, hardware: Hardware, selection: Selection) -> str:
        """Why a shape offers the type no configuration: no row the selection may use, or none meets the SLO."""
        group = self._groups.get((model_id, query_type.value))
        on_shape = _on_shape(group, shape, hardware) if group is not None else np.empty(0, np.int64)
        if not on_shape.size:
            return f"the HCT has no successful row for {query_type.value} on {shape}"
        candidates = _subset(group.candidates, on_shape)
        if choose_configuration(candidates, selection) is not None:
            return f"{query_type.value} is served, but the route's other types were measured at other configurations"
        reachable = replace(candidates, msrr_rps=np.ones(len(on_shape)))
        if choose_configuration(reachable, selection) is None:
            return f"the HCT has no successful row for {query_type.value} at {selection}"
        return f"the HCT never meets the SLO (P95 <= {self.slo_p95_e2e_s:g} s) for {query_type.value} at {selection}"

    def route_capacity(
        self, model_id: str, query_type: QueryType, hardware: Hardware, selection: Selection
    ) -> tuple[RouteCapacity, dict[str, ShapeChoice]] | None:
        """A one-type route's capacity for Algorithm 1; None when the whole unit cannot meet the SLO."""
        choices = self.shape_choices(model_id, query_type, hardware, selection)
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
        clock = int(group.candidates.clock_mhz[index])
        # Every field comes from a row the table's loader validated, and a chosen row's MSRR is positive: built
        # without re-validation, since a 4,000-route plan builds some 13,000 of these.
        option = ShapeOption.model_construct(
            shape=shape,
            gpu_fraction=default_gpu_fraction(shape),
            msrr_rps=msrr,
            msrr_by_type={},
            power_w=power if math.isfinite(power) and power > 0 else None,
            clock_mhz=None if clock == DEFAULT_CLOCK else clock,
            max_num_seqs=int(group.candidates.max_num_seqs[index]),
            variant=str(group.candidates.variant[index]),
        )

        return ShapeChoice(option=option, trial_id=str(self._trial_ids[position]),
                           build_curve=functools.partial(self._curve, position, msrr, hardware))

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

    @staticmethod
    def _group(rows: pd.DataFrame, msrr: np.ndarray, power: np.ndarray) -> dict[tuple[str, str], _Group]:
        kind = rows["hardware_kind"].to_numpy(dtype=object)
        mig = rows["mig_profile"].to_numpy(dtype=object)
        shape = np.where(kind == "mig", mig, np.where(kind == "cpu", CPU, FULL_GPU))
        clock = rows["clock_mhz"].astype("Float64").fillna(DEFAULT_CLOCK).to_numpy(dtype=np.int64)
        batch = rows["max_num_seqs"].to_numpy(dtype=np.int64)
        variant = rows["variant"].to_numpy(dtype=object)
        config_key = pd.MultiIndex.from_arrays([clock, batch, variant]).factorize()[0].astype(np.int64) \
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
                candidates=Candidates(
                    clock_mhz=clock[at], max_num_seqs=batch[at], variant=variant[at], msrr_rps=msrr[at],
                    energy_per_request_j=energy[at],
                ),
                power_at_msrr_w=power[at],
                config_key=config_key[at],
            )
        return groups


def _on_shape(group: _Group, shape: str, hardware: Hardware) -> np.ndarray:
    """Positions of rows measured on this shape of the hardware's devices; MIG rows of real sweeps carry no
    accelerator type."""
    key = (shape, None if shape == CPU else hardware.accelerator_type)
    found = group.on_shape.get(key)
    if found is None:
        found = group.on_shape[key] = np.flatnonzero(_matches(group, shape, hardware))
    return found


def _first_of_each_configuration(group: _Group, shape: str, hardware: Hardware) -> tuple[np.ndarray, Candidates]:
    """Positions of the first row of each configuration on the shape, in table order, and their candidates
    (cached like `_on_shape`)."""
    key = ("first", shape, None if shape == CPU else hardware.accelerator_type)
    found = group.first_rows.get(key)
    if found is None:
        at = _on_shape(group, shape, hardware)
        first = at[np.sort(np.unique(group.config_key[at], return_index=True)[1])]
        found = group.first_rows[key] = (first, _subset(group.candidates, first))
    return found


def _matches(group: _Group, shape: str, hardware: Hardware) -> np.ndarray:
    on_shape = group.shape == shape
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
            max_num_seqs=any_choice.option.max_num_seqs, variant=any_choice.option.variant,
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


def _mixed(groups: dict[QueryType, _Group], rows: dict[QueryType, np.ndarray], shares: Shares) -> Candidates:
    """Each aligned configuration as the mix sees it: harmonic MSRR and share-weighted energy per request."""
    total = sum(shares.values())
    first = _subset(next(iter(groups.values())).candidates, next(iter(rows.values())))
    # An infeasible type (MSRR 0) makes the mix's seconds per request infinite, so its MSRR 0.
    with np.errstate(divide="ignore"):
        seconds = sum(shares[qt] / total / groups[qt].candidates.msrr_rps[at] for qt, at in rows.items())
    energy = sum(shares[qt] / total * groups[qt].candidates.energy_per_request_j[at] for qt, at in rows.items())
    return Candidates(clock_mhz=first.clock_mhz, max_num_seqs=first.max_num_seqs, variant=first.variant,
                      msrr_rps=1.0 / seconds, energy_per_request_j=energy)


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


def _subset(candidates: Candidates, at: np.ndarray) -> Candidates:
    return Candidates(
        clock_mhz=candidates.clock_mhz[at],
        max_num_seqs=candidates.max_num_seqs[at],
        variant=candidates.variant[at],
        msrr_rps=candidates.msrr_rps[at],
        energy_per_request_j=candidates.energy_per_request_j[at],
    )
