"""The cost table's one reader: configuration selection and the traffic report that feeds the core.

Pure: synthetic candidates and capacities chosen by each test.
"""

from __future__ import annotations

import numpy as np
import pytest

from oasis_ray.costs.config_choice import (
    DEFAULT_CLOCK,
    DEFAULT_POWER_LIMIT,
    Candidates,
    FixedConfiguration,
    choose_configuration,
)
from oasis_ray.intents import Intent
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.settings import ScalingConfig
from oasis_ray.scaling.shapes import RouteCapacity, ShapeOption
from oasis_ray.scaling.state import ScalingState
from oasis_ray.scaling.traffic import TrafficReport, decide_on_report


def candidates(rows: list[tuple[int, int, str, float]]) -> Candidates:
    """(clock, batch, variant, msrr) per row; energy per request 100 / msrr."""
    clock, batch, variant, msrr = (np.asarray(column) for column in zip(*rows))
    return Candidates(clock_mhz=clock.astype(np.int64), power_limit_w=np.full(len(rows), DEFAULT_POWER_LIMIT),
                      max_num_seqs=batch.astype(np.int64),
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


def test_rankings_computed_once_follow_slices_and_never_outlive_changed_figures() -> None:
    """A shape's candidates are slices of a type's rows ranked in one pass; a replace() that changes the figures
    (the mix's candidates, why_not's) ranks afresh rather than by the rows it was copied from."""
    from dataclasses import replace

    rows = candidates([(DEFAULT_CLOCK, 16, "standard", 2.0), (855, 16, "standard", 8.0), (1410, 64, "standard", 4.0)])
    rows.ranking(Intent.MIN_ENERGY)
    sliced = rows.subset(np.array([0, 2]))
    assert choose_configuration(sliced, "joint") == 1  # 25 J beats 50 J
    assert sliced.ranking(Intent.MIN_ENERGY)[0].tolist() == [50.0, 25.0]
    flipped = replace(sliced, energy_per_request_j=np.array([10.0, 90.0]))
    assert choose_configuration(flipped, "joint") == 0


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


# --- GPU settings and tensor parallelism in the live app's capacities ------------------------------

def _levers_table(tmp_path):
    """Full-GPU rows of one configuration at two clocks, with Table 3's power (seed 000), and a TP-2 row."""
    from tests.hct_factory import hct_row, write_table

    def row(query_type: str, msrr: float, clock: int, power: float, tp: int = 1):
        return hct_row(model_id="m", hardware_kind="gpu", query_type=query_type, msrr_req_s=msrr,
                       trial_id=f"{query_type}-{clock}-{tp}", clock_mhz=clock, clock_locked=True,
                       tensor_parallel_size=tp, power_available=True, power_note=None, mean_power_w=power,
                       energy_per_token_j=power / (msrr * 10))

    # The slow types stand for the route's long ones: the route serves all four types of its model.
    return write_table(tmp_path, [
        *(row(qt, 4.574, 1320, 239.4) for qt in ("SISO", "SILO")),
        *(row(qt, 4.234, 855, 145.2) for qt in ("SISO", "SILO")),
        *(row(qt, 2.0, 1320, 239.4) for qt in ("LISO", "LILO")),
        *(row(qt, 1.8, 855, 145.2) for qt in ("LISO", "LILO")),
        *(row(qt, 8.0, 1320, 470.0, tp=2) for qt in ("SISO", "SILO")),
        *(row(qt, 3.9, 1320, 470.0, tp=2) for qt in ("LISO", "LILO")),
    ])


def _live_config(table: object, clock_control: str, **route: object):
    from oasis_ray.config import parse_config

    return parse_config({
        "models": [{"model_id": "m", "default_route": "r"}],
        "routes": [{"name": "r", "model": "m", "engine": {"max_num_seqs": 4}, **route}],
        "clock_control": clock_control, "autoscaling": {"hct_path": str(table)},
    })


def test_under_apply_the_full_gpu_option_offers_the_tables_clock_levels(tmp_path) -> None:
    from oasis_ray.costs.live import live_route_capacities
    from oasis_ray.costs.table import CostTable
    from oasis_ray.device_setting import DeviceSetting
    from oasis_ray.profiling.hct import load_hct

    table = CostTable(load_hct(_levers_table(tmp_path)))
    [applied] = live_route_capacities(_live_config(tmp_path, "apply"), table)
    option = applied.whole_unit
    assert option.clock_mhz == 1320, "no default-clock row: the replicas start at the highest clock profiled"
    levels = {level.setting.sm_clock_mhz: level for level in option.levels}
    assert set(levels) == {1320, 855}
    assert levels[855].msrr_rps == pytest.approx(1.8) and levels[855].power_w == pytest.approx(145.2)
    assert levels[855].msrr_by_type == {QueryType.SISO: 4.234, QueryType.SILO: 4.234, QueryType.LISO: 1.8,
                                        QueryType.LILO: 1.8}

    [advisory] = live_route_capacities(_live_config(tmp_path, "advisory"), table)
    assert advisory.whole_unit.levels == () and advisory.whole_unit.clock_mhz == 1320

    pinned = _live_config(tmp_path, "apply", gpu_setting={"sm_clock_mhz": 855})
    [fixed] = live_route_capacities(pinned, table)
    assert fixed.whole_unit.levels == () and fixed.whole_unit.setting == DeviceSetting(sm_clock_mhz=855)
    assert fixed.whole_unit.msrr_rps == pytest.approx(1.8)


def test_a_tensor_parallel_route_reads_the_rows_of_its_degree(tmp_path) -> None:
    from oasis_ray.costs.live import CapacityError, live_route_capacities
    from oasis_ray.costs.table import CostTable
    from oasis_ray.profiling.hct import load_hct

    table = CostTable(load_hct(_levers_table(tmp_path)))
    [tp2] = live_route_capacities(_live_config(tmp_path, "off", resources={"tensor_parallel_size": 2}), table)
    assert (tp2.whole_unit.tensor_parallel_size, tp2.whole_unit.msrr_rps, tp2.whole_unit.gpus) == (2, 3.9, 2)
    with pytest.raises(CapacityError, match="route 'm/r' shape 'full-gpu': the HCT has no successful row"):
        live_route_capacities(_live_config(tmp_path, "off", resources={"tensor_parallel_size": 4}), table)
