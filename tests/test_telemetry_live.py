"""Telemetry of real requests through the running app, read from the in-memory exporter."""

from __future__ import annotations

import pytest
from ray import serve

from tests.conftest import APP_NAME, MODEL_ID


def _points(name: str, metrics) -> list:
    return [p for p in metrics if p.name == name]


def _answered(name: str, metrics, query_type: str) -> list:
    """Successful answers of one query type: other tests' refusals (the queue bound's 503s) share the series."""
    return [p for p in _points(name, metrics)
            if p.attributes.get("query_type") == query_type and p.attributes.get("status_class") == "2xx"]


@pytest.fixture(scope="module")
def telemetry_after_traffic(oasis_app, openai_client):
    openai_client.completions.create(model=MODEL_ID, prompt=[300] * 700, max_tokens=3)
    stream = openai_client.completions.create(model=MODEL_ID, prompt=[300] * 9, max_tokens=520, stream=True,
                                              extra_body={"ignore_eos": True})
    assert sum(1 for chunk in stream if chunk.choices) >= 500
    with pytest.raises(Exception):
        openai_client.completions.create(model=MODEL_ID, prompt="x", max_tokens=0)
    return serve.get_app_handle(APP_NAME).telemetry_snapshot.remote().result()


def test_request_metrics_carry_model_type_and_route(telemetry_after_traffic):
    metrics, _ = telemetry_after_traffic
    requests = {(p.attributes.get("query_type"), p.attributes.get("route"), p.attributes["status_class"]): p.value
                for p in _points("oasis.requests", metrics)}
    assert requests[("LISO", "short-output", "2xx")] >= 1
    assert requests[("SILO", "long-output", "2xx")] >= 1
    assert requests[(None, None, "4xx")] >= 1
    assert sum(p.value for p in _answered("oasis.tokens.input", metrics, "SILO")) >= 9
    assert sum(p.value for p in _answered("oasis.tokens.input", metrics, "LISO")) >= 700


def test_streaming_requests_get_ttft_and_tpot(telemetry_after_traffic):
    metrics, _ = telemetry_after_traffic
    ttft = _answered("oasis.request.ttft", metrics, "SILO")
    tpot = _answered("oasis.request.tpot", metrics, "SILO")
    assert ttft and ttft[0].count >= 1 and ttft[0].sum > 0
    assert tpot and tpot[0].count >= 1 and tpot[0].sum > 0
    assert sum(p.value for p in _answered("oasis.tokens.output", metrics, "SILO")) >= 500


def test_spans_run_from_ingress_to_route(telemetry_after_traffic):
    _, spans = telemetry_after_traffic
    ingress = [s for s in spans if s.name == "oasis.ingress" and s.attributes.get("oasis.query_type") == "LISO"]
    assert ingress, [s.name for s in spans]
    children = [s for s in spans if s.name == "oasis.route" and s.parent_span_id == ingress[-1].span_id]
    assert children and children[0].trace_id == ingress[-1].trace_id
    assert children[0].attributes["oasis.route"] == "short-output"
    assert ingress[-1].attributes["gen_ai.usage.input_tokens"] == 700
    assert ingress[-1].attributes["http.response.status_code"] == 200
