"""The cost table's one reader: configuration selection and the traffic report that feeds the core.

Pure: synthetic candidates and capacities chosen by each test.
"""

from __future__ import annotations

import numpy as np
import pytest

from oasis_ray.costs.config_choice import DEFAULT_CLOCK, Candidates, FixedConfiguration, choose_configuration
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.settings import ScalingConfig
from oasis_ray.scaling.shapes import RouteCapacity, ShapeOption
from oasis_ray.scaling.state import ScalingState
from oasis_ray.scaling.traffic import TrafficReport, decide_on_report


def candidates(rows: list[tuple[int, int, str, float]]) -> Candidates:
    """(clock, batch, variant, msrr) per row; energy per request 100 / msrr."""
    clock, batch, variant, msrr = (np.asarray(column) for column in zip(*rows))
    return Candidates(clock_mhz=clock.astype(np.int64), max_num_seqs=batch.astype(np.int64),
                      variant=variant.astype(object), msrr_rps=msrr.astype(float),
                      energy_per_request_j=100.0 / msrr.astype(float))


def test_a_fixed_configuration_prefers_default_clocks_then_the_fastest_row() -> None:
    rows = [(1410, 16, "standard", 9.0), (DEFAULT_CLOCK, 16, "standard", 3.0), (DEFAULT_CLOCK, 16, "standard", 4.0),
            (DEFAULT_CLOCK, 64, "standard", 8.0), (DEFAULT_CLOCK, 16, "chunked_prefill", 7.0)]
    assert choose_configuration(candidates(rows), FixedConfiguration(max_num_seqs=16, variant="standard")) == 2


def test_without_default_clock_rows_a_fixed_configuration_takes_the_highest_clock() -> None:
    rows = [(855, 16, "standard", 5.0), (1410, 16, "standard", 4.0), (1215, 16, "standard", 6.0)]
    assert choose_configuration(candidates(rows), FixedConfiguration(max_num_seqs=16, variant="standard")) == 1


def test_a_fixed_configuration_never_measured_or_never_meeting_the_slo_has_no_choice() -> None:
    rows = [(DEFAULT_CLOCK, 16, "standard", 0.0), (1410, 16, "standard", 5.0), (DEFAULT_CLOCK, 64, "standard", 5.0)]
    assert choose_configuration(candidates(rows), FixedConfiguration(max_num_seqs=16, variant="standard")) is None
    assert choose_configuration(candidates(rows), FixedConfiguration(max_num_seqs=32, variant="standard")) is None


def _capacity(route: str) -> RouteCapacity:
    option = ShapeOption(shape="full-gpu", msrr_rps=1.0, msrr_by_type={QueryType.SISO: 4.0, QueryType.LISO: 1.0})
    return RouteCapacity(route=route, options=(option,))


def test_the_core_sizes_each_reported_route_at_its_mix_and_leaves_unreported_routes_alone() -> None:
    """3 req/s of SISO alone at 4 req/s each is 0.75 x 1.1 = 0.825 GPU: one; at the slowest type's it would be 4."""
    report = TrafficReport(type_rates={"m/a": {QueryType.SISO: 3.0, QueryType.LISO: 0.0}})
    config = ScalingConfig(upscale_cooldown_s=0)
    kwargs = {"now_s": 10.0, "current_replicas": {"m/a": {"full-gpu": 1}, "m/b": {"full-gpu": 1}}, "config": config}
    decision, state = decide_on_report(report, (_capacity("m/a"), _capacity("m/b")), state=ScalingState(), **kwargs)
    assert decision is not None and set(decision.routes) == {"m/a"}
    assert decision.routes["m/a"].replicas == {"full-gpu": 1}
    slowest, _ = decide_on_report(report, (_capacity("m/a"),), state=ScalingState(), at_mix=False, **kwargs)
    assert slowest is not None and slowest.routes["m/a"].replicas == {"full-gpu": 4}
    none, kept = decide_on_report(TrafficReport(type_rates={}), (_capacity("m/a"),), state=state, **kwargs)
    assert none is None and kept == state


def test_a_traffic_report_refuses_a_negative_rate_naming_the_field() -> None:
    with pytest.raises(ValueError, match="type_rates"):
        TrafficReport(type_rates={"m/a": {QueryType.SISO: -1.0}})
