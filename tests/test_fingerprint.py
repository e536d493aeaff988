"""Fingerprint profiling without an engine: building fingerprints, the layer split, and the estimated rows.

The estimate is checked against synthetic engines whose latency is exactly
`other + L x per_layer` (times a load factor), so the true MSRR of the deep
model is known: the fingerprints' ladders are measured with the real search
code, the deep model's MSRR with the bisection a measured trial uses, and
the estimate must agree with it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from oasis_ray import embedded_model
from oasis_ray.profiling.clock_control import ClockLock, PowerCap
from oasis_ray.profiling.fingerprint import (
    MARKER_FILE,
    FingerprintError,
    build_fingerprint,
    fingerprint_config,
    fingerprint_model_id,
    layer_count,
)
from oasis_ray.profiling.fingerprint_estimate import METHOD, estimate_outcome, split_by_layers
from oasis_ray.profiling.fingerprint_plan import FingerprintedModel, fingerprint_spec, pair_trials
from oasis_ray.profiling.hct import load_hct, write_hct
from oasis_ray.profiling.measurement import EngineIdlePower, LoadPoint
from oasis_ray.profiling.msrr_search import search_msrr
from oasis_ray.profiling.sweep_plan import Trial
from oasis_ray.profiling.sweep_spec import SweepModel, SweepSpec, parse_spec
from oasis_ray.profiling.trial_outcome import (
    ESTIMATED_POWER_NOTE,
    DeviceInfo,
    SoftwareVersions,
    TrialOutcome,
    failed_outcome,
    measured_outcome,
    merge_outcomes,
)
from oasis_cli import profile as oasis_profile
from profiling_jobs import fingerprint as fingerprint_job
from profiling_jobs.sweep import EXIT_BAD_SPEC

LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}
DEEP = 8
OTHER_S, PER_LAYER_S = 0.1, 0.05
OUTPUT_TOKENS = 50


# Building fingerprints.


def test_a_fingerprint_keeps_everything_but_the_layer_count() -> None:
    for layers in (1, 2):
        cut = fingerprint_config(LLAMA_CONFIG, layers)
        assert cut == {**LLAMA_CONFIG, "num_hidden_layers": layers}
    assert LLAMA_CONFIG["num_hidden_layers"] == 32


def test_other_families_layer_keys_and_per_layer_lists_are_cut() -> None:
    gptj = {"model_type": "gptj", "n_layer": 28, "n_embd": 4096}
    assert layer_count(gptj) == 28 and fingerprint_config(gptj, 2)["n_layer"] == 2
    mixed = {**LLAMA_CONFIG, "num_hidden_layers": 4, "layer_types": ["sliding", "full", "sliding", "full"]}
    assert fingerprint_config(mixed, 2)["layer_types"] == ["sliding", "full"]


@pytest.mark.parametrize(
    ("config", "layers", "message"),
    [
        (LLAMA_CONFIG, 32, "layers: 32 must be at least 1 and below the model's 32 hidden layers"),
        (LLAMA_CONFIG, 0, "layers: 0 must be at least 1"),
        ({"hidden_size": 8}, 1, "names no hidden-layer count"),
        ({**LLAMA_CONFIG, "num_hidden_layers": "32"}, 1, "num_hidden_layers: '32' is not a layer count"),
        ({"text_config": {"num_hidden_layers": 4}}, 1, "text_config: a multimodal config"),
        ({**LLAMA_CONFIG, "num_hidden_layers": 3, "layer_types": ["full"]}, 1, "layer_types: 1 entries for 3"),
    ],
)
def test_a_config_a_fingerprint_cannot_be_made_of_is_refused_naming_the_field(
    config: dict[str, Any], layers: int, message: str
) -> None:
    with pytest.raises(FingerprintError, match=message):
        fingerprint_config(config, layers)


def _model_dir(root: Path, config: dict[str, Any]) -> Path:
    source = root / "my-model"
    source.mkdir()
    (source / "config.json").write_text(json.dumps(config))
    (source / "tokenizer.json").write_text('{"tok": 1}')
    (source / "generation_config.json").write_text("{}")
    (source / "model-00001-of-00002.safetensors").write_bytes(b"weights")
    (source / "model.safetensors.index.json").write_text("{}")
    (source / "OASIS_EMBEDDED_MODEL.json").write_text("{}")
    return source


def test_build_writes_config_and_tokenizer_but_no_weights_once(tmp_path: Path) -> None:
    source = _model_dir(tmp_path, LLAMA_CONFIG)
    built = build_fingerprint(source, 2, cache_dir=tmp_path / "cache")
    assert built.parent == tmp_path / "cache" / "fingerprints" and built.name.startswith("my-model-2L-")
    assert sorted(p.name for p in built.iterdir()) == [
        MARKER_FILE, "config.json", "generation_config.json", "tokenizer.json"
    ]
    assert json.loads((built / "config.json").read_text()) == {**LLAMA_CONFIG, "num_hidden_layers": 2}
    assert json.loads((built / MARKER_FILE).read_text())["source_layers"] == 32
    stamp = (built / "config.json").stat().st_mtime_ns
    assert build_fingerprint(source, 2, cache_dir=tmp_path / "cache") == built
    assert (built / "config.json").stat().st_mtime_ns == stamp
    assert build_fingerprint(source, 1, cache_dir=tmp_path / "cache") != built
    (source / "config.json").write_text(json.dumps({**LLAMA_CONFIG, "hidden_size": 2048}))
    assert build_fingerprint(source, 2, cache_dir=tmp_path / "cache") != built


def test_build_from_a_directory_without_config_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FingerprintError, match=r"nope/config\.json: no such file"):
        build_fingerprint(tmp_path / "nope", 1, cache_dir=tmp_path)


def test_the_default_embedded_model_is_unchanged_and_depth_is_a_parameter() -> None:
    assert embedded_model.spec_hash() == "2a44913e4a1c"  # the cache key every existing install has built
    deep = embedded_model.model_spec(DEEP)
    assert {k: v for k, v in deep.items() if k != "num_hidden_layers"} == {
        k: v for k, v in embedded_model.model_spec().items() if k != "num_hidden_layers"
    }
    assert deep["num_hidden_layers"] == DEEP and embedded_model.spec_hash(DEEP) != embedded_model.spec_hash()


# The layer split.


def test_two_fingerprints_solve_other_and_per_layer_exactly() -> None:
    split = split_by_layers({1: 0.15, 2: 0.2})
    assert split.other_s == pytest.approx(OTHER_S) and split.per_layer_s == pytest.approx(PER_LAYER_S)
    assert split.at(DEEP) == pytest.approx(OTHER_S + DEEP * PER_LAYER_S)
    # Least squares through three depths: slope Sxy / Sxx = (67/15) / (14/3) = 67/70.
    assert split_by_layers({1: 1.0, 2: 2.1, 4: 3.9}).per_layer_s == pytest.approx(67 / 70)


# Estimated rows against synthetic engines.


class LayeredEngine:
    """Latency `(other + L x per_layer) x (0.75 + 0.25 c)` at closed-loop concurrency c; throughput c / mean latency.

    Linear in layers (the fingerprint model) and in concurrency (so the
    estimate's interpolation between ladder levels is exact too).
    """

    def __init__(self, layers: int, per_layer_s: float = PER_LAYER_S) -> None:
        self.service_s = OTHER_S + layers * per_layer_s
        self.measured: list[int] = []

    def __call__(self, concurrency: int) -> LoadPoint:
        self.measured.append(concurrency)
        mean = self.service_s * (0.75 + 0.25 * concurrency)
        rate = concurrency / mean
        return LoadPoint(
            concurrency=concurrency, warmup_requests=concurrency, measured_requests=max(10, 2 * concurrency),
            window_s=1.0, e2e_p50_s=mean, e2e_p95_s=1.2 * mean, e2e_p99_s=1.3 * mean,
            ttft_p50_s=0.1 * mean, ttft_p95_s=0.12 * mean, ttft_p99_s=0.13 * mean,
            tpot_p50_s=0.9 * mean / OUTPUT_TOKENS, tpot_p95_s=mean / OUTPUT_TOKENS,
            tpot_p99_s=1.1 * mean / OUTPUT_TOKENS,
            requests_per_s=rate, output_tokens_per_s=rate * OUTPUT_TOKENS, power_available=False,
            mean_power_w=math.nan, energy_j=math.nan, energy_per_token_j=math.nan, sm_clock_mhz=math.nan,
        )


def _spec(slo_s: float = 1.3) -> SweepSpec:
    return parse_spec({
        "name": "deep",
        "models": [{"model_id": "deep-model", "source": "/models/deep"}],
        "hardware": [{"kind": "cpu", "num_cpus": 1}],
        "max_num_seqs": [8],
        "query_types": [{"type": "LISO", "input_tokens": 400, "output_tokens": OUTPUT_TOKENS}],
        "slo": {"p95_e2e_s": slo_s},
        "engine": {"max_model_len": 1024, "dtype": "float32"},
        "search": {"mode": "bisection", "tolerance": 0.1, "max_concurrency": 64},
    })


MODELS = [FingerprintedModel(model_id="deep-model", layers=DEEP, fingerprints={1: "/fp/1L", 2: "/fp/2L"})]


def _measured(trial: Trial, engine: LayeredEngine) -> TrialOutcome:
    return measured_outcome(
        trial,
        run_id="fp-run",
        result=search_msrr(engine, trial.slo, trial.search),
        clock=ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=None, note=None),
        cap=PowerCap(requested_w=None, set=False, note=None),
        device=DeviceInfo(device_name=None, driver_version=None, power_note="CPU target: no power meter"),
        engine_idle=EngineIdlePower(watts=math.nan, note="CPU target: no power meter"),
        engine_start_s=30.0,
        search_wall_s=5.0,
        started_at="2026-11-21T00:00:00+00:00",
    )


def test_fingerprint_sweep_is_the_spec_with_fingerprints_dummy_weights_and_the_ladder() -> None:
    spec = _spec()
    fp_spec = fingerprint_spec(spec, MODELS)
    assert [(m.model_id, m.source) for m in fp_spec.models] == [
        (fingerprint_model_id("deep-model", 1), "/fp/1L"), ("deep-model@fingerprint-2L", "/fp/2L")
    ]
    assert fp_spec.engine == {**spec.engine, "load_format": "dummy"}
    assert fp_spec.search == spec.search.model_copy(update={"mode": "ladder"})
    assert (fp_spec.slo, fp_spec.load, fp_spec.query_types, fp_spec.max_num_seqs) == (
        spec.slo, spec.load, spec.query_types, spec.max_num_seqs
    )
    (item,) = pair_trials(spec, fp_spec, MODELS)
    assert item.layers == DEEP and sorted(item.fingerprints) == [1, 2]
    for layers, fp_trial in item.fingerprints.items():
        assert fp_trial.engine_config.model.model_id == fingerprint_model_id("deep-model", layers)
        assert fp_trial.query == item.trial.query and fp_trial.slo == item.trial.slo
        assert fp_trial.engine_config.max_num_seqs == item.trial.engine_config.max_num_seqs


def _estimate(
    slo_s: float, per_layer_s: dict[int, float] | None = None
) -> tuple[TrialOutcome, dict[int, TrialOutcome], Trial]:
    spec = _spec(slo_s)
    (item,) = pair_trials(spec, fingerprint_spec(spec, MODELS), MODELS)
    per_layer_s = per_layer_s or {}
    fingerprints = {
        n: _measured(t, LayeredEngine(n, per_layer_s.get(n, PER_LAYER_S))) for n, t in item.fingerprints.items()
    }
    return estimate_outcome(item.trial, fingerprints, item.layers, run_id="estimate"), fingerprints, item.trial


@pytest.mark.parametrize("slo_s", [1.3, 0.8, 4.0, 0.5])
def test_the_estimate_finds_the_deep_models_msrr(slo_s: float) -> None:
    estimated, _, trial = _estimate(slo_s)
    truth = search_msrr(LayeredEngine(DEEP), trial.slo, trial.search)
    row = estimated.row
    assert row.status == "ok"
    assert row.msrr_req_s == pytest.approx(truth.msrr_req_s, rel=1e-9)
    assert row.msrr_concurrency == (truth.best.concurrency if truth.best else None)
    if truth.best is not None:
        for name in ("e2e_p95_s", "ttft_p50_s", "tpot_p50_s", "tpot_p99_s"):
            assert getattr(row, name) == pytest.approx(getattr(truth.best, name), rel=1e-9), name


def test_an_slo_inside_the_ladder_is_found_by_searching_between_its_levels() -> None:
    estimated, fingerprints, _ = _estimate(1.3)
    ladder = {p.concurrency for fp in fingerprints.values() for p in fp.load_points}
    assert estimated.row.msrr_concurrency == 5 and 5 not in ladder
    assert estimated.row.msrr_req_s == pytest.approx(5.0)


def test_estimated_rows_are_marked_derived_and_name_their_fingerprint_trials(tmp_path: Path) -> None:
    estimated, fingerprints, trial = _estimate(1.3)
    row = estimated.row
    assert (row.provenance, row.trial_id, row.model_id) == ("derived", trial.trial_id, "deep-model")
    assert row.provenance_note is not None and row.provenance_note.startswith(METHOD)
    for layers, fp in fingerprints.items():
        assert f"{layers}L {fp.row.trial_id}" in row.provenance_note
    assert f"evaluated at {DEEP} layers" in row.provenance_note
    assert not row.power_available and math.isnan(row.mean_power_w) and row.power_note == ESTIMATED_POWER_NOTE
    assert math.isnan(row.engine_idle_power_w) and row.engine_idle_power_note == ESTIMATED_POWER_NOTE
    assert row.load_points == sum(fp.row.load_points for fp in fingerprints.values())
    assert row.engine_start_s == 60.0 and row.search_wall_s == 10.0
    assert estimated.load_points and all(
        (p.measured_requests, p.provenance, p.provenance_note) == (0, "derived", row.provenance_note)
        for p in estimated.load_points
    )
    assert all(fp.row.provenance == "measured" for fp in fingerprints.values())

    table = merge_outcomes(_spec(1.3), [estimated], SoftwareVersions(vllm="v", ray="r", oasis_ray="o", python="p"))
    back = load_hct(write_hct(table, tmp_path))
    assert list(back.rows["provenance"]) == ["derived"] and set(back.load_points["provenance"]) == {"derived"}
    assert back.rows["provenance_note"].iloc[0] == row.provenance_note


def test_fingerprints_that_show_no_per_layer_cost_give_a_failed_row_naming_the_figures() -> None:
    estimated, _, _ = _estimate(1.3, per_layer_s={2: 0.0})
    row = estimated.row
    assert (row.status, row.provenance) == ("failed", "derived")
    assert row.error is not None and "concurrency 1: the fingerprints show no per-layer cost" in row.error
    assert math.isnan(row.msrr_req_s)


def test_a_missing_or_failed_fingerprint_trial_gives_a_failed_row_with_its_error() -> None:
    spec = _spec()
    (item,) = pair_trials(spec, fingerprint_spec(spec, MODELS), MODELS)
    one = {1: _measured(item.fingerprints[1], LayeredEngine(1))}
    missing = estimate_outcome(item.trial, one, DEEP, run_id="estimate").row
    assert missing.status == "failed" and "need fingerprints of two depths, got [1]" in (missing.error or "")
    crashed = failed_outcome(item.fingerprints[2], run_id="fp-run", error="engine died", started_at="t")
    failed = estimate_outcome(item.trial, {**one, 2: crashed}, DEEP, run_id="estimate").row
    assert failed.status == "failed" and f"2L trial {crashed.row.trial_id}: engine died" in (failed.error or "")


# The job's refusals, before Ray or any engine.


def test_the_job_refuses_a_source_without_a_local_config() -> None:
    with pytest.raises(FingerprintError, match=r"models\[0\]\.source: 'org/model' is not a local model directory"):
        fingerprint_job.fingerprinted(SweepModel(model_id="m", source="org/model"), "models[0]")


def test_the_job_refuses_a_model_no_deeper_than_its_fingerprints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shallow = _model_dir(tmp_path, {**LLAMA_CONFIG, "num_hidden_layers": 2})
    spec = tmp_path / "spec.yaml"
    raw = {**_spec().model_dump(mode="json"), "models": [{"model_id": "m", "source": str(shallow)}]}
    spec.write_text(yaml.safe_dump(raw))
    assert fingerprint_job.main(["--spec", str(spec), "--out", str(tmp_path / "out")]) == EXIT_BAD_SPEC
    assert capsys.readouterr().err == (
        "models[0].source: 2 hidden layers: nothing to extrapolate to from fingerprints with [1, 2] "
        "(profile it with profiling_jobs.sweep)\n"
    )
    assert not (tmp_path / "out").exists()


def _with_2l_points(fingerprints: dict[int, TrialOutcome], **figures: float) -> dict[int, TrialOutcome]:
    """The fingerprints with the 2-layer trial's load points overwritten: a noisy measurement."""
    two = fingerprints[2]
    points = [point.model_copy(update=figures) for point in two.load_points]
    return {**fingerprints, 2: two.model_copy(update={"load_points": points})}


def test_a_percentile_the_slo_does_not_limit_is_nan_where_noise_leaves_it_unresolved() -> None:
    estimated, fingerprints, trial = _estimate(1.3)
    noisy = estimate_outcome(trial, _with_2l_points(fingerprints, ttft_p99_s=1e-4), DEEP, run_id="estimate").row
    assert noisy.status == "ok" and math.isnan(noisy.ttft_p99_s)
    assert noisy.msrr_req_s == estimated.row.msrr_req_s and noisy.ttft_p95_s == estimated.row.ttft_p95_s


def test_an_slo_percentile_the_fingerprints_cannot_resolve_fails_the_row() -> None:
    _, fingerprints, trial = _estimate(1.3)
    failed = estimate_outcome(trial, _with_2l_points(fingerprints, e2e_p95_s=1e-4), DEEP, run_id="estimate").row
    assert failed.status == "failed"
    assert "concurrency 1: predicted e2e_p95_s" in (failed.error or "") and "not a latency" in (failed.error or "")


def test_oasis_profile_runs_the_fingerprint_job_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    spec = "profiling_jobs/specs/fingerprint_cpu.yaml"
    assert oasis_profile._job(oasis_profile.parser().parse_args([spec])) == ("profiling_jobs.sweep", [])
    fingerprint = oasis_profile.parser().parse_args([spec, "--fingerprint", "--embedded-layers", "8"])
    assert oasis_profile._job(fingerprint) == ("profiling_jobs.fingerprint", ["--embedded-layers", "8"])
    assert oasis_profile.main([spec, "--embedded-layers", "8"]) == 2
    assert "--embedded-layers: only with --fingerprint" in capsys.readouterr().err
