"""The hardware cost table (HCT): its versioned schema, its files, and the one loader that reads it back.

Everything OASIS decides later (which GPU, which clock, how many replicas)
is read from this table, so a table that does not match the schema this
code understands is refused outright, with the file, row and column named,
instead of being half-read into a wrong plan.

Schema, version 2. One row per trial (a query type on one engine
configuration), the fields of `HctRow` in order; the figures at the MSRR are
those of the load point that achieved it. A second table holds every load
point (`LoadPointRow`), for latency-vs-concurrency curves and audits. Units
are in the column names: `_s` seconds, `_w` watts, `_j` joules, `_mhz` MHz,
`req_s` requests per second. Power and energy are NaN with
`power_available = false` wherever they were not measured; never 0.

Where each figure comes from (new in version 2): every row and every load
point has a `provenance`, one of
- `measured`: this project's profiler measured it (`provenance_note` None);
- `published`: a figure a publication gives, entered as published;
  `provenance_note` names the source (seed file and table) and which fields
  of the row are modelled because the publication does not give them;
- `derived`: computed, not measured; `provenance_note` names the formula or
  model version (e.g. `gpu_model v1`, params_v1.json).
A published or derived load point had no measurement window: its `window_s`
and `energy_j` are NaN and its request counts 0.

Power semantics (what the planner and simulator charge):
- a load point's `mean_power_w` is the board's power with this engine at
  that load and the rest of the board idle (for a MIG slice: the parent
  GPU's reading with only this slice busy);
- `engine_idle_power_w` is the same board with this trial's engine loaded
  and no request in it (NaN where unknown, `engine_idle_power_note` says
  why: the profiler samples NVML on a whole GPU before the first load
  point; CPU and MIG trials cannot meter it);
- a device pool's idle power is the board with no engine loaded;
- a GPU holding several slices draws idle + the sum over its slices of
  (slice power - idle).

Files in the table's directory: `hct.parquet` and `hct.csv` (the rows),
`hct_load_points.parquet` and `hct_load_points.csv`, and `hct.meta.json`
(the metadata, also embedded in both Parquet files). Bump
HCT_SCHEMA_VERSION on any change to a row model or the metadata.
"""

from __future__ import annotations

import functools
import json
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oasis_ray.validation import field_path
from oasis_ray.profiling.measurement import LoadPoint
from oasis_ray.query_types import QueryType
from oasis_ray.profiling.sweep_spec import LoadSettings, SearchSettings, SloSpec, Variant

HCT_SCHEMA_VERSION = 2
ROWS_FILE = "hct"
LOAD_POINTS_FILE = "hct_load_points"
META_FILE = "hct.meta.json"
PARQUET_META_KEY = b"oasis_hct"
_MAX_REPORTED_PROBLEMS = 10


Provenance = Literal["measured", "published", "derived"]


class HctError(ValueError):
    """A cost table that cannot be trusted; the message names the file and what is wrong."""


def _check_provenance(provenance: str, note: str | None) -> None:
    if provenance == "measured" and note is not None:
        raise ValueError("provenance_note: a measured figure needs no note; it is this project's measurement")
    if provenance != "measured" and not note:
        raise ValueError(f"provenance_note: a {provenance} figure must name its source or formula")


class HctRow(BaseModel):
    """One trial's outcome. `status = failed` rows keep the trial's identity and its error; figures are NaN."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    trial_id: str
    run_id: str = Field(description="The sweep run that measured this row; survives resumed runs.")
    provenance: Provenance
    provenance_note: str | None = Field(
        description="Published: the source and which fields are modelled. Derived: the formula or model version."
    )
    status: Literal["ok", "failed"]
    error: str | None
    model_id: str
    model_source: str
    hardware_kind: Literal["cpu", "gpu", "mig"]
    hardware: str
    accelerator_type: str | None
    mig_profile: str | None
    num_cpus: float
    device_name: str | None = Field(description="NVML's GPU name; None on CPU.")
    driver_version: str | None = Field(description="The NVIDIA driver the trial ran under; None on CPU.")
    clock_mhz: int | None = Field(description="The SM clock the sweep asked for; None for default clocks.")
    clock_locked: bool = Field(description="True only if NVML accepted the lock for the whole trial.")
    clock_note: str | None = Field(description="Why the clock was not locked, when one was asked for.")
    power_limit_w: int | None = Field(None, description="The power limit the sweep asked for (W); None: the default.")
    power_limit_set: bool = Field(False, description="True only if NVML accepted the limit for the whole trial.")
    power_limit_note: str | None = Field(None, description="Why the limit was not set, when one was asked for.")
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs the engine was sharded over; power and energy are theirs together."
    )
    max_num_seqs: int
    variant: Variant
    query_type: QueryType
    input_tokens: int
    output_tokens: int
    slo_p95_e2e_s: float
    slo_feasible: bool = Field(description="False when even concurrency 1 missed the SLO (MSRR 0).")
    msrr_req_s: float
    msrr_output_tokens_per_s: float
    msrr_concurrency: int | None
    msrr_capped: bool = Field(description="The search's max_concurrency still met the SLO: the MSRR may be higher.")
    e2e_p50_s: float
    e2e_p95_s: float
    e2e_p99_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p95_s: float
    tpot_p99_s: float
    power_available: bool
    power_note: str | None = Field(description="Why power is unavailable.")
    mean_power_w: float
    energy_per_token_j: float = Field(description="Joules per generated token at the MSRR.")
    sm_clock_mhz: float = Field(description="SM clock observed during the MSRR load point; NaN without NVML.")
    engine_idle_power_w: float = Field(
        description="Board power with this trial's engine loaded and no requests; NaN where unknown."
    )
    engine_idle_power_note: str | None = Field(description="Why engine_idle_power_w is unknown.")
    search_mode: Literal["bisection", "linear", "ladder"]
    load_points: int = Field(description="Load points the search measured: the trial's profiling cost.")
    search_wall_s: float
    engine_start_s: float
    started_at: str
    finished_at: str

    @model_validator(mode="after")
    def _consistent(self) -> HctRow:
        _check_provenance(self.provenance, self.provenance_note)
        if self.power_limit_set and self.power_limit_w is None:
            raise ValueError("power_limit_set: true, but no power_limit_w was asked for")
        if self.tensor_parallel_size != 1 and self.hardware_kind != "gpu":
            raise ValueError(f"tensor_parallel_size: {self.tensor_parallel_size} on a {self.hardware_kind} row; "
                             "only whole GPUs run tensor parallel")
        if math.isnan(self.engine_idle_power_w):
            if not self.engine_idle_power_note:
                raise ValueError("engine_idle_power_note: say why engine_idle_power_w is unknown")
        elif not self.engine_idle_power_w > 0:
            raise ValueError(f"engine_idle_power_w: {self.engine_idle_power_w} is not a power; NaN when unknown")
        if self.status == "failed":
            if not self.error:
                raise ValueError("error: a failed row must say why it failed")
            return self
        if self.error is not None:
            raise ValueError("error: set on a row whose status is ok")
        if not (math.isfinite(self.msrr_req_s) and self.msrr_req_s >= 0):
            raise ValueError(f"msrr_req_s: {self.msrr_req_s} is not a rate")
        if self.slo_feasible != (self.msrr_req_s > 0):
            raise ValueError(f"slo_feasible: {self.slo_feasible} contradicts msrr_req_s {self.msrr_req_s}")
        if self.slo_feasible and not self.e2e_p95_s <= self.slo_p95_e2e_s:
            raise ValueError(f"e2e_p95_s: {self.e2e_p95_s} at the MSRR exceeds the SLO {self.slo_p95_e2e_s}")
        if self.power_available:
            if not (math.isfinite(self.mean_power_w) and self.mean_power_w > 0):
                raise ValueError(f"mean_power_w: {self.mean_power_w} is not a measured power")
        elif not (math.isnan(self.mean_power_w) and math.isnan(self.energy_per_token_j)):
            raise ValueError("mean_power_w: must be NaN when power_available is false, never a number")
        return self


# Row columns copied from the load point that achieved the MSRR.
_FIGURES_AT_MSRR = (
    *(f"{metric}_p{p}_s" for metric in ("e2e", "ttft", "tpot") for p in (50, 95, 99)),
    "mean_power_w",
    "energy_per_token_j",
    "sm_clock_mhz",
)


def msrr_columns(best: LoadPoint | None) -> dict[str, Any]:
    """The row's MSRR and the figures measured there, from the best load point; None: the SLO was never met.

    The sweep and the paper-values table both build rows from a best point, so
    a column added to HctRow is filled in one place.
    """
    return {
        **{name: getattr(best, name) if best is not None else math.nan for name in _FIGURES_AT_MSRR},
        "slo_feasible": best is not None,
        "msrr_req_s": best.requests_per_s if best is not None else 0.0,
        "msrr_output_tokens_per_s": best.output_tokens_per_s if best is not None else 0.0,
        "msrr_concurrency": best.concurrency if best is not None else None,
    }


class LoadPointRow(LoadPoint):
    """One load level of one trial, in the order the search measured them (or the source lists them)."""

    trial_id: str
    order: int
    meets_slo: bool
    provenance: Provenance
    provenance_note: str | None

    @model_validator(mode="after")
    def _sourced(self) -> LoadPointRow:
        _check_provenance(self.provenance, self.provenance_note)
        return self


class HctMetadata(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int
    spec_name: str
    spec_hash: str
    created_at: str
    sweep_mode: str
    slo: SloSpec
    load: LoadSettings
    search: SearchSettings
    trials: int
    failed_trials: int
    device_names: list[str]
    driver_versions: list[str]
    vllm_version: str
    ray_version: str
    oasis_ray_version: str
    python_version: str


@dataclass(frozen=True)
class HardwareCostTable:
    rows: pd.DataFrame
    load_points: pd.DataFrame
    metadata: HctMetadata

    @classmethod
    def from_models(
        cls, rows: list[HctRow], load_points: list[LoadPointRow], metadata: HctMetadata
    ) -> HardwareCostTable:
        return cls(
            rows=_frame(HctRow, [row.model_dump(mode="json") for row in rows]),
            load_points=_frame(LoadPointRow, [point.model_dump(mode="json") for point in load_points]),
            metadata=metadata,
        )


def write_hct(table: HardwareCostTable, directory: Path) -> Path:
    """Write all five files; returns the path of hct.parquet (what `load_hct` takes)."""
    directory.mkdir(parents=True, exist_ok=True)
    meta_json = table.metadata.model_dump_json(indent=2)
    for model, frame, stem in ((HctRow, table.rows, ROWS_FILE), (LoadPointRow, table.load_points, LOAD_POINTS_FILE)):
        arrow = pa.Table.from_pandas(frame, schema=_arrow_schema(model), preserve_index=False)
        arrow = arrow.replace_schema_metadata({PARQUET_META_KEY: meta_json.encode()})
        _replace(directory / f"{stem}.parquet", functools.partial(pq.write_table, arrow))
        _replace(directory / f"{stem}.csv", functools.partial(frame.to_csv, index=False))
    _replace(directory / META_FILE, lambda staging: staging.write_text(meta_json + "\n"))
    return directory / f"{ROWS_FILE}.parquet"


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    """Write beside the target, then rename over it: a reader (the live autoscaler) never sees half a file."""
    staging = target.with_name(f".{target.name}.tmp")
    try:
        write(staging)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


def load_hct(path: Path) -> HardwareCostTable:
    """Read a table from its directory, hct.parquet or hct.csv; refuse any other schema version than this code's.

    The load-point table is read from the same directory in the same format.
    """
    path = Path(path)
    rows_path = path / f"{ROWS_FILE}.parquet" if path.is_dir() else path
    if rows_path.suffix not in (".parquet", ".csv") or not rows_path.name.startswith(ROWS_FILE + "."):
        raise HctError(f"{path}: expected a table directory, {ROWS_FILE}.parquet or {ROWS_FILE}.csv")
    points_path = rows_path.with_name(LOAD_POINTS_FILE + rows_path.suffix)
    for required in (rows_path, points_path):
        if not required.is_file():
            raise HctError(f"{required}: no such file")
    if rows_path.suffix == ".parquet":
        meta_text = _parquet_metadata(rows_path)
        rows, points = pd.read_parquet(rows_path), pd.read_parquet(points_path)
    else:
        meta_path = rows_path.with_name(META_FILE)
        if not meta_path.is_file():
            raise HctError(f"{meta_path}: no such file; a CSV table needs its metadata beside it")
        meta_text = meta_path.read_text()
        rows, points = pd.read_csv(rows_path), pd.read_csv(points_path)
    metadata = _parse_metadata(rows_path, meta_text)
    rows = _validated_frame(HctRow, rows, rows_path)
    points = _validated_frame(LoadPointRow, points, points_path)
    duplicated = rows["trial_id"][rows["trial_id"].duplicated()].tolist()
    if duplicated:
        raise HctError(f"{rows_path}: trial_id {duplicated[0]!r} appears more than once")
    orphans = sorted(set(points["trial_id"]) - set(rows["trial_id"]))
    if orphans:
        raise HctError(f"{points_path}: load points of trial_id {orphans[0]!r}, which has no row in {rows_path.name}")
    return HardwareCostTable(rows=rows, load_points=points, metadata=metadata)


def _parquet_metadata(path: Path) -> str:
    try:
        schema_meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as error:
        raise HctError(f"{path}: not a readable Parquet file ({error})") from None
    if PARQUET_META_KEY not in schema_meta:
        raise HctError(f"{path}: no oasis HCT metadata; it was not written by write_hct")
    return schema_meta[PARQUET_META_KEY].decode()


def _parse_metadata(path: Path, text: str) -> HctMetadata:
    """The version is checked before the rest, so a newer table says 'newer', not 'unknown field'."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise HctError(f"{path}: metadata is not JSON ({error})") from None
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version != HCT_SCHEMA_VERSION:
        raise HctError(
            f"{path}: schema_version {version!r}, but this oasis-ray reads version {HCT_SCHEMA_VERSION}; "
            "re-run the sweep's merge with a matching oasis-ray"
        )
    try:
        return HctMetadata.model_validate(raw)
    except ValidationError as error:
        problems = [f"{field_path(e['loc'])}: {e['msg']}" for e in error.errors()]
        raise HctError(f"{path}: bad metadata: " + "; ".join(problems)) from None


def _validated_frame(model: type[BaseModel], frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    expected = list(model.model_fields)
    missing = [c for c in expected if c not in frame.columns]
    unexpected = [c for c in frame.columns if c not in expected]
    if missing or unexpected:
        raise HctError(
            f"{path}: columns do not match schema version {HCT_SCHEMA_VERSION}: "
            f"missing {missing}, unexpected {unexpected}"
        )
    problems = []
    records = []
    for i, raw in enumerate(frame[expected].to_dict(orient="records")):
        try:
            records.append(model.model_validate(_nan_to_none(model, raw)).model_dump(mode="json"))
        except ValidationError as error:
            for err in error.errors():
                field = field_path(err["loc"]) or "row"
                problems.append(f"row {i}, {field}: {err['msg'].removeprefix('Value error, ')}")
    if problems:
        shown = problems[:_MAX_REPORTED_PROBLEMS]
        more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
        raise HctError(f"{path}: " + "; ".join(shown) + more)
    return _frame(model, records)


def _nan_to_none(model: type[BaseModel], raw: dict[str, Any]) -> dict[str, Any]:
    """Tables store a missing optional value as NaN (CSV cannot tell them apart); the model says None."""
    return {
        name: None
        if _optional(model.model_fields[name].annotation) and isinstance(value, float) and math.isnan(value)
        else value
        for name, value in raw.items()
    }


def _frame(model: type[BaseModel], records: list[dict[str, Any]]) -> pd.DataFrame:
    """Columns typed from the model, so an empty table and a CSV round-trip have the same dtypes."""
    arrow = pa.Table.from_pylist(records, schema=_arrow_schema(model))
    return arrow.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _arrow_schema(model: type[BaseModel]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, _arrow_type(field.annotation), nullable=True) for name, field in model.model_fields.items()]
    )


def _optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _arrow_type(annotation: Any) -> pa.DataType:
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return pa.string()
    return {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[annotation]
