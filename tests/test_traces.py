"""Trace loading, validation, transforms and summary, checked against the real Azure 2023 traces.

The real-trace tests pin the published figures (shared/traces/README.md) so a
loader change that shifts the query-type mix is caught; synthetic CSVs in
tmp_path pin exact values and every refusal path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oasis_ray.query_types import QueryType, classify
from oasis_ray.planning.traces import (
    Trace,
    TraceError,
    load_azure_trace,
    load_burstgpt_trace,
    query_mix,
    summary,
)

TRACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"

# The files hold one data row more than the README's counts (8,818 / 19,365),
# which look like `wc -l` minus the header on files without a final newline.
AZURE_ROWS = {"code": 8_819, "conv": 19_366}
README_MIX_PCT = {
    "code": {QueryType.SISO: 22.9, QueryType.SILO: 0.1, QueryType.LISO: 76.8, QueryType.LILO: 0.3},
    "conv": {QueryType.SISO: 39.4, QueryType.SILO: 0.0, QueryType.LISO: 57.4, QueryType.LILO: 3.2},
}


def _azure_path(kind: str) -> Path:
    path = TRACES_DIR / f"azure_llm_2023_{kind}.csv"
    if not path.exists():
        pytest.skip(f"real Azure trace not found at {path} (expected ../shared/traces beside the repo)")
    return path


@pytest.fixture(scope="module", params=["code", "conv"])
def azure(request: pytest.FixtureRequest) -> tuple[str, Trace]:
    return request.param, load_azure_trace(_azure_path(request.param))


def _write(tmp_path: Path, header: str, rows: list[str], name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _arrivals(trace: Trace) -> list[float]:
    return trace.requests["arrival_s"].tolist()


# --- real Azure traces -------------------------------------------------------


def test_azure_trace_loads_every_row_sorted_from_zero(azure: tuple[str, Trace]) -> None:
    kind, trace = azure
    arrivals = trace.requests["arrival_s"].to_numpy()
    assert len(trace) == AZURE_ROWS[kind]
    assert trace.dropped_zero_token_rows == 0
    assert arrivals[0] == 0.0
    assert np.all(np.diff(arrivals) >= 0)
    assert trace.requests.dtypes.to_dict() == {
        "arrival_s": np.dtype("float64"), "input_tokens": np.dtype("int64"), "output_tokens": np.dtype("int64"),
    }
    assert trace.requests[["input_tokens", "output_tokens"]].to_numpy().min() >= 1


def test_azure_arrivals_match_an_independent_parse(azure: tuple[str, Trace]) -> None:
    kind, trace = azure
    raw = pd.read_csv(_azure_path(kind), dtype={"TIMESTAMP": str})
    stamps = pd.to_datetime(raw["TIMESTAMP"])
    expected = (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()
    assert np.allclose(trace.requests["arrival_s"].to_numpy(), expected, rtol=0, atol=1e-6)
    assert trace.requests["input_tokens"].tolist() == raw["ContextTokens"].tolist()
    assert trace.requests["output_tokens"].tolist() == raw["GeneratedTokens"].tolist()
    assert trace.source.first_timestamp == raw["TIMESTAMP"].iloc[0]
    assert trace.source.format == "azure_llm_2023"


def test_azure_query_mix_reproduces_readme_to_a_tenth_of_a_point(azure: tuple[str, Trace]) -> None:
    kind, trace = azure
    mix = summary(trace, tau=500).query_mix
    assert {qt: round(100 * share, 1) for qt, share in mix.items()} == README_MIX_PCT[kind]
    assert math.isclose(sum(mix.values()), 1.0)


def test_vectorised_mix_agrees_with_classify_row_by_row(azure: tuple[str, Trace]) -> None:
    _, trace = azure
    rows = trace.requests[["input_tokens", "output_tokens"]].itertuples(index=False)
    counted = pd.Series([classify(int(i), int(o), 500) for i, o in rows]).value_counts(normalize=True)
    mix = summary(trace).query_mix
    assert {qt: mix[qt] for qt in QueryType} == {qt: float(counted.get(qt, 0.0)) for qt in QueryType}


def test_azure_summary_figures(azure: tuple[str, Trace]) -> None:
    kind, trace = azure
    s = summary(trace, bin_s=60)
    arrivals = trace.requests["arrival_s"].to_numpy()
    gaps = np.diff(arrivals)
    assert s.requests == AZURE_ROWS[kind]
    assert s.duration_s == arrivals[-1]
    assert s.mean_rate_rps == pytest.approx(AZURE_ROWS[kind] / arrivals[-1])
    assert s.interarrival_cv > 0
    assert s.interarrival_cv == pytest.approx(gaps.std() / gaps.mean())
    assert len(s.rate_per_bin_rps) == math.ceil(arrivals[-1] / 60)
    assert sum(s.rate_per_bin_rps) * 60 == pytest.approx(AZURE_ROWS[kind])
    assert s.input_tokens.p50 == np.percentile(trace.requests["input_tokens"], 50)
    assert s.output_tokens.p95 == np.percentile(trace.requests["output_tokens"], 95)
    assert s.output_tokens.mean == pytest.approx(trace.requests["output_tokens"].mean())


def test_code_traffic_is_far_burstier_than_conversation() -> None:
    code = summary(load_azure_trace(_azure_path("code")))
    conv = summary(load_azure_trace(_azure_path("conv")))
    assert code.interarrival_cv == pytest.approx(13.151, abs=1e-3)
    assert conv.interarrival_cv == pytest.approx(1.094, abs=1e-3)


# --- transforms --------------------------------------------------------------


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_scaling_multiplies_the_rate_and_keeps_shape(azure: tuple[str, Trace], factor: float) -> None:
    _, trace = azure
    before, after = summary(trace), summary(trace.scaled(factor))
    assert after.mean_rate_rps == pytest.approx(before.mean_rate_rps * factor)
    assert after.duration_s == pytest.approx(before.duration_s / factor)
    assert after.interarrival_cv == pytest.approx(before.interarrival_cv)
    assert after.query_mix == before.query_mix
    assert trace.scaled(factor).source.transforms == (f"scaled({factor!r})",)
    assert trace.requests["arrival_s"].iloc[-1] == before.duration_s


@pytest.mark.parametrize("factor", [0.0, -1.0, math.nan, math.inf])
def test_scaling_refuses_non_positive_or_non_finite_factors(azure: tuple[str, Trace], factor: float) -> None:
    _, trace = azure
    with pytest.raises(ValueError, match="rate_factor must be a finite number > 0"):
        trace.scaled(factor)


def test_window_cuts_half_open_and_rezeroes_on_first_request(azure: tuple[str, Trace]) -> None:
    _, trace = azure
    arrivals = trace.requests["arrival_s"].to_numpy()
    inside = (arrivals >= 600) & (arrivals < 1200)
    cut = trace.window(600, 1200)
    cut_arrivals = cut.requests["arrival_s"].to_numpy()
    assert len(cut) == int(inside.sum())
    assert cut_arrivals[0] == 0.0
    assert cut_arrivals[-1] < 600
    assert np.allclose(cut_arrivals, arrivals[inside] - arrivals[inside][0])
    assert cut.requests["input_tokens"].tolist() == trace.requests["input_tokens"][inside].tolist()
    assert cut.source.transforms == ("window(600, 1200)",)


def test_consecutive_windows_partition_the_trace(azure: tuple[str, Trace]) -> None:
    _, trace = azure
    end = trace.requests["arrival_s"].iloc[-1] + 1
    assert len(trace.window(0, 1800)) + len(trace.window(1800, end)) == len(trace)


def test_window_refuses_bad_bounds_and_empty_cuts(tmp_path: Path) -> None:
    trace = load_azure_trace(_write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,10,10", "2023-11-16 18:00:10.0000000,10,10",
    ]))
    with pytest.raises(ValueError, match="0 <= start_s < end_s"):
        trace.window(5, 5)
    with pytest.raises(ValueError, match="0 <= start_s < end_s"):
        trace.window(-1, 5)
    with pytest.raises(ValueError, match="holds no requests"):
        trace.window(1, 9)


# --- summary on exact values ---------------------------------------------------


def test_summary_exact_values_on_a_small_trace(tmp_path: Path) -> None:
    trace = load_azure_trace(_write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,100,10",
        "2023-11-16 18:00:01.0000000,600,20",
        "2023-11-16 18:00:02.0000000,200,700",
        "2023-11-16 18:00:04.0000000,900,900",
    ]))
    s = summary(trace, tau=500, bin_s=3)
    assert s.requests == 4
    assert s.duration_s == 4.0
    assert s.mean_rate_rps == 1.0
    assert s.rate_per_bin_rps == [1.0, pytest.approx(1 / 3)]
    assert s.query_mix == {QueryType.SISO: 0.25, QueryType.SILO: 0.25, QueryType.LISO: 0.25, QueryType.LILO: 0.25}
    assert s.interarrival_cv == pytest.approx(math.sqrt(2 / 9) / (4 / 3))
    assert (s.input_tokens.mean, s.input_tokens.p50, s.input_tokens.p95) == (450.0, 400.0, pytest.approx(855.0))
    assert s.dropped_zero_token_rows == 0


def test_last_arrival_on_a_bin_edge_joins_the_last_bin(tmp_path: Path) -> None:
    trace = load_azure_trace(_write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,1,1", "2023-11-16 18:01:00.0000000,1,1",
    ]))
    assert summary(trace, bin_s=60).rate_per_bin_rps == [pytest.approx(2 / 60)]


def test_summary_refuses_traces_without_a_measurable_rate(tmp_path: Path) -> None:
    trace = load_azure_trace(_write(tmp_path, AZURE_HEADER, ["2023-11-16 18:00:00.0000000,1,1"]))
    with pytest.raises(ValueError, match="at least two requests"):
        summary(trace)


def test_query_mix_treats_tau_itself_as_small() -> None:
    mix = query_mix(np.array([500, 501]), np.array([500, 501]), tau=500)
    assert mix == {QueryType.SISO: 0.5, QueryType.SILO: 0.0, QueryType.LISO: 0.0, QueryType.LILO: 0.5}


# --- zero-token rows ---------------------------------------------------------


def test_zero_token_rows_are_dropped_counted_and_arrivals_rezeroed(tmp_path: Path) -> None:
    trace = load_azure_trace(_write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,0,5",
        "2023-11-16 18:00:01.5000000,40,5",
        "2023-11-16 18:00:02.0000000,40,0",
        "2023-11-16 18:00:03.2500000,70,8",
    ]))
    assert trace.dropped_zero_token_rows == 2
    assert _arrivals(trace) == [0.0, 1.75]
    assert trace.requests["input_tokens"].tolist() == [40, 70]
    assert trace.source.first_timestamp == "2023-11-16 18:00:01.5000000"
    assert summary(trace).dropped_zero_token_rows == 2


def test_a_trace_of_only_zero_token_rows_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, AZURE_HEADER, ["2023-11-16 18:00:00.0000000,0,5"])
    with pytest.raises(ValueError, match="no requests with non-zero input and output tokens"):
        load_azure_trace(path)


# --- BurstGPT ----------------------------------------------------------------

BURSTGPT_ROWS = [
    "5,ChatGPT,472,18,490,Conversation log",
    "45,ChatGPT,1087,230,1317,Conversation log",
    "45,GPT-4,300,0,300,API log",
    "118,GPT-4,417,276,693,Conversation log",
    "130.5,ChatGPT,20,600,620,API log",
]


def test_burstgpt_loads_and_drops_failed_requests(tmp_path: Path) -> None:
    trace = load_burstgpt_trace(_write(tmp_path, BURSTGPT_HEADER, BURSTGPT_ROWS, "BurstGPT_1.csv"))
    assert trace.name == "BurstGPT_1"
    assert _arrivals(trace) == [0.0, 40.0, 113.0, 125.5]
    assert trace.requests["input_tokens"].tolist() == [472, 1087, 417, 20]
    assert trace.requests["output_tokens"].tolist() == [18, 230, 276, 600]
    assert trace.dropped_zero_token_rows == 1
    assert trace.source.format == "burstgpt"
    assert trace.source.first_timestamp == "5.0"
    assert summary(trace).query_mix[QueryType.SILO] == 0.25


def test_burstgpt_model_filter_rezeroes_and_counts_only_that_model(tmp_path: Path) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, BURSTGPT_ROWS, "BurstGPT_1.csv")
    gpt4 = load_burstgpt_trace(path, model="GPT-4")
    chatgpt = load_burstgpt_trace(path, model="ChatGPT")
    assert gpt4.name == "BurstGPT_1[GPT-4]"
    assert _arrivals(gpt4) == [0.0]
    assert gpt4.requests["input_tokens"].tolist() == [417]
    assert gpt4.dropped_zero_token_rows == 1
    assert _arrivals(chatgpt) == [0.0, 40.0, 125.5]
    assert chatgpt.dropped_zero_token_rows == 0


def test_burstgpt_unknown_model_lists_the_models_present(tmp_path: Path) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, BURSTGPT_ROWS)
    with pytest.raises(ValueError, match=r"no rows for model 'GPT-5' \(models present: \['ChatGPT', 'GPT-4'\]\)"):
        load_burstgpt_trace(path, model="GPT-5")


def test_burstgpt_needs_the_model_column_only_to_filter(tmp_path: Path) -> None:
    path = _write(tmp_path, "Timestamp,Request tokens,Response tokens", ["0,10,20", "2,30,40"])
    assert _arrivals(load_burstgpt_trace(path)) == [0.0, 2.0]
    with pytest.raises(TraceError) as caught:
        load_burstgpt_trace(path, model="ChatGPT")
    assert (caught.value.line, caught.value.column) == (1, "Model")


# --- validation --------------------------------------------------------------


def _refusal(loader: Callable[[Path], Trace], path: Path) -> TraceError:
    with pytest.raises(TraceError) as caught:
        loader(path)
    return caught.value


def test_missing_column_is_refused_on_the_header_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "TIMESTAMP,ContextTokens", ["2023-11-16 18:00:00.0000000,10"])
    err = _refusal(load_azure_trace, path)
    assert isinstance(err, ValueError)
    assert (err.line, err.column, err.path) == (1, "GeneratedTokens", path)
    assert str(err).startswith(f"{path}: line 1, column 'GeneratedTokens': missing from header")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    err = _refusal(load_azure_trace, path)
    assert (err.line, err.column) == (1, "TIMESTAMP")
    assert "file is empty" in str(err)


@pytest.mark.parametrize("bad", ["2023-11-16 18:00:xx.0000000", "2023-11-16 18:00:02", "16/11/2023 18:00:02.0"])
def test_unparseable_azure_timestamp_names_line_and_column(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,10,10", "2023-11-16 18:00:01.0000000,10,10", f"{bad},10,10",
    ])
    err = _refusal(load_azure_trace, path)
    assert (err.line, err.column) == (4, "TIMESTAMP")
    assert str(err) == (f"{path}: line 4, column 'TIMESTAMP': unparseable timestamp, "
                        f"expected YYYY-MM-DD HH:MM:SS.fffffff, got {bad!r}")


def test_unparseable_burstgpt_timestamp_names_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, [BURSTGPT_ROWS[0], "soon,ChatGPT,1,1,2,API log"])
    err = _refusal(load_burstgpt_trace, path)
    assert (err.line, err.column) == (3, "Timestamp")
    assert "line 3, column 'Timestamp': unparseable timestamp, expected seconds as a number, got 'soon'" in str(err)


def test_non_monotonic_timestamps_name_the_first_row_going_back(tmp_path: Path) -> None:
    path = _write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,10,10",
        "2023-11-16 18:00:05.0000000,10,10",
        "2023-11-16 18:00:05.0000000,10,10",
        "2023-11-16 18:00:04.9000000,10,10",
        "2023-11-16 18:00:01.0000000,10,10",
    ])
    err = _refusal(load_azure_trace, path)
    assert (err.line, err.column) == (5, "TIMESTAMP")
    assert "line 5, column 'TIMESTAMP': timestamp '2023-11-16 18:00:04.9000000' is earlier than" in str(err)


def test_non_monotonic_burstgpt_timestamps_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, [BURSTGPT_ROWS[1], BURSTGPT_ROWS[0]])
    err = _refusal(load_burstgpt_trace, path)
    assert (err.line, err.column) == (3, "Timestamp")
    assert "timestamp '5' is earlier than the previous row's '45'" in str(err)


def test_negative_tokens_name_line_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, AZURE_HEADER, [
        "2023-11-16 18:00:00.0000000,10,10", "2023-11-16 18:00:01.0000000,-3,10",
    ])
    err = _refusal(load_azure_trace, path)
    assert (err.line, err.column) == (3, "ContextTokens")
    assert "line 3, column 'ContextTokens': token count must be a non-negative integer, got '-3'" in str(err)


@pytest.mark.parametrize("bad", ["12.5", "many", "-1.0"])
def test_non_integer_tokens_name_line_and_column(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, [BURSTGPT_ROWS[0], BURSTGPT_ROWS[1], f"50,GPT-4,7,{bad},7,API log"])
    err = _refusal(load_burstgpt_trace, path)
    assert (err.line, err.column) == (4, "Response tokens")
    assert f"line 4, column 'Response tokens': token count must be a non-negative integer, got {bad!r}" in str(err)


def test_integral_float_tokens_are_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, BURSTGPT_HEADER, ["0,ChatGPT,7.0,3,10,API log", "1,ChatGPT,8,4,12,API log"])
    assert load_burstgpt_trace(path).requests["input_tokens"].tolist() == [7, 8]


def test_blank_line_is_refused_at_its_own_line_number(tmp_path: Path) -> None:
    path = _write(tmp_path, AZURE_HEADER, ["2023-11-16 18:00:00.0000000,10,10", "", "2023-11-16 18:00:01.0000000,1,1"])
    err = _refusal(load_azure_trace, path)
    assert (err.line, err.column) == (3, "TIMESTAMP")
    assert "got an empty field" in str(err)
