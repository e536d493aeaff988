"""Real LLM request traces, normalised so the simulator and load generator replay any of them alike.

Each public trace has its own columns and clock; OASIS only needs when a request
arrived and how many tokens went in and came out, so every loader reduces its
file to `arrival_s` (seconds after the first request), `input_tokens` and
`output_tokens`. A malformed file is refused with its file name, 1-based CSV
line (the header is line 1) and column, because a silently skipped or
misparsed row would skew the arrival process and query-type mix the
experiments are built on. Loading is vectorised: traces run to millions of rows.

Sources:

- Azure LLM inference trace 2023, Azure Public Dataset, licensed CC-BY 4.0.
  Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri,
  Saeed Maleki, Ricardo Bianchini. "Splitwise: Efficient generative LLM
  inference using phase splitting", ISCA 2024.
- BurstGPT, Yuxin Wang et al. "BurstGPT: A Real-world Workload Dataset to
  Optimize LLM Serving Systems", arXiv:2401.17644 (github.com/HPMLL/BurstGPT).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from oasis_ray.query_types import DEFAULT_TAU_TOKENS, QueryType, classify

AZURE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
BURSTGPT_MODEL_COLUMN = "Model"

_HEADER_LINE = 1
_FIRST_DATA_LINE = 2
_NS_PER_S = 1_000_000_000


class TraceError(ValueError):
    """A trace file that cannot be replayed faithfully.

    It carries the exact place so a bad record can be found in a file of
    millions of lines without re-running the parse by hand.
    """

    def __init__(self, path: Path, line: int, column: str, problem: str) -> None:
        self.path = path
        self.line = line
        self.column = column
        super().__init__(f"{path}: line {line}, column {column!r}: {problem}")


@dataclass(frozen=True)
class TraceSource:
    """Where a trace came from, so a result can be traced back to the exact input.

    `first_timestamp` is the native timestamp of the source's first kept
    request (arrival 0 before any transform); `transforms` lists, in order,
    the rescaling and windowing applied since loading.
    """

    path: Path
    format: str
    first_timestamp: str
    transforms: tuple[str, ...] = ()

    def with_transform(self, step: str) -> TraceSource:
        return replace(self, transforms=(*self.transforms, step))


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests sorted by arrival, with arrival_s[0] == 0.0 whatever the source clock.

    `dropped_zero_token_rows` counts rows the loader removed because a side had
    zero tokens (for BurstGPT these are its failed requests); transforms keep
    it, since it describes the source rather than the current cut. Equality is
    identity, since comparing DataFrames elementwise has no single truth value.
    """

    name: str
    requests: pd.DataFrame
    dropped_zero_token_rows: int
    source: TraceSource = field(repr=False)

    def __len__(self) -> int:
        return len(self.requests)

    def scaled(self, rate_factor: float) -> Trace:
        """Replay the same requests rate_factor times as fast, keeping the burst shape.

        Dividing every arrival by the factor preserves the inter-arrival
        coefficient of variation and the query-type mix, which is what makes a
        load sweep over one real trace comparable across rates.
        """
        if not (math.isfinite(rate_factor) and rate_factor > 0):
            raise ValueError(f"rate_factor must be a finite number > 0, got {rate_factor!r}")
        requests = self.requests.assign(arrival_s=self.requests["arrival_s"] / rate_factor)
        return replace(self, requests=requests, source=self.source.with_transform(f"scaled({rate_factor!r})"))

    def window(self, start_s: float, end_s: float) -> Trace:
        """Cut the requests arriving in [start_s, end_s) into a trace of their own.

        The cut is re-zeroed on its first request, not on start_s, so every
        Trace keeps the same invariant (arrival_s[0] == 0.0) and a replay never
        opens with an idle gap that belongs to the cut rather than the traffic.
        The interval is half-open so consecutive windows partition a trace.
        """
        if not (0 <= start_s < end_s):
            raise ValueError(f"window needs 0 <= start_s < end_s, got [{start_s!r}, {end_s!r})")
        arrivals = self.requests["arrival_s"].to_numpy()
        lo, hi = np.searchsorted(arrivals, [start_s, end_s], side="left")
        if lo == hi:
            raise ValueError(f"window [{start_s!r}, {end_s!r}) of trace {self.name!r} holds no requests")
        cut = self.requests.iloc[lo:hi].reset_index(drop=True)
        cut = cut.assign(arrival_s=cut["arrival_s"] - cut["arrival_s"].iloc[0])
        return replace(self, requests=cut, source=self.source.with_transform(f"window({start_s!r}, {end_s!r})"))


class TokenStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: float
    p50: float
    p95: float


class TraceSummary(BaseModel):
    """The figures that decide how a trace stresses an OASIS deployment.

    rate_per_bin_rps divides each bin's count by bin_s, so the bins sum back to
    the request count; the last bin covers only the trace's tail and reads low.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    requests: int
    duration_s: float
    mean_rate_rps: float
    bin_s: float
    rate_per_bin_rps: list[float]
    tau: int
    query_mix: dict[QueryType, float]
    interarrival_cv: float
    input_tokens: TokenStats
    output_tokens: TokenStats
    dropped_zero_token_rows: int


def load_azure_trace(path: str | os.PathLike[str]) -> Trace:
    """Load an Azure LLM inference trace 2023 CSV (TIMESTAMP, ContextTokens, GeneratedTokens).

    The timestamp format is fixed rather than inferred: inference is slow on
    millions of rows and would quietly accept a differently formatted row.
    """
    path = Path(path)
    frame = _read_columns(path, AZURE_COLUMNS, {"TIMESTAMP": str})
    raw_times = frame["TIMESTAMP"]
    parsed = pd.to_datetime(raw_times, format=AZURE_TIMESTAMP_FORMAT, errors="coerce")
    _refuse_first(path, "TIMESTAMP", parsed.isna().to_numpy(), raw_times,
                  "unparseable timestamp, expected YYYY-MM-DD HH:MM:SS.fffffff")
    times_ns = parsed.dt.as_unit("ns").to_numpy(dtype=np.int64)
    _refuse_time_reversal(path, "TIMESTAMP", times_ns, raw_times)
    return _build_trace(
        name=path.stem,
        source_format="azure_llm_2023",
        path=path,
        times=times_ns,
        units_per_s=_NS_PER_S,
        raw_times=raw_times,
        inputs=_token_counts(path, frame, "ContextTokens"),
        outputs=_token_counts(path, frame, "GeneratedTokens"),
        selected=np.ones(len(frame), dtype=bool),
    )


def load_burstgpt_trace(path: str | os.PathLike[str], model: str | None = None) -> Trace:
    """Load a BurstGPT CSV, optionally keeping one model's requests ("ChatGPT", "GPT-4").

    BurstGPT's schema (github.com/HPMLL/BurstGPT README) is Timestamp (seconds
    since 00:00:00 on the first day), Model, Request tokens, Response tokens,
    Total tokens, Log Type. Log Type is "Conversation log" or "API log": how
    the model was called, not whether the call succeeded, so it carries no
    failure marker. BurstGPT marks a failed request by Response tokens == 0
    (BurstGPT_N.csv keeps them, BurstGPT_without_fails_N.csv omits them), so
    failures leave through the zero-token rule and are counted in
    dropped_zero_token_rows. Only the columns used are required; Model only
    when filtering by it.
    """
    path = Path(path)
    columns = BURSTGPT_COLUMNS if model is None else (*BURSTGPT_COLUMNS, BURSTGPT_MODEL_COLUMN)
    frame = _read_columns(path, columns, {BURSTGPT_MODEL_COLUMN: str} if model is not None else {})
    raw_times = frame["Timestamp"]
    times = pd.to_numeric(raw_times, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    _refuse_first(path, "Timestamp", ~np.isfinite(times), raw_times,
                  "unparseable timestamp, expected seconds as a number")
    _refuse_time_reversal(path, "Timestamp", times, raw_times)
    return _build_trace(
        name=path.stem if model is None else f"{path.stem}[{model}]",
        source_format="burstgpt",
        path=path,
        times=times,
        units_per_s=1.0,
        raw_times=raw_times,
        inputs=_token_counts(path, frame, "Request tokens"),
        outputs=_token_counts(path, frame, "Response tokens"),
        selected=_model_rows(path, frame, model),
    )


def summary(trace: Trace, tau: int = DEFAULT_TAU_TOKENS, bin_s: float = 60.0) -> TraceSummary:
    """Summarise a trace; needs two requests at distinct times for a rate and a CV to exist."""
    if not (math.isfinite(bin_s) and bin_s > 0):
        raise ValueError(f"bin_s must be a finite number > 0, got {bin_s!r}")
    arrivals = trace.requests["arrival_s"].to_numpy()
    duration_s = float(arrivals[-1]) if len(arrivals) else 0.0
    if len(arrivals) < 2 or duration_s <= 0:
        raise ValueError(f"trace {trace.name!r} needs at least two requests at distinct times to summarise")
    inputs = trace.requests["input_tokens"].to_numpy()
    outputs = trace.requests["output_tokens"].to_numpy()
    return TraceSummary(
        name=trace.name,
        requests=len(arrivals),
        duration_s=duration_s,
        mean_rate_rps=len(arrivals) / duration_s,
        bin_s=bin_s,
        rate_per_bin_rps=_rate_per_bin(arrivals, duration_s, bin_s),
        tau=tau,
        query_mix=query_mix(inputs, outputs, tau),
        interarrival_cv=_interarrival_cv(arrivals),
        input_tokens=_token_stats(inputs),
        output_tokens=_token_stats(outputs),
        dropped_zero_token_rows=trace.dropped_zero_token_rows,
    )


def query_mix(inputs: np.ndarray, outputs: np.ndarray, tau: int = DEFAULT_TAU_TOKENS) -> dict[QueryType, float]:
    """Fraction of requests per query type, every type present even at zero.

    Calling classify per row would be a Python loop over millions of rows, so
    the size test runs vectorised and classify names the four outcomes from
    boundary values (tau is small, tau + 1 large); it also validates tau.
    """
    codes = (inputs > tau).astype(np.int64) * 2 + (outputs > tau).astype(np.int64)
    counts = np.bincount(codes, minlength=4)
    labels = [classify(tau + large_in, tau + large_out, tau) for large_in in (0, 1) for large_out in (0, 1)]
    total = max(len(codes), 1)
    return {label: float(count) / total for label, count in zip(labels, counts)}


def _read_columns(path: Path, columns: Sequence[str], dtypes: dict[str, type]) -> pd.DataFrame:
    """Read only the needed columns, keeping blank lines as rows so row i is CSV line i + 2."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError:
        raise TraceError(path, _HEADER_LINE, columns[0], "file is empty, expected a header row") from None
    for column in columns:
        if column not in header:
            raise TraceError(path, _HEADER_LINE, column, f"missing from header (found {list(header)})")
    return pd.read_csv(path, usecols=list(columns), dtype=dtypes, skip_blank_lines=False)


def _refuse_first(path: Path, column: str, bad: np.ndarray, raw: pd.Series, problem: str) -> None:
    """Raise for the first flagged row only: its line is enough to fix the file, listing all is not."""
    if bad.any():
        row = int(np.argmax(bad))
        raise TraceError(path, row + _FIRST_DATA_LINE, column, f"{problem}, got {_shown(raw.iloc[row])}")


def _refuse_time_reversal(path: Path, column: str, times: np.ndarray, raw: pd.Series) -> None:
    """Equal timestamps are allowed (BurstGPT has one-second resolution); going back in time is not."""
    backwards = np.diff(times) < 0
    if backwards.any():
        row = int(np.argmax(backwards)) + 1
        raise TraceError(path, row + _FIRST_DATA_LINE, column,
                         f"timestamp {_shown(raw.iloc[row])} is earlier than the previous row's "
                         f"{_shown(raw.iloc[row - 1])}; the trace must be sorted by arrival")


def _shown(value: object) -> str:
    """Quote a field as it reads in the CSV; numpy scalars' reprs would not match the file."""
    return "an empty field" if pd.isna(value) else repr(str(value))


def _token_counts(path: Path, frame: pd.DataFrame, column: str) -> np.ndarray:
    """Parse a token column as int64; a clean file stays on pandas' fast integer path."""
    raw = frame[column]
    if pd.api.types.is_integer_dtype(raw):
        counts = raw.to_numpy(dtype=np.int64)
        _refuse_first(path, column, counts < 0, raw, "token count must be a non-negative integer")
        return counts
    numbers = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(numbers) & (numbers >= 0) & (numbers == np.floor(numbers)))
    _refuse_first(path, column, bad, raw, "token count must be a non-negative integer")
    return numbers.astype(np.int64)


def _model_rows(path: Path, frame: pd.DataFrame, model: str | None) -> np.ndarray:
    """Rows of the requested model; an unknown name is an error, not an empty trace, to catch typos."""
    if model is None:
        return np.ones(len(frame), dtype=bool)
    models = frame[BURSTGPT_MODEL_COLUMN]
    selected = (models == model).to_numpy(dtype=bool, na_value=False)
    if not selected.any():
        raise ValueError(f"{path}: no rows for model {model!r} (models present: {sorted(models.dropna().unique())})")
    return selected


def _build_trace(*, name: str, source_format: str, path: Path, times: np.ndarray, units_per_s: float,
                 raw_times: pd.Series, inputs: np.ndarray, outputs: np.ndarray, selected: np.ndarray) -> Trace:
    """Drop zero-token rows and re-zero arrivals on the first kept request.

    A request with no input or no output either failed or carries no work to
    serve, and would distort the mix and token statistics; it is counted so
    the loss stays visible. Times are subtracted in their native unit before
    converting, because epoch nanoseconds as float seconds lose sub-microsecond
    precision.
    """
    has_tokens = (inputs > 0) & (outputs > 0)
    keep = selected & has_tokens
    if not keep.any():
        raise ValueError(f"{path}: no requests with non-zero input and output tokens")
    kept_times = times[keep]
    requests = pd.DataFrame({
        "arrival_s": (kept_times - kept_times[0]) / units_per_s,
        "input_tokens": inputs[keep],
        "output_tokens": outputs[keep],
    })
    source = TraceSource(path=path, format=source_format, first_timestamp=str(raw_times.iloc[int(np.argmax(keep))]))
    return Trace(name=name, requests=requests, dropped_zero_token_rows=int((selected & ~has_tokens).sum()),
                 source=source)


def _rate_per_bin(arrivals: np.ndarray, duration_s: float, bin_s: float) -> list[float]:
    """The last arrival, which may sit exactly on a bin edge, joins the last bin instead of opening one."""
    n_bins = max(1, math.ceil(duration_s / bin_s))
    bins = np.minimum((arrivals // bin_s).astype(np.int64), n_bins - 1)
    return (np.bincount(bins, minlength=n_bins) / bin_s).tolist()


def _interarrival_cv(arrivals: np.ndarray) -> float:
    """1 for Poisson arrivals; above 1 means bursts, which is what stresses an autoscaler."""
    gaps = np.diff(arrivals)
    return float(gaps.std() / gaps.mean())


def _token_stats(tokens: np.ndarray) -> TokenStats:
    return TokenStats(mean=float(tokens.mean()), p50=float(np.percentile(tokens, 50)),
                      p95=float(np.percentile(tokens, 95)))
