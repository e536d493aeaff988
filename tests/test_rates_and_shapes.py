"""The ingress's rate window and its spreading of requests over a route's shapes."""

from __future__ import annotations

from collections import Counter

import pytest

from oasis_ray.query_types import QueryType
from oasis_ray.request_rates import RateWindow
from oasis_ray.scaling.traffic import TrafficReport
from oasis_ray.telemetry.latency_window import LatencyWindow
from oasis_ray.shape_choice import ShapeBalancer


def test_rate_over_full_window():
    window = RateWindow(10.0, started_s=0.0)
    for i in range(50):
        window.record("m/a", 20.0 + i * 0.2)
    assert window.rates(30.0, ["m/a", "m/b"]) == {"m/a": pytest.approx(5.0), "m/b": 0.0}


def test_old_arrivals_leave_the_window():
    window = RateWindow(10.0, started_s=0.0)
    for t in (1.0, 2.0, 25.0):
        window.record("m/a", t)
    assert window.rates(30.0, ["m/a"])["m/a"] == pytest.approx(0.1)


def test_young_window_uses_time_since_start():
    window = RateWindow(30.0, started_s=100.0)
    for t in (100.5, 101.0, 101.5, 102.0):
        window.record("m/a", t)
    assert window.rates(102.0, ["m/a"])["m/a"] == pytest.approx(2.0)


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window_s"):
        RateWindow(0, started_s=0)


def test_a_traffic_report_round_trips_through_metrics_even_when_the_model_id_has_slashes():
    route = "meta-llama/Llama-3-8B/short-output"
    report = TrafficReport(type_rates={route: {QueryType.SISO: 1.5, QueryType.LISO: 0.0}})
    metrics = report.to_metrics()
    assert metrics == {f"oasis_type_rps:{route}/SISO": 1.5, f"oasis_type_rps:{route}/LISO": 0.0}
    decoded = TrafficReport.from_metrics({name: {"replica-1": rate} for name, rate in metrics.items()})
    assert decoded == report
    assert decoded.route_rates() == {route: 1.5}


def test_a_report_sums_ingress_replicas_and_ignores_what_is_not_a_type_rate():
    metrics = {
        "oasis_type_rps:m/short-output/SISO": {"ingress-1": 1.0, "ingress-2": 2.5},
        "oasis_type_rps:m/short-output/XX": {"ingress-1": 9.0},
        "oasis_type_rps:SISO": {"ingress-1": 9.0},
        "oasis_type_rps:m/long-output/SILO": {},
        "other": {"ingress-1": 9.0},
    }
    assert TrafficReport.from_metrics(metrics) == TrafficReport(type_rates={"m/short-output": {QueryType.SISO: 3.5}})


def test_cold_start_shape_when_nothing_runs():
    balancer = ShapeBalancer({"m/a": "1g.10gb"})
    assert balancer.pick("m/a", {}) == "1g.10gb"
    assert balancer.pick("m/a", {"full-gpu": 0, "1g.10gb": 0}) == "1g.10gb"


def test_requests_follow_capacity_across_shapes():
    balancer = ShapeBalancer({"m/a": "1g.10gb"})
    picks = Counter(balancer.pick("m/a", {"full-gpu": 1, "1g.10gb": 7}) for _ in range(1400))
    assert picks == {"full-gpu": 700, "1g.10gb": 700}


def test_only_running_shapes_are_chosen():
    balancer = ShapeBalancer({"m/a": "1g.10gb"})
    picks = {balancer.pick("m/a", {"full-gpu": 2, "1g.10gb": 0}) for _ in range(10)}
    assert picks == {"full-gpu"}


def test_windows_stay_bounded_when_nobody_reads_them() -> None:
    rates, latencies = RateWindow(10.0, started_s=0.0), LatencyWindow(10.0)
    for second in range(1000):
        rates.record("tiny/short-output", float(second))
        latencies.record("tiny/SISO", float(second), 0.5)
    assert len(rates._arrivals["tiny/short-output"]) <= 11
    assert len(latencies._samples["tiny/SISO"]) <= 11
    assert rates.rates(999.0, ["tiny/short-output"]) == {"tiny/short-output": 1.1}
