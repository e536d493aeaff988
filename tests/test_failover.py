"""Failover and admission decisions, without Ray: route health, the order routes are tried in, capacity."""

from __future__ import annotations

import pytest

from oasis_ray.admission import InFlight, deployment_capacity
from oasis_ray.config import parse_config
from oasis_ray.failover import (
    FAILURE_MARK_S,
    MAX_ATTEMPTS,
    FailureKind,
    ReplicaFailure,
    RouteHealth,
    RouteState,
    failover_order,
    may_retry,
    next_route,
)
from oasis_ray.routing import QueryRouter
from tests.conftest import MODEL_ID, app_config

SHORT, LONG = f"{MODEL_ID}/short-output", f"{MODEL_ID}/long-output"


def _lost(route: str, replica: str | None, shape: str = "cpu") -> ReplicaFailure:
    return ReplicaFailure(route, shape, FailureKind.REPLICA_LOST, replica)


def test_a_route_is_unknown_until_seen_then_healthy_while_a_replica_runs():
    health = RouteHealth()
    assert health.state(LONG, 0.0) is RouteState.UNKNOWN
    health.observe({(LONG, "cpu"): ["a", "b"]}, 0.0)
    assert health.state(LONG, 0.0) is RouteState.HEALTHY
    assert health.healthy_counts(LONG, 0.0) == {"cpu": 2}


def test_a_failed_replica_leaves_rotation_at_once_and_the_route_fails_with_its_last_one():
    health = RouteHealth()
    health.observe({(LONG, "cpu"): ["a", "b"]}, 0.0)
    health.replica_failed(_lost(LONG, "a"), 1.0)
    assert (health.state(LONG, 1.0), health.healthy_replicas(LONG, 1.0)) == (RouteState.HEALTHY, 1)
    health.replica_failed(_lost(LONG, "b"), 2.0)
    assert health.state(LONG, 2.0) is RouteState.FAILED
    # The controller still lists both (it health-checks every 10 s): still failed.
    health.observe({(LONG, "cpu"): ["a", "b"]}, 3.0)
    assert health.state(LONG, 3.0) is RouteState.FAILED
    # Serve dropped them; the route is failed (not cold) until a replica runs again.
    health.observe({(LONG, "cpu"): []}, 8.0)
    assert health.state(LONG, 8.0) is RouteState.FAILED
    health.observe({(LONG, "cpu"): ["c"]}, 40.0)
    assert health.state(LONG, 40.0) is RouteState.HEALTHY


def test_a_failure_naming_no_replica_suspects_those_listed_but_not_their_replacements():
    health = RouteHealth()
    health.observe({(LONG, "cpu"): ["a"]}, 0.0)
    health.replica_failed(_lost(LONG, None), 1.0)
    assert health.state(LONG, 1.0) is RouteState.FAILED
    health.observe({(LONG, "cpu"): ["a", "new"]}, 2.0)
    assert health.healthy_counts(LONG, 2.0) == {"cpu": 1}


def test_a_replica_only_briefly_unreachable_comes_back_after_the_mark():
    health = RouteHealth()
    health.observe({(LONG, "cpu"): ["a"]}, 0.0)
    health.replica_failed(_lost(LONG, "a"), 1.0)
    health.observe({(LONG, "cpu"): ["a"]}, 1.0 + FAILURE_MARK_S - 0.1)
    assert health.state(LONG, 1.0 + FAILURE_MARK_S - 0.1) is RouteState.FAILED
    health.observe({(LONG, "cpu"): ["a"]}, 1.0 + FAILURE_MARK_S)
    assert health.state(LONG, 1.0 + FAILURE_MARK_S) is RouteState.HEALTHY


def test_no_replica_without_a_failure_is_cold_and_shapes_count_apart():
    health = RouteHealth()
    health.observe({(LONG, "cpu"): [], (LONG, "1g.10gb"): []}, 0.0)
    assert health.state(LONG, 0.0) is RouteState.COLD
    health.observe({(LONG, "cpu"): [], (LONG, "1g.10gb"): ["m"]}, 1.0)
    health.replica_failed(_lost(LONG, "x", shape="cpu"), 1.0)
    assert health.healthy_counts(LONG, 1.0) == {"cpu": 0, "1g.10gb": 1}
    assert health.state(LONG, 1.0) is RouteState.HEALTHY


@pytest.mark.parametrize(
    ("states", "order"),
    [
        ({"long": RouteState.HEALTHY, "short": RouteState.HEALTHY}, ["long", "short"]),
        ({"long": RouteState.UNKNOWN, "short": RouteState.HEALTHY}, ["long", "short"]),
        ({"long": RouteState.FAILED, "short": RouteState.HEALTHY}, ["short"]),
        ({"long": RouteState.COLD, "short": RouteState.HEALTHY}, ["short", "long"]),
        ({"long": RouteState.COLD, "short": RouteState.FAILED}, ["long"]),
        ({"long": RouteState.FAILED, "short": RouteState.FAILED}, []),
    ],
)
def test_failover_order(states, order):
    assert failover_order("long", ["short"], states) == order


def test_next_route_tries_the_chosen_route_twice_then_moves_on():
    order = ["long", "short"]
    assert next_route(order, {}) == "long"
    assert next_route(order, {"long": 1}) == "long"
    assert next_route(order, {"long": 2}) == "short"
    assert next_route(order, {"long": 2, "short": 2}) is None


def test_retries_stop_once_bytes_went_out_or_attempts_ran_out():
    assert may_retry(1, bytes_sent=False)
    assert not may_retry(1, bytes_sent=True)
    assert not may_retry(MAX_ATTEMPTS, bytes_sent=False)


def test_fallbacks_are_the_models_other_routes_that_fit_default_first():
    raw = app_config()
    raw["routes"].append({**raw["routes"][1], "name": "tiny-context", "query_types": [],
                          "engine": {**raw["routes"][1]["engine"], "max_model_len": 64}})
    raw["routes"].append({**raw["routes"][1], "name": "spare", "query_types": []})
    router = QueryRouter(parse_config(raw))
    long_request = router.decide(MODEL_ID, input_tokens=20, max_tokens=800)
    assert router.fallbacks(long_request) == ["short-output", "spare"]
    short_request = router.decide(MODEL_ID, input_tokens=10, max_tokens=10)
    assert router.fallbacks(short_request) == ["long-output", "tiny-context", "spare"]


@pytest.mark.parametrize(
    ("running", "ongoing", "queued", "ingresses", "capacity"),
    [(1, 64, 64, 1, 128), (2, 64, 64, 1, 192), (0, 64, 64, 1, 64), (3, 2, 2, 2, 5), (1, 2, 2, 1, 4)],
)
def test_deployment_capacity_follows_serves_bound(running, ongoing, queued, ingresses, capacity):
    assert deployment_capacity(running, ongoing, queued, ingresses) == capacity


def test_deployment_capacity_refuses_nonsense():
    with pytest.raises(ValueError, match="ingress_replicas 0"):
        deployment_capacity(1, 1, 1, 0)


def test_in_flight_admits_up_to_capacity_and_frees_on_release():
    counts = InFlight()
    assert [counts.try_admit("r", 2) for _ in range(3)] == [True, True, False]
    counts.release("r")
    assert counts.try_admit("r", 2)
    assert counts.count("r") == 2
    with pytest.raises(ValueError, match="without an admitted request"):
        counts.release("other")
