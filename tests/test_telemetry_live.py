"""Telemetry of real requests through the running app, read from the in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import openai
import pytest
import ray
from ray import serve

from tests.conftest import API_KEY, APP_NAME, MODEL_ID


def _points(name: str, metrics) -> list:
    return [p for p in metrics if p.name == name]


def _answered(name: str, metrics, query_type: str) -> list:
    """Successful answers of one query type: other tests' refusals (the queue bound's 503s) share the series."""
    return [p for p in _points(name, metrics)
            if p.attributes.get("query_type") == query_type and p.attributes.get("status_class") == "2xx"]


def _refusals(metrics) -> float:
    return sum(p.value for p in _points("oasis.requests", metrics)
               if p.attributes.get("route") is None and p.attributes["status_class"] == "4xx")


@pytest.fixture(scope="module")
def telemetry_after_traffic(oasis_app, openai_client):
    """Metrics and spans after known traffic, and how many refusals the ingress counted before it."""
    before, _ = serve.get_app_handle(APP_NAME).telemetry_snapshot.remote().result()
    openai_client.completions.create(model=MODEL_ID, prompt=[300] * 700, max_tokens=3)
    stream = openai_client.completions.create(model=MODEL_ID, prompt=[300] * 9, max_tokens=520, stream=True,
                                              extra_body={"ignore_eos": True})
    assert sum(1 for chunk in stream if chunk.choices) >= 500
    with pytest.raises(openai.BadRequestError):
        openai_client.completions.create(model=MODEL_ID, prompt="x", max_tokens=0)
    metrics, spans = serve.get_app_handle(APP_NAME).telemetry_snapshot.remote().result()
    return metrics, spans, _refusals(before)


def test_request_metrics_carry_model_type_and_route(telemetry_after_traffic):
    metrics, _, refusals_before = telemetry_after_traffic
    requests = {(p.attributes.get("query_type"), p.attributes.get("route"), p.attributes["status_class"]): p.value
                for p in _points("oasis.requests", metrics)}
    assert requests[("LISO", "short-output", "2xx")] >= 1
    assert requests[("SILO", "long-output", "2xx")] >= 1
    assert _refusals(metrics) >= refusals_before + 1
    assert sum(p.value for p in _answered("oasis.tokens.input", metrics, "SILO")) >= 9
    assert sum(p.value for p in _answered("oasis.tokens.input", metrics, "LISO")) >= 700


def test_streaming_requests_get_ttft_and_tpot(telemetry_after_traffic):
    metrics, _, _ = telemetry_after_traffic
    ttft = _answered("oasis.request.ttft", metrics, "SILO")
    tpot = _answered("oasis.request.tpot", metrics, "SILO")
    assert ttft and ttft[0].count >= 1 and ttft[0].sum > 0
    assert tpot and tpot[0].count >= 1 and tpot[0].sum > 0
    assert sum(p.value for p in _answered("oasis.tokens.output", metrics, "SILO")) >= 500


def test_spans_run_from_ingress_to_route(telemetry_after_traffic):
    _, spans, _ = telemetry_after_traffic
    ingress = [s for s in spans if s.name == "oasis.ingress" and s.attributes.get("oasis.query_type") == "LISO"]
    assert ingress, [s.name for s in spans]
    children = [s for s in spans if s.name == "oasis.route" and s.parent_span_id == ingress[-1].span_id]
    assert children and children[0].trace_id == ingress[-1].trace_id
    assert children[0].attributes["oasis.route"] == "short-output"
    assert ingress[-1].attributes["gen_ai.usage.input_tokens"] == 700
    assert ingress[-1].attributes["http.response.status_code"] == 200


@pytest.fixture(scope="module")
def energy_after_traffic(oasis_app, openai_client):
    """Answers with their energy header, then the metrics once the stream's energy has settled too."""
    answer = openai_client.completions.with_raw_response.create(model=MODEL_ID, prompt=[300] * 40, max_tokens=4)
    stream = openai_client.completions.with_raw_response.create(model=MODEL_ID, prompt=[300] * 9, max_tokens=600,
                                                                stream=True)
    stream_headers = dict(stream.headers)
    assert sum(1 for chunk in stream.parse() if chunk.choices) >= 1
    time.sleep(2.0)
    metrics, spans = serve.get_app_handle(APP_NAME).telemetry_snapshot.remote().result()
    return dict(answer.headers), stream_headers, metrics, spans


def test_energy_header_says_unavailable_without_a_gpu(energy_after_traffic):
    answer, stream, _, _ = energy_after_traffic
    assert answer["x-oasis-energy-j"] == "unavailable"
    assert "x-oasis-energy-j" not in stream, "a stream's headers leave before its energy is known"


def test_unmeasured_energy_is_counted_never_recorded_as_zero(energy_after_traffic):
    _, _, metrics, spans = energy_after_traffic
    unmeasured = {p.attributes["query_type"]: p.value for p in _points("oasis.request.energy.unmeasured", metrics)}
    assert unmeasured.get("SISO", 0) >= 1 and unmeasured.get("SILO", 0) >= 1, unmeasured
    assert _points("oasis.request.energy", metrics) == []
    assert not [p for p in metrics if p.name.startswith("oasis.gpu.")], "no GPU gauge may report without a GPU"
    energy_spans = [s for s in spans if s.name == "oasis.energy"]
    assert energy_spans and all(s.attributes["oasis.energy.status"] == "unmeasured" for s in energy_spans)
    assert all("oasis.energy_j" not in s.attributes for s in energy_spans)


def test_replicas_per_route_and_shape_are_exported(energy_after_traffic):
    _, _, metrics, _ = energy_after_traffic
    replicas = {(p.attributes["route"], p.attributes["shape"]): p.value
                for p in _points("oasis.route.replicas", metrics)}
    assert replicas == {(f"{MODEL_ID}/short-output", "cpu"): 1, (f"{MODEL_ID}/long-output", "cpu"): 1}


def test_status_route_shows_routes_rates_latency_and_unavailable_power(oasis_app, energy_after_traffic):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    text = httpx.get(f"{oasis_app}/oasis/status", headers=headers, timeout=30)
    assert text.status_code == 200, text.text
    assert "short-output" in text.text and "cpu:1" in text.text
    assert "power and energy unavailable:" in text.text
    snapshot = httpx.get(f"{oasis_app}/oasis/status", params={"format": "json"}, headers=headers, timeout=30).json()
    assert {r["route"]: r["replicas"] for r in snapshot["routes"]} == {"short-output": {"cpu": 1},
                                                                    "long-output": {"cpu": 1}}
    siso = next(q for q in snapshot["query_types"] if q["query_type"] == "SISO")
    assert siso["rate_rps"] > 0 and siso["p95_e2e_s"] > 0 and siso["route"] == "short-output"
    assert snapshot["gpus"] == []
    assert [status.startswith("unavailable:") for status in snapshot["gpu_status"].values()] == [True]
    assert httpx.get(f"{oasis_app}/oasis/status", timeout=30).status_code == 401


def test_status_command_prints_the_same_view(energy_after_traffic):
    command = [sys.executable, "-m", "deployments.status", "--app", APP_NAME,
               "--address", ray.get_runtime_context().gcs_address]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("oasis-ray status at ")
    assert "long-output" in result.stdout and "power and energy unavailable:" in result.stdout


def test_the_engines_span_joins_the_requests_trace_under_the_route_span(oasis_app, openai_client, engine_spans):
    openai_client.completions.create(model=MODEL_ID, prompt=[300] * 33, max_tokens=5)
    _, spans = serve.get_app_handle(APP_NAME).telemetry_snapshot.remote().result()
    route = [s for s in spans if s.name == "oasis.route" and s.attributes.get("gen_ai.usage.input_tokens") == 33][-1]
    deadline = time.monotonic() + 60
    joined = []
    while not joined and time.monotonic() < deadline:
        time.sleep(1.0)
        joined = [s for s in engine_spans.received() if s.trace_id == route.trace_id]
    assert joined, f"no engine span in trace {route.trace_id}; received {engine_spans.received()[-5:]}"
    assert [(s.name, s.parent_span_id) for s in joined] == [("llm_request", route.span_id)]
