"""The Python handle API, called from the test driver and from a second Ray app."""

from __future__ import annotations

import pytest
from ray import serve

from oasis_ray.api import GenerateRequest, GenerateResponse, OasisRequestError
from oasis_ray.query_types import QueryType
from tests.conftest import APP_NAME, MODEL_ID


@pytest.fixture(scope="module")
def oasis_handle(oasis_app):
    return serve.get_app_handle(APP_NAME)


def test_typed_completion_through_handle(oasis_handle):
    reply = oasis_handle.generate.remote(GenerateRequest(prompt=[300] * 600, max_tokens=5)).result()
    assert isinstance(reply, GenerateResponse)
    assert (reply.model, reply.query_type, reply.route) == (MODEL_ID, QueryType.LISO, "short-output")
    assert (reply.input_tokens, 1 <= reply.output_tokens <= 5) == (600, True)


def test_typed_chat_through_handle_takes_long_route(oasis_handle):
    request = GenerateRequest(messages=[{"role": "user", "content": "hello"}], max_tokens=700)
    reply = oasis_handle.generate.remote(request).result()
    assert (reply.query_type, reply.route) == (QueryType.SILO, "long-output")
    assert reply.output_tokens >= 1


def test_handle_refusal_raises_typed_error(oasis_handle):
    with pytest.raises(OasisRequestError) as refused:
        oasis_handle.generate.remote(GenerateRequest(prompt="x", model="missing")).result()
    assert refused.value.status_code == 404
    assert refused.value.param == "model"


def test_request_model_refuses_both_prompt_and_messages():
    with pytest.raises(ValueError, match="exactly one of prompt or messages"):
        GenerateRequest(prompt="x", messages=[{"role": "user", "content": "y"}])


def test_another_ray_app_calls_oasis(oasis_app):
    from examples.handle_client import ReportWriter

    writer = serve.run(ReportWriter.bind(APP_NAME), name="report-writer", route_prefix=None)
    try:
        reply = writer.write.remote("joules per token", max_tokens=6).result()
        assert reply.route == "short-output" and 1 <= reply.output_tokens <= 6
        assert writer.refused_status.remote(0).result() == 400
    finally:
        serve.delete("report-writer")


def test_serve_logs_show_query_type_and_route(oasis_handle, ray_cluster):
    oasis_handle.generate.remote(GenerateRequest(prompt=[300] * 700, max_tokens=3)).result()
    serve_logs = ray_cluster.temp_dir / "session_latest" / "logs" / "serve"
    logs = "".join(path.read_text() for path in serve_logs.glob("*OasisIngress*.log"))
    assert f"oasis route model={MODEL_ID} query_type=LISO route=short-output input_tokens=700 max_tokens=3" in logs
