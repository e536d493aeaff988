"""The MSRR search against synthetic engines whose true MSRR is known exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from oasis_ray.profiling.measurement import LoadPoint
from oasis_ray.profiling.msrr_search import meets_slo, search_msrr
from oasis_ray.profiling.sweep_spec import SearchSettings, SloSpec


def point(concurrency: int, *, rate: float, p95: float, ttft_p95: float = 0.01, tpot_p95: float = 0.001) -> LoadPoint:
    return LoadPoint(
        concurrency=concurrency,
        warmup_requests=concurrency,
        measured_requests=max(10, 2 * concurrency),
        window_s=1.0,
        e2e_p50_s=p95 / 2,
        e2e_p95_s=p95,
        e2e_p99_s=p95 * 1.1,
        ttft_p50_s=ttft_p95 / 2,
        ttft_p95_s=ttft_p95,
        ttft_p99_s=ttft_p95 * 1.1,
        tpot_p50_s=tpot_p95 / 2,
        tpot_p95_s=tpot_p95,
        tpot_p99_s=tpot_p95 * 1.1,
        requests_per_s=rate,
        output_tokens_per_s=rate * 100,
        power_available=False,
        mean_power_w=math.nan,
        energy_j=math.nan,
        energy_per_token_j=math.nan,
        sm_clock_mhz=math.nan,
    )


class BatchingEngine:
    """A batch of `batch` requests takes `service_s`; beyond the batch, requests queue.

    Throughput saturates at batch / service_s and latency grows linearly past
    the batch, the shape a real engine has.
    """

    def __init__(self, batch: int, service_s: float) -> None:
        self.batch = batch
        self.service_s = service_s
        self.measured: list[int] = []

    def __call__(self, concurrency: int) -> LoadPoint:
        self.measured.append(concurrency)
        latency = self.service_s * max(1.0, concurrency / self.batch)
        return point(concurrency, rate=min(concurrency, self.batch) / self.service_s, p95=latency)


class ProportionalEngine:
    """Throughput and latency both grow with concurrency: no plateau, so bisection must narrow the bracket."""

    def __init__(self) -> None:
        self.measured: list[int] = []

    def __call__(self, concurrency: int) -> LoadPoint:
        self.measured.append(concurrency)
        return point(concurrency, rate=float(concurrency), p95=0.1 * concurrency)


def run(engine: Callable[[int], LoadPoint], slo_s: float, **settings: object):
    return search_msrr(engine, SloSpec(p95_e2e_s=slo_s), SearchSettings.model_validate(settings))


def test_bisection_finds_a_saturated_engines_msrr_with_far_fewer_points_than_the_ramp() -> None:
    fast_engine, slow_engine = BatchingEngine(batch=8, service_s=0.5), BatchingEngine(batch=8, service_s=0.5)
    fast = run(fast_engine, 3.0, mode="bisection", tolerance=0.05)
    slow = run(slow_engine, 3.0, mode="linear")
    assert fast_engine.measured == [1, 2, 4, 8, 16, 32, 64]
    assert slow_engine.measured == list(range(1, 50))
    assert fast.msrr_req_s == slow.msrr_req_s == 16.0
    assert len(slow.points) / len(fast.points) == 7.0
    assert [p.concurrency for p in fast.points] == fast_engine.measured


def test_bisection_narrows_to_the_tolerance_when_throughput_keeps_rising() -> None:
    engine = ProportionalEngine()
    result = run(engine, 3.05, mode="bisection", tolerance=0.05)
    assert engine.measured == [1, 2, 4, 8, 16, 32, 24, 28, 30, 31]
    assert result.best is not None and result.best.concurrency == 30
    assert result.msrr_req_s == 30.0
    assert not result.capped


def test_a_coarser_tolerance_stops_earlier_and_stays_within_it() -> None:
    engine = ProportionalEngine()
    result = run(engine, 3.05, mode="bisection", tolerance=0.25)
    assert engine.measured == [1, 2, 4, 8, 16, 32, 24, 28]
    assert result.msrr_req_s == 28.0
    assert (30.0 - result.msrr_req_s) / 30.0 <= 0.25


def test_no_concurrency_is_measured_twice() -> None:
    engine = BatchingEngine(batch=3, service_s=0.2)
    run(engine, 1.0, mode="bisection", tolerance=0.01)
    assert len(engine.measured) == len(set(engine.measured))


def test_an_engine_that_misses_the_slo_at_concurrency_one_has_msrr_zero() -> None:
    engine = BatchingEngine(batch=4, service_s=5.0)
    result = run(engine, 2.0)
    assert engine.measured == [1]
    assert (result.best, result.msrr_req_s, result.capped) == (None, 0.0, False)


def test_a_search_that_never_misses_stops_at_max_concurrency_and_says_so() -> None:
    engine = BatchingEngine(batch=1000, service_s=0.1)
    result = run(engine, 5.0, max_concurrency=40)
    assert engine.measured == [1, 2, 4, 8, 16, 32, 40]
    assert result.capped
    assert result.msrr_req_s == 400.0


def test_linear_ramp_takes_steps_and_stops_at_the_first_miss() -> None:
    engine = ProportionalEngine()
    result = run(engine, 1.05, mode="linear", linear_step=4)
    assert engine.measured == [4, 8, 12]
    assert result.msrr_req_s == 8.0


def test_msrr_is_the_best_passing_throughput_even_when_a_lower_concurrency_beat_a_higher_one() -> None:
    rates = {1: 10.0, 2: 30.0, 4: 25.0, 8: 26.0}
    result = search_msrr(
        lambda c: point(c, rate=rates.get(c, 20.0), p95=0.5 if c <= 8 else 9.0),
        SloSpec(p95_e2e_s=1.0),
        SearchSettings(tolerance=0.05),
    )
    assert result.best is not None and (result.best.concurrency, result.msrr_req_s) == (2, 30.0)


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (SloSpec(p95_e2e_s=1.0), True),
        (SloSpec(p95_e2e_s=0.4), False),
        (SloSpec(p95_e2e_s=1.0, p95_ttft_s=0.1), True),
        (SloSpec(p95_e2e_s=1.0, p95_ttft_s=0.05), False),
        (SloSpec(p95_e2e_s=1.0, p95_tpot_s=0.001), False),
    ],
)
def test_every_configured_limit_must_hold(slo: SloSpec, expected: bool) -> None:
    assert meets_slo(point(4, rate=1.0, p95=0.5, ttft_p95=0.08, tpot_p95=0.002), slo) is expected


def test_an_unmeasured_percentile_never_meets_a_limit() -> None:
    assert not meets_slo(point(1, rate=1.0, p95=0.1, tpot_p95=math.nan), SloSpec(p95_e2e_s=1.0, p95_tpot_s=1.0))


def test_ladder_doubles_until_the_engine_saturates() -> None:
    engine = BatchingEngine(batch=8, service_s=0.5)
    result = run(engine, 30.0, mode="ladder", tolerance=0.1)
    assert engine.measured == [1, 2, 4, 8, 16]
    assert result.msrr_req_s == 16.0 and not result.capped


def test_ladder_stops_at_the_first_miss_or_at_max_concurrency() -> None:
    missing = ProportionalEngine()
    run(missing, 0.5, mode="ladder")
    assert missing.measured == [1, 2, 4, 8]
    capped = ProportionalEngine()
    result = run(capped, 100.0, mode="ladder", max_concurrency=12)
    assert capped.measured == [1, 2, 4, 8, 12]
    assert result.capped
