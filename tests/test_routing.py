"""Classification and admission decisions, without Ray."""

from __future__ import annotations

import pytest

from oasis_ray.api import OasisRequestError
from oasis_ray.config import parse_config
from oasis_ray.query_types import QueryType, classify
from oasis_ray.routing import QueryRouter
from tests.conftest import MODEL_ID, app_config


@pytest.mark.parametrize(
    ("inp", "out", "expected"),
    [(500, 500, QueryType.SISO), (501, 500, QueryType.LISO), (500, 501, QueryType.SILO), (501, 501, QueryType.LILO),
     (1, 1, QueryType.SISO), (1200, 20, QueryType.LISO), (20, 800, QueryType.SILO)],
)
def test_classify_at_default_tau(inp, out, expected):
    assert classify(inp, out) is expected


def test_classify_with_custom_tau():
    assert classify(101, 100, tau=100) is QueryType.LISO
    with pytest.raises(ValueError, match="tau must be positive"):
        classify(1, 1, tau=0)


def _router(**model_overrides) -> QueryRouter:
    raw = app_config()
    raw["models"][0].update(model_overrides)
    return QueryRouter(parse_config(raw))


def test_types_without_a_route_go_to_the_default_route():
    raw = app_config()
    raw["routes"][1]["query_types"] = ["SILO"]
    router = QueryRouter(parse_config(raw))
    assert router.route_name(MODEL_ID, QueryType.LILO) == "short-output"
    assert router.route_name(MODEL_ID, QueryType.SILO) == "long-output"


def test_model_tau_drives_the_decision():
    decision = _router(tau_tokens=100).decide(MODEL_ID, input_tokens=150, max_tokens=50)
    assert (decision.query_type, decision.route) == (QueryType.LISO, "short-output")


def test_decision_headers():
    decision = _router().decide(MODEL_ID, input_tokens=20, max_tokens=800)
    assert decision.headers()["x-oasis-route"] == "long-output"
    assert decision.headers()["x-oasis-query-type"] == "SILO"


@pytest.mark.parametrize(
    ("requested", "status"), [("nope", 404), (None, None), (MODEL_ID, None)]
)
def test_resolve_model(requested, status):
    router = _router()
    if status is None:
        assert router.resolve_model(requested) == MODEL_ID
    else:
        with pytest.raises(OasisRequestError) as refused:
            router.resolve_model(requested)
        assert (refused.value.status_code, refused.value.param) == (404, "model")


@pytest.mark.parametrize(
    ("input_tokens", "max_tokens", "param"),
    [(10, 0, "max_tokens"), (10, -1, "max_tokens"), (0, 10, "prompt"), (1500, 600, "max_tokens")],
)
def test_refusals(input_tokens, max_tokens, param):
    with pytest.raises(OasisRequestError) as refused:
        _router().decide(MODEL_ID, input_tokens, max_tokens)
    assert (refused.value.status_code, refused.value.param) == (400, param)


def test_context_limit_is_the_chosen_routes():
    raw = app_config()
    raw["routes"][0]["engine"]["max_model_len"] = 1024
    router = QueryRouter(parse_config(raw))
    with pytest.raises(OasisRequestError, match="1024 tokens on route 'short-output'"):
        router.decide(MODEL_ID, 1000, 100)
    assert router.decide(MODEL_ID, 100, 1900).route == "long-output"
