"""The HCT schema, its files and loader, the per-trial store, the progress line and the report's drawing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from oasis_ray.profiling.clock_control import ClockLock, PowerCap
from oasis_ray.profiling.hct import HCT_SCHEMA_VERSION, HctError, HctRow, load_hct, write_hct
from oasis_ray.profiling.measurement import EngineIdlePower, LoadPoint
from oasis_ray.profiling.msrr_search import SearchResult
from oasis_ray.profiling.sweep_plan import Trial, expand_trials, trial_resources
from oasis_ray.profiling.sweep_progress import SweepProgress, resource_demand, waiting_for
from oasis_ray.profiling.sweep_spec import CpuTarget, GpuTarget, MigTarget, SweepSpec, parse_spec
from oasis_ray.profiling.trial_outcome import (
    DeviceInfo,
    SoftwareVersions,
    TrialOutcome,
    failed_outcome,
    measured_outcome,
    merge_outcomes,
    utc_now,
)
from oasis_ray.profiling.trial_store import TrialStore, unfinished
from profiling_jobs.report import write_report

VERSIONS = SoftwareVersions(vllm="0.0-test", ray="2.60.0", oasis_ray="0.1.0", python="3.11")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def gpu_spec() -> SweepSpec:
    return parse_spec(
        {
            "name": "unit-gpu",
            "models": [{"model_id": "tiny"}],
            "hardware": [{"kind": "gpu", "accelerator_type": "H100", "clocks_mhz": [1980, 1410]}],
            "max_num_seqs": [8, 16],
            "query_types": [{"type": "LISO", "input_tokens": 200, "output_tokens": 20}, "SILO"],
            "slo": {"p95_e2e_s": 2.0},
        }
    )


def load_point(concurrency: int, p95: float, rate: float, power_w: float | None) -> LoadPoint:
    tokens_per_s = rate * 20
    return LoadPoint(
        concurrency=concurrency,
        warmup_requests=concurrency,
        measured_requests=30,
        window_s=5.0,
        e2e_p50_s=p95 * 0.6,
        e2e_p95_s=p95,
        e2e_p99_s=p95 * 1.2,
        ttft_p50_s=0.05,
        ttft_p95_s=0.1,
        ttft_p99_s=0.12,
        tpot_p50_s=0.01,
        tpot_p95_s=0.02,
        tpot_p99_s=0.03,
        requests_per_s=rate,
        output_tokens_per_s=tokens_per_s,
        power_available=power_w is not None,
        mean_power_w=power_w if power_w is not None else math.nan,
        energy_j=power_w * 5.0 if power_w is not None else math.nan,
        energy_per_token_j=power_w / tokens_per_s if power_w is not None else math.nan,
        sm_clock_mhz=1400.0 if power_w is not None else math.nan,
    )


def measured(trial: Trial, power_w: float | None = 350.0, run_id: str = "run-a") -> TrialOutcome:
    clock = trial.engine_config.clock_mhz or 1980
    points = [load_point(c, 0.4 * c * 1980 / clock, 3.0 * c * clock / 1980, power_w) for c in (1, 2, 4, 8)]
    slo = trial.slo.p95_e2e_s
    passing = [p for p in points if p.e2e_p95_s <= slo]
    result = SearchResult(
        points=points, best=max(passing, key=lambda p: p.requests_per_s), capped=False
    )
    return measured_outcome(
        trial,
        run_id=run_id,
        result=result,
        clock=ClockLock(requested_mhz=clock, locked=True, observed_sm_mhz=clock, note=None),
        cap=PowerCap(requested_w=trial.engine_config.power_limit_w, set=trial.engine_config.power_limit_w is not None,
                     note=None),
        device=DeviceInfo(device_name="NVIDIA H100 80GB HBM3", driver_version="550.54.15", power_note=None),
        engine_idle=EngineIdlePower(watts=85.0, note=None),
        engine_start_s=40.0,
        search_wall_s=12.5,
        started_at=utc_now(),
    )


@pytest.fixture
def outcomes() -> list[TrialOutcome]:
    trials = expand_trials(gpu_spec())
    return [
        *(measured(trial) for trial in trials[:-1]),
        failed_outcome(trials[-1], run_id="run-a", error="CUDA out of memory", started_at=utc_now()),
    ]


@pytest.fixture
def table_dir(tmp_path: Path, outcomes: list[TrialOutcome]) -> Path:
    write_hct(merge_outcomes(gpu_spec(), outcomes, VERSIONS), tmp_path / "hct")
    return tmp_path / "hct"


@pytest.mark.parametrize("name", ["hct.parquet", "hct.csv", "."])
def test_table_round_trips_through_parquet_csv_and_directory(table_dir: Path, name: str) -> None:
    original = load_hct(table_dir)
    back = load_hct(table_dir / name)
    pd.testing.assert_frame_equal(back.rows, original.rows)
    pd.testing.assert_frame_equal(back.load_points, original.load_points)
    assert back.metadata == original.metadata
    assert list(back.rows.columns) == list(HctRow.model_fields)
    assert back.metadata.schema_version == HCT_SCHEMA_VERSION
    assert back.metadata.device_names == ["NVIDIA H100 80GB HBM3"]
    assert back.metadata.driver_versions == ["550.54.15"]
    assert (back.metadata.trials, back.metadata.failed_trials) == (6, 1)


def test_rows_keep_their_values_and_failures_their_error(table_dir: Path) -> None:
    rows = load_hct(table_dir / "hct.csv").rows
    first = rows.iloc[0]
    assert (first["query_type"], first["clock_mhz"], first["max_num_seqs"], first["msrr_concurrency"]) == (
        "LISO",
        1980,
        8,
        4,
    )
    assert first["msrr_req_s"] == 12.0 and first["e2e_p95_s"] == pytest.approx(1.6)
    assert first["mean_power_w"] == 350.0 and bool(first["power_available"])
    failed = rows.iloc[-1]
    assert (failed["status"], failed["error"]) == ("failed", "CUDA out of memory")
    assert math.isnan(failed["msrr_req_s"]) and pd.isna(failed["msrr_concurrency"])


def test_a_table_of_another_schema_version_is_refused(table_dir: Path) -> None:
    meta = json.loads((table_dir / "hct.meta.json").read_text())
    (table_dir / "hct.meta.json").write_text(json.dumps({**meta, "schema_version": 3, "new_field": 1}))
    with pytest.raises(HctError, match=r"hct\.csv: schema_version 3, but this oasis-ray reads version 2"):
        load_hct(table_dir / "hct.csv")
    arrow = pq.read_table(table_dir / "hct.parquet")
    pq.write_table(
        arrow.replace_schema_metadata({b"oasis_hct": json.dumps({**meta, "schema_version": 0}).encode()}),
        table_dir / "hct.parquet",
    )
    with pytest.raises(HctError, match="schema_version 0"):
        load_hct(table_dir)


def test_a_version_1_table_is_refused_by_its_version_and_by_its_columns(table_dir: Path) -> None:
    """Version 1 had no provenance or engine idle power: refused whether its metadata says 1 or claims 2."""
    meta = json.loads((table_dir / "hct.meta.json").read_text())
    rows = pd.read_csv(table_dir / "hct.csv")
    version_1 = ["provenance", "provenance_note", "engine_idle_power_w", "engine_idle_power_note"]
    rows.drop(columns=version_1).to_csv(table_dir / "hct.csv", index=False)
    (table_dir / "hct.meta.json").write_text(json.dumps({**meta, "schema_version": 1}))
    with pytest.raises(HctError, match=r"schema_version 1, but this oasis-ray reads version 2"):
        load_hct(table_dir / "hct.csv")
    (table_dir / "hct.meta.json").write_text(json.dumps(meta))
    with pytest.raises(HctError, match=r"missing \['provenance', 'provenance_note', 'engine_idle_power_w', "
                                       r"'engine_idle_power_note'\]"):
        load_hct(table_dir / "hct.csv")


def test_measured_rows_and_points_say_measured_and_keep_the_engine_idle_power(table_dir: Path) -> None:
    table = load_hct(table_dir)
    ok = table.rows[table.rows["status"] == "ok"]
    assert set(table.rows["provenance"]) == {"measured"} and set(table.load_points["provenance"]) == {"measured"}
    assert table.rows["provenance_note"].isna().all()
    assert (ok["engine_idle_power_w"] == 85.0).all() and ok["engine_idle_power_note"].isna().all()
    failed = table.rows[table.rows["status"] == "failed"].iloc[0]
    assert math.isnan(failed["engine_idle_power_w"]) and failed["engine_idle_power_note"] == "trial failed"


def test_a_table_with_a_missing_or_extra_column_is_refused(table_dir: Path) -> None:
    rows = pd.read_csv(table_dir / "hct.csv")
    rows.drop(columns=["msrr_req_s"]).assign(colour="red").to_csv(table_dir / "hct.csv", index=False)
    with pytest.raises(HctError, match=r"missing \['msrr_req_s'\], unexpected \['colour'\]"):
        load_hct(table_dir / "hct.csv")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("e2e_p95_s", 2.5, "row 0, row: e2e_p95_s: 2.5 at the MSRR exceeds the SLO 2.0"),
        ("mean_power_w", 0.0, "row 0, row: mean_power_w: 0.0 is not a measured power"),
        ("status", "done", "row 0, status: Input should be 'ok' or 'failed'"),
        ("max_num_seqs", 2.5, "row 0, max_num_seqs: Input should be a valid integer"),
        ("query_type", "XXL", "row 0, query_type: Input should be 'SISO', 'SILO', 'LISO' or 'LILO'"),
        ("provenance", "guessed", "row 0, provenance: Input should be 'measured', 'published' or 'derived'"),
        ("provenance", "published", "row 0, row: provenance_note: a published figure must name its source"),
        ("provenance_note", "from memory", "row 0, row: provenance_note: a measured figure needs no note"),
        ("engine_idle_power_w", 0.0, "row 0, row: engine_idle_power_w: 0.0 is not a power; NaN when unknown"),
    ],
)
def test_a_row_that_breaks_the_schema_is_refused_with_row_and_field(
    table_dir: Path, column: str, value: object, expected: str
) -> None:
    rows = pd.read_csv(table_dir / "hct.csv")
    rows[column] = rows[column].astype(object)
    rows.loc[0, column] = value
    rows.to_csv(table_dir / "hct.csv", index=False)
    with pytest.raises(HctError, match=f"hct.csv: {expected}"):
        load_hct(table_dir / "hct.csv")


def test_power_must_be_nan_not_zero_when_unmeasured(outcomes: list[TrialOutcome]) -> None:
    row = outcomes[0].row.model_dump()
    with pytest.raises(ValueError, match="mean_power_w: must be NaN when power_available is false, never a number"):
        HctRow.model_validate({**row, "power_available": False, "mean_power_w": 0.0})


def test_duplicate_trials_orphan_points_and_missing_files_are_refused(table_dir: Path) -> None:
    rows = pd.read_csv(table_dir / "hct.csv")
    pd.concat([rows, rows.iloc[[0]]]).to_csv(table_dir / "hct.csv", index=False)
    with pytest.raises(HctError, match=f"trial_id '{rows.iloc[0]['trial_id']}' appears more than once"):
        load_hct(table_dir / "hct.csv")
    rows.iloc[1:].to_csv(table_dir / "hct.csv", index=False)
    with pytest.raises(HctError, match=f"load points of trial_id '{rows.iloc[0]['trial_id']}', which has no row"):
        load_hct(table_dir / "hct.csv")
    (table_dir / "hct.meta.json").unlink()
    with pytest.raises(HctError, match="a CSV table needs its metadata beside it"):
        load_hct(table_dir / "hct.csv")
    with pytest.raises(HctError, match="expected a table directory"):
        load_hct(table_dir / "hct.meta.json")


def test_a_parquet_file_not_written_by_write_hct_is_refused(table_dir: Path) -> None:
    arrow = pq.read_table(table_dir / "hct.parquet")
    pq.write_table(arrow.replace_schema_metadata({}), table_dir / "hct.parquet")
    with pytest.raises(HctError, match="no oasis HCT metadata"):
        load_hct(table_dir)


def test_store_keeps_outcomes_and_reports_unreadable_files(tmp_path: Path, outcomes: list[TrialOutcome]) -> None:
    store = TrialStore(tmp_path)
    for outcome in outcomes[:3]:
        store.save(outcome)
    store.path(outcomes[3].row.trial_id).write_text('{"row": {"trial_id": "trunc')
    ids = [o.row.trial_id for o in outcomes]
    loaded, unreadable = store.load(ids)
    assert loaded == {o.row.trial_id: o for o in outcomes[:3]}
    assert len(unreadable) == 1 and unreadable[0].startswith(str(store.path(ids[3])))
    assert sorted(p.name for p in store.directory.iterdir()) == sorted(f"{i}.json" for i in ids[:4])


def test_store_overwrites_a_retried_trial(tmp_path: Path, outcomes: list[TrialOutcome]) -> None:
    store = TrialStore(tmp_path)
    trial_id = outcomes[-1].row.trial_id
    store.save(outcomes[-1])
    retried = measured(expand_trials(gpu_spec())[-1], run_id="run-b")
    store.save(retried)
    assert store.load([trial_id])[0][trial_id].row.run_id == "run-b"


def test_progress_line_counts_skipped_and_failed_and_projects_the_rate() -> None:
    progress = SweepProgress(total=10, skipped=4, started_s=100.0)
    assert progress.eta_s(150.0) is None
    assert "ETA unknown until a trial finishes" in progress.line(150.0)
    progress.record(ok=True)
    progress.record(ok=False)
    progress.running = ["tiny | gpu H100 | batch 8 | standard | LISO(200/20)"]
    assert progress.eta_s(160.0) == 4 * 60.0 / 2
    assert progress.line(160.0) == (
        "[sweep] 6/10 trials done (4 from earlier runs, 1 failed) | elapsed 1m00s | ETA 2m00s | "
        "running: tiny | gpu H100 | batch 8 | standard | LISO(200/20)"
    )


def test_a_waiting_trial_names_what_it_asks_for_and_what_the_cluster_has_free() -> None:
    mig = trial_resources(MigTarget(kind="mig", mig_profile="1g.10gb", num_cpus=2))
    assert resource_demand(mig) == {"CPU": 2.0, "GPU": 1.0, "MIG-1g.10gb": 1.0}
    a100 = resource_demand(trial_resources(GpuTarget(kind="gpu", accelerator_type="A100")))
    assert a100 == {"CPU": 1.0, "GPU": 1.0, "accelerator_type:A100": 0.001}
    assert resource_demand(trial_resources(CpuTarget(kind="cpu", num_cpus=0.5))) == {"CPU": 0.5}
    free, total = {"CPU": 0.09999999999999987, "GPU": 1.0}, {"CPU": 2.0, "GPU": 1.0}
    assert waiting_for(resource_demand(mig), free, total) == (
        "CPU 2, GPU 1, MIG-1g.10gb 1 (cluster free: CPU 0.1 of 2, GPU 1 of 1, MIG-1g.10gb 0 of 0)"
    )


def test_report_draws_every_figure_and_summarises_every_row(tmp_path: Path, table_dir: Path) -> None:
    written = write_report(load_hct(table_dir), tmp_path / "report")
    names = [path.name for path in written]
    assert names == ["clock_effects.png", "msrr_by_query_type.png", "latency_vs_concurrency.png", "summary.md"]
    for png in written[:3]:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
    summary = written[3].read_text()
    table_lines = [line for line in summary.splitlines() if line.startswith("| tiny |")]
    assert len(table_lines) == 6
    assert "| 1980 | yes | 8 | standard | LISO (200/20) | 12.00 | 240.0 | 4 | 1.600 |" in table_lines[0]
    assert "- `" in summary and "CUDA out of memory" in summary


def test_a_resumed_sweep_owes_only_unmeasured_and_failed_trials(outcomes: list[TrialOutcome]) -> None:
    trials = expand_trials(gpu_spec())
    stored = {o.row.trial_id: o for o in (outcomes[0], outcomes[2], outcomes[-1])}
    owed = unfinished(trials, stored)
    assert [t.trial_id for t in owed] == [t.trial_id for i, t in enumerate(trials) if i not in (0, 2)]
    assert trials[1].engine_config == trials[0].engine_config, "half of one engine's trials are owed"
    assert unfinished(trials, {o.row.trial_id: o for o in outcomes}) == [trials[-1]]


def test_power_limit_and_tensor_parallel_degree_are_recorded_per_row(tmp_path: Path) -> None:
    spec = parse_spec({
        "name": "unit-levers", "models": [{"model_id": "tiny"}], "max_num_seqs": [8],
        "hardware": [{"kind": "gpu", "accelerator_type": "A100", "power_limits_w": [400, 250],
                      "tensor_parallel_sizes": [1, 2]}],
        "query_types": [{"type": "LISO", "input_tokens": 200, "output_tokens": 20}], "slo": {"p95_e2e_s": 2.0},
    })
    write_hct(merge_outcomes(spec, [measured(trial) for trial in expand_trials(spec)], VERSIONS), tmp_path)
    rows = load_hct(tmp_path).rows
    assert rows[["power_limit_w", "power_limit_set", "tensor_parallel_size"]].values.tolist() == [
        [400, True, 1], [250, True, 1], [400, True, 2]]


@pytest.mark.parametrize(("change", "field"), [
    ({"power_limit_w": None, "power_limit_set": True}, "power_limit_set"),
    ({"hardware_kind": "mig", "mig_profile": "1g.10gb", "tensor_parallel_size": 2}, "tensor_parallel_size"),
])
def test_impossible_levers_in_a_row_are_refused(outcomes: list[TrialOutcome], change: dict[str, object],
                                                field: str) -> None:
    raw = {**outcomes[0].row.model_dump(), **change}
    with pytest.raises(ValueError, match=f"{field}: "):
        HctRow.model_validate(raw)
