"""Property-based fuzzing of the running app from its own /openapi.json: no body gets a 5xx, and it keeps serving.

Bodies are built from the request schemas the app publishes: a valid
request (so generated fields reach the engine, not only the validator) with
some of the schema's fields set to valid-looking or invalid values (null,
wrong types, huge numbers, odd unicode), fields left out, unknown fields, and
bodies that are not objects at all. Every answer must be a 2xx or a 4xx in
OpenAI's error shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY, MODEL_ID

HEADERS = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
# Sized so both endpoints together take about a minute on the 2-core development machine (120 took 18 s).
EXAMPLES = 400
VALID = {
    "/v1/completions": {"model": MODEL_ID, "prompt": [300] * 4, "max_tokens": 2},
    "/v1/chat/completions": {"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
}
ODD_TEXT = st.sampled_from(["", " ", "\u0000", "\ud800", "\U0001F600" * 50, "\u202e\u0301", "é" * 3000, "null",
                            "[]", "{}", "-1", "1e309", "NaN", "%s%n", "../../etc/passwd", "\n\r\t"])
HUGE = st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, -(10**30), 1e308, -1e308, 1e-308])
ANY_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), HUGE, st.floats(allow_nan=True), ODD_TEXT,
                       st.text(max_size=20))
JUNK = st.recursive(ANY_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                    max_leaves=6)


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _plausible(schema: dict, spec: dict) -> st.SearchStrategy[Any]:
    """A value of the field's own type (small, so requests stay cheap), or of one branch of a union."""
    schema = _resolve(schema, spec)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        return st.one_of([_plausible(b, spec) for b in branches])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(-2, 4)
    if kind == "number":
        return st.floats(-2, 2)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.one_of(st.text(max_size=8), ODD_TEXT)
    if kind == "array":
        return st.lists(_plausible(schema.get("items", {}), spec), max_size=3)
    if kind == "object":
        return st.dictionaries(st.text(max_size=6), ANY_SCALAR, max_size=2)
    return ANY_SCALAR


@pytest.fixture(scope="module")
def request_schemas(oasis_app) -> dict[str, tuple[dict, dict]]:
    spec = httpx.get(f"{oasis_app}/openapi.json", headers=HEADERS).json()
    schemas = {}
    for path in VALID:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        schemas[path] = (_resolve(body, spec)["properties"], spec)
    return schemas


def _bodies(path: str, properties: dict, spec: dict) -> st.SearchStrategy[str]:
    fields = sorted(properties)
    mutated = st.dictionaries(
        st.sampled_from(fields),
        st.deferred(lambda: st.one_of(JUNK, st.sampled_from(fields).flatmap(lambda f: _plausible(properties[f], spec)))),
        max_size=4,
    )
    valid_mix = st.tuples(mutated, st.sets(st.sampled_from(sorted(VALID[path])), max_size=2),
                          st.dictionaries(st.text(max_size=8), ANY_SCALAR, max_size=2)).map(
        lambda t: {**{k: v for k, v in VALID[path].items() if k not in t[1]}, **t[2], **t[0]})
    not_an_object = JUNK.filter(lambda v: not isinstance(v, dict))
    return st.one_of(valid_mix, valid_mix, valid_mix, not_an_object).map(lambda body: json.dumps(body))


def _fuzz(base: str, path: str, properties: dict, spec: dict) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(body=_bodies(path, properties, spec))
    def post(body: str) -> None:
        response = httpx.post(f"{base}{path}", content=body, headers=HEADERS, timeout=120)
        assert response.status_code < 500, (body, response.status_code, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"] and error["type"] and error["code"] == response.status_code, response.text

    post()


@pytest.mark.parametrize("path", list(VALID))
def test_no_generated_body_gets_a_server_error(oasis_app, openai_client, request_schemas, path):
    properties, spec = request_schemas[path]
    _fuzz(oasis_app, path, properties, spec)
    answer = openai_client.completions.create(model=MODEL_ID, prompt=[300] * 4, max_tokens=2)
    assert answer.choices, "the app stopped serving after the fuzzing"


def _in_a_url(text: str) -> bool:
    """Lone surrogates cannot be sent in a URL at all (UTF-8 has no encoding for them)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(model=st.one_of(ODD_TEXT, st.text(max_size=30)).filter(lambda m: m.strip() and m != MODEL_ID and _in_a_url(m)))
def test_an_unknown_model_is_404_on_the_model_path(oasis_app, model):
    response = httpx.get(f"{oasis_app}/v1/models/{quote(model, safe='')}", headers=HEADERS)
    assert response.status_code == 404, (model, response.text)
    assert response.json()["error"]["param"] == "model"
