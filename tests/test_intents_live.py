"""A per-request intent chooses among the session app's running routes: real HTTP, the openai client, Serve, vLLM.

The session app's cost table is synthetic (tests/conftest.py, SESSION_TABLE_FIGURES):
the long-output route's batch 2 answers faster, the short-output route's batch 4
serves more requests per joule. Both routes run one CPU replica each.
"""

from __future__ import annotations

import httpx
import pytest
from ray import serve

from oasis_ray.api import GenerateRequest
from oasis_ray.intents import INTENT_HEADER, Intent
from tests.conftest import API_KEY, APP_NAME, MODEL_ID, wait_until_ingress_sees_every_route

SISO_PROMPT = [300] * 8


def _complete(client, intent: str | None, **kwargs):
    headers = {INTENT_HEADER: intent} if intent else {}
    raw = client.completions.with_raw_response.create(model=MODEL_ID, extra_headers=headers, **kwargs)
    raw.parse()
    return raw.headers


@pytest.fixture(scope="module")
def both_routes_seen(oasis_app) -> None:
    """The ingress's cached replica view must list both routes as running before an intent can choose between them."""
    wait_until_ingress_sees_every_route(oasis_app)


def test_a_request_intent_picks_the_running_route_the_table_rates_best(openai_client, both_routes_seen):
    configured = _complete(openai_client, None, prompt=SISO_PROMPT, max_tokens=4)
    fastest = _complete(openai_client, "min-latency", prompt=SISO_PROMPT, max_tokens=4)
    frugal = _complete(openai_client, "min-energy", prompt=SISO_PROMPT, max_tokens=4)
    assert [h["x-oasis-query-type"] for h in (configured, fastest, frugal)] == ["SISO"] * 3
    assert (configured["x-oasis-route"], configured[INTENT_HEADER]) == ("short-output", "slo")
    assert (fastest["x-oasis-route"], fastest["x-oasis-shape"], fastest[INTENT_HEADER]) == (
        "long-output", "cpu", "min-latency")
    assert (frugal["x-oasis-route"], frugal[INTENT_HEADER]) == ("short-output", "min-energy")


def test_a_long_output_request_goes_where_a_core_serves_the_most_for_min_cost(openai_client, both_routes_seen):
    headers = _complete(openai_client, "min-cost", prompt=SISO_PROMPT, max_tokens=501)
    assert (headers["x-oasis-query-type"], headers["x-oasis-route"], headers[INTENT_HEADER]) == (
        "SILO", "short-output", "min-cost")


def test_the_handle_api_takes_an_intent(oasis_app, both_routes_seen):
    reply = serve.get_app_handle(APP_NAME).generate.remote(
        GenerateRequest(prompt=SISO_PROMPT, max_tokens=3, intent=Intent.MIN_LATENCY)).result()
    assert (reply.route, reply.shape, reply.intent) == ("long-output", "cpu", Intent.MIN_LATENCY)


def test_an_unknown_intent_is_a_400_naming_the_header(oasis_app):
    response = httpx.post(f"{oasis_app}/v1/completions", timeout=60,
                          headers={"Authorization": f"Bearer {API_KEY}", INTENT_HEADER: "fastest"},
                          json={"model": MODEL_ID, "prompt": SISO_PROMPT, "max_tokens": 2})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == INTENT_HEADER
