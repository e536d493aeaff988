"""The ingress's dispatch loop with scripted route calls (no cluster): retries, failover, shedding, release."""

from __future__ import annotations

import asyncio
import copy
import dataclasses

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from deployments.dispatch import CHOSEN_TARGET, Dispatcher
from oasis_ray.api import OasisRequestError
from oasis_ray.config import parse_config
from oasis_ray.failover import RouteHealth
from oasis_ray.routing import QueryRouter
from oasis_ray.telemetry.instruments import DisabledTelemetry
from tests.conftest import LONG_ROUTE_MAX_ONGOING, LONG_ROUTE_MAX_QUEUED, MODEL_ID, app_config

LONG, SHORT = f"{MODEL_ID}/long-output", f"{MODEL_ID}/short-output"


def _died(actor_id: str) -> ActorDiedError:
    error = ActorDiedError()
    error.actor_id = actor_id
    return error


def _setup(running: dict[tuple[str, str], list[str]]):
    config = parse_config(app_config())
    router = QueryRouter(config)
    health = RouteHealth()
    health.observe(running, 0.0)
    return Dispatcher(config, router, health, DisabledTelemetry()), router, health


class Script:
    """Answers each call by the route it was sent to: an exception to raise or a value to return, in order."""

    def __init__(self, **by_route: list) -> None:
        self.by_route = {f"{MODEL_ID}/{route.replace('_', '-')}": list(steps) for route, steps in by_route.items()}
        self.calls: list[str] = []

    async def __call__(self):
        key, _ = CHOSEN_TARGET.get()
        self.calls.append(key)
        step = self.by_route[key].pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def test_a_replica_death_is_retried_on_the_route_then_the_default_route(caplog):
    dispatch, router, health = _setup({(LONG, "cpu"): ["a", "b"], (SHORT, "cpu"): ["s"]})
    decision = router.decide(MODEL_ID, 20, 800)
    script = Script(long_output=[_died("a"), _died("b")], short_output=["answer"])
    dispatched = asyncio.run(dispatch.send(decision, script))
    assert script.calls == [LONG, LONG, SHORT]
    assert (dispatched.result, dispatched.decision.route) == ("answer", "short-output")
    assert [r.message for r in caplog.records if "oasis retry" in r.message][-1].endswith(
        "reason=replica_lost replica=b attempts=2 next_route=short-output")
    dispatched.release()
    assert dispatch._in_flight.count((LONG, "cpu")) == dispatch._in_flight.count((SHORT, "cpu")) == 0


def test_a_failed_route_is_skipped_without_a_call():
    dispatch, router, health = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    script = Script(long_output=[_died("a")], short_output=["one", "two"])
    asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script))
    asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script))
    assert script.calls == [LONG, SHORT, SHORT]


def test_nothing_left_to_serve_is_503_with_retry_after():
    dispatch, router, _ = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    script = Script(long_output=[_died("a")], short_output=[_died("s")])
    with pytest.raises(OasisRequestError) as refused:
        asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script))
    assert (refused.value.status_code, refused.value.error_type, refused.value.retry_after_s) == (503, "unavailable", 5)


def test_the_requests_own_errors_pass_through_and_free_the_slot():
    dispatch, router, _ = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    with pytest.raises(ValueError, match="own"):
        asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), Script(long_output=[ValueError("own")])))
    assert dispatch._in_flight.count((LONG, "cpu")) == 0


def test_past_the_bound_requests_are_shed_before_any_call():
    dispatch, router, _ = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    capacity = LONG_ROUTE_MAX_QUEUED + LONG_ROUTE_MAX_ONGOING
    script = Script(long_output=["ok"] * capacity)
    held = [asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script)) for _ in range(capacity)]
    with pytest.raises(OasisRequestError) as shed:
        asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script))
    assert (shed.value.status_code, shed.value.error_type) == (503, "overloaded")
    assert len(script.calls) == capacity
    held[0].release()
    held[0].release()  # twice is once
    assert dispatch._in_flight.count((LONG, "cpu")) == capacity - 1


def test_serves_own_backpressure_is_a_503_too():
    dispatch, router, _ = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    script = Script(long_output=[BackPressureError(num_queued_requests=2, max_queued_requests=2)])
    with pytest.raises(OasisRequestError) as shed:
        asyncio.run(dispatch.send(router.decide(MODEL_ID, 20, 800), script))
    assert (shed.value.status_code, shed.value.error_type) == (503, "overloaded")


def test_a_request_waiting_on_a_route_leaves_when_the_route_fails():
    dispatch, router, _ = _setup({(LONG, "cpu"): ["a"], (SHORT, "cpu"): ["s"]})
    release_first = asyncio.Event()

    async def scenario():
        async def call():
            key, _ = CHOSEN_TARGET.get()
            if key == SHORT:
                return "elsewhere"
            await release_first.wait()  # waits in "Serve's queue" until another request's failure
            raise _died("a")

        async def failing_call():
            raise _died("a")

        waiting = asyncio.ensure_future(dispatch.send(router.decide(MODEL_ID, 20, 800), call))
        await asyncio.sleep(0.01)
        failed = await dispatch.send(router.decide(MODEL_ID, 20, 800),
                                     lambda: failing_call() if CHOSEN_TARGET.get()[0] == LONG else call())
        return await asyncio.wait_for(waiting, 5), failed

    waited, failed = asyncio.run(scenario())
    assert (waited.result, waited.decision.route) == ("elsewhere", "short-output")
    assert failed.decision.route == "short-output"


def test_an_intents_shape_takes_the_first_attempt_and_a_retry_spreads():
    raw = copy.deepcopy(app_config())
    raw["routes"][1]["mig_shapes"] = [{"profile": "1g.10gb", "resources": {"accelerator": "cpu", "cpus": 0.25}}]
    config = parse_config(raw)
    router = QueryRouter(config)
    health = RouteHealth()
    health.observe({(LONG, "cpu"): ["a", "b"], (LONG, "1g.10gb"): ["m"], (SHORT, "cpu"): ["s"]}, 0.0)
    dispatch = Dispatcher(config, router, health, DisabledTelemetry())
    decision = dataclasses.replace(router.decide(MODEL_ID, 20, 800), shape="1g.10gb")
    shapes: list[str] = []

    async def call():
        key, shape = CHOSEN_TARGET.get()
        shapes.append(shape)
        if len(shapes) == 1:
            raise _died("m")
        return key

    dispatched = asyncio.run(dispatch.send(decision, call))
    assert shapes == ["1g.10gb", "cpu"]
    assert (dispatched.result, dispatched.shape) == (LONG, "cpu")
