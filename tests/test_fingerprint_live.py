"""A fingerprint directory really runs: vLLM starts it with dummy weights and the sweep's trial code measures a ladder.

The fingerprint holds a config and a tokenizer but no weights, which only
`load_format: dummy` accepts; this is the one assumption of fingerprint
profiling the pure tests (tests/test_fingerprint.py) cannot check. One engine
(the 1-layer fingerprint of the embedded model), short requests, a short
ladder, in this process: no Ray needed.
"""

from __future__ import annotations

import json

import pytest

from oasis_ray.embedded_model import build_embedded_model
from oasis_ray.profiling.fingerprint import build_fingerprint, fingerprint_model_id
from oasis_ray.profiling.fingerprint_plan import FingerprintedModel, fingerprint_spec
from oasis_ray.profiling.sweep_plan import expand_trials
from oasis_ray.profiling.sweep_spec import parse_spec

ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_LOGGING_LEVEL": "WARNING"}


def test_a_one_layer_fingerprint_runs_a_ladder_on_dummy_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    from profiling_jobs.trial_runner import TrialRunner

    fingerprint = build_fingerprint(build_embedded_model(), 1)
    assert json.loads((fingerprint / "config.json").read_text())["num_hidden_layers"] == 1
    assert not [p for p in fingerprint.iterdir() if p.suffix == ".safetensors"]
    spec = parse_spec(
        {
            "name": "fingerprint-live",
            "models": [{"model_id": "oasis-tiny-llama", "source": "embedded"}],
            "hardware": [{"kind": "cpu", "num_cpus": 1}],
            "max_num_seqs": [2],
            "query_types": [{"type": "SISO", "input_tokens": 32, "output_tokens": 8}],
            "slo": {"p95_e2e_s": 30.0},
            "engine": {"max_model_len": 256, "dtype": "float32", "gpu_memory_utilization": 0.2},
            "engine_env_vars": ENGINE_ENV,
            "load": {"warmup_rounds": 1, "measured_rounds": 1, "min_measured_requests": 4},
            "search": {"mode": "bisection", "tolerance": 0.1, "max_concurrency": 4},
            "trial_timeout_s": 120,
        }
    )
    model = FingerprintedModel(model_id="oasis-tiny-llama", layers=2, fingerprints={1: str(fingerprint)})
    (trial,) = expand_trials(fingerprint_spec(spec, [model]))
    assert trial.engine_config.engine.load_format == "dummy" and trial.search.mode == "ladder"
    for name, value in ENGINE_ENV.items():
        monkeypatch.setenv(name, value)

    runner = TrialRunner(trial.engine_config)
    try:
        runner.start_engine()
        outcome = runner.run_trial(trial, run_id="live")
    finally:
        runner.shutdown()

    row = outcome.row
    assert (row.status, row.model_id, row.provenance) == ("ok", fingerprint_model_id("oasis-tiny-llama", 1), "measured")
    assert row.search_mode == "ladder"
    concurrencies = [point.concurrency for point in outcome.load_points]
    assert concurrencies[:2] == [1, 2] and concurrencies == sorted(concurrencies) and max(concurrencies) <= 4
    assert all(point.measured_requests >= 4 and point.requests_per_s > 0 for point in outcome.load_points)
