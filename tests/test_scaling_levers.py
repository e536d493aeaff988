"""The scaling core's other levers: a GPU setting (clock) changed instead of a replica count, and TP-N replicas.

Power and throughput of the two clocks are OASIS Table 3 (seed 000): Llama-3-8B on
an A100 at 1320 MHz, 239.4 W and 914.8 tok/s; at 855 MHz, 145.2 W and 846.7 tok/s.
The request rates divide those throughputs by 200 output tokens per request, a
placeholder: the paper gives no request rate per clock.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.allocation import gpus_required, size_route
from oasis_ray.scaling.core import RouteTarget, TickInput, decide
from oasis_ray.scaling.mix import mix_capacity
from oasis_ray.scaling.settings import RouteLimits, ScalingConfig
from oasis_ray.scaling.shapes import RouteCapacity, SettingLevel, ShapeOption
from oasis_ray.scaling.state import ScalingState

ROUTE = "llama-3-8b/all"
TOKENS_PER_REQUEST = 200
HIGH = SettingLevel(setting=DeviceSetting(sm_clock_mhz=1320), msrr_rps=914.8 / TOKENS_PER_REQUEST, power_w=239.4)
LOW = SettingLevel(setting=DeviceSetting(sm_clock_mhz=855), msrr_rps=846.7 / TOKENS_PER_REQUEST, power_w=145.2)


def clocked(levels: tuple[SettingLevel, ...] = (HIGH, LOW)) -> RouteCapacity:
    """The route starts at the fastest level, as the live app does before it has seen traffic."""
    return RouteCapacity(route=ROUTE, options=(ShapeOption(
        shape="full-gpu", msrr_rps=HIGH.msrr_rps, power_w=HIGH.power_w, clock_mhz=1320, levels=levels),))


def config(**overrides: object) -> ScalingConfig:
    settings: dict[str, object] = {"headroom": 0.0, "hysteresis": 0.2, "upscale_cooldown_s": 30.0,
                                   "downscale_cooldown_s": 300.0, "clock_cooldown_s": 30.0,
                                   "default_limits": {"min_replicas": 1, "max_replicas": 4}}
    return ScalingConfig.model_validate({**settings, **overrides})


def tick(now_s: float, rate: float, running: int, state: ScalingState, conf: ScalingConfig | None = None,
         capacity: RouteCapacity | None = None) -> tuple[RouteTarget, ScalingState]:
    decision, next_state = decide(TickInput(
        now_s=now_s, observed_rps={ROUTE: rate}, current_replicas={ROUTE: {"full-gpu": running}},
        routes=(capacity or clocked(),), config=conf or config(), state=state))
    return decision.routes[ROUTE], next_state


LIMITS = RouteLimits(min_replicas=1, max_replicas=4)


@pytest.mark.parametrize(("need", "replicas", "clock"), [
    (2.0, 1, 855),    # light load: one replica at the low clock, 145 W
    (4.4, 1, 1320),   # above 855's 4.23 rps: one replica at 1320 MHz (239 W) beats two at 855 (290 W)
    (6.0, 2, 855),    # two replicas either way: two at 855 (290 W) beat two at 1320 (479 W)
])
def test_sizing_takes_the_setting_and_replicas_of_fewest_watts(need: float, replicas: int, clock: int) -> None:
    sizing = size_route(need, clocked(), LIMITS, idle_to_zero=False)
    assert (sizing.allocation.replicas, sizing.allocation.setting) == (replicas, DeviceSetting(sm_clock_mhz=clock))
    assert "fewest watts" in sizing.explanation


def test_without_power_figures_the_fastest_setting_is_taken() -> None:
    unknown = (HIGH, LOW.model_copy(update={"power_w": None}))
    sizing = size_route(2.0, clocked(unknown), LIMITS, idle_to_zero=False)
    assert sizing.allocation.setting == HIGH.setting and "power unknown" in sizing.explanation


def test_a_rise_one_replica_can_carry_at_a_higher_clock_raises_the_clock_at_once() -> None:
    first, state = tick(0.0, 2.0, 1, ScalingState())
    assert first.setting == LOW.setting and first.record.action == "set_clock"
    raised, state = tick(5.0, 4.4, 1, state)  # inside every cooldown
    assert raised.record.action == "set_clock" and raised.setting == HIGH.setting
    assert raised.replicas == {"full-gpu": 1}
    line = raised.record.log_line()
    assert "action=set_clock" in line and "clock_mhz=1320" in line, line


def test_a_rise_past_one_replica_is_met_by_the_clock_until_the_new_replica_runs() -> None:
    _, state = tick(0.0, 2.0, 1, ScalingState())
    held, state = tick(5.0, 6.0, 1, state)
    assert held.record.action == "hold" and "upscale cooldown" in held.record.reason
    assert held.replicas == {"full-gpu": 1} and held.setting == HIGH.setting, "the clock bridges the cooldown"
    added, state = tick(31.0, 6.0, 1, state)
    assert added.record.action == "scale_up" and added.replicas == {"full-gpu": 2}
    assert added.setting == HIGH.setting, "the second replica is still starting"
    settled, state = tick(40.0, 6.0, 2, state)
    assert settled.replicas == {"full-gpu": 2} and settled.setting == LOW.setting
    assert settled.record.changed and settled.record.setting_before == HIGH.setting


def test_a_lower_clock_waits_for_its_cooldown_and_the_hysteresis_band() -> None:
    _, state = tick(0.0, 4.4, 1, ScalingState())
    inside_band, state = tick(40.0, 3.6, 1, state)  # 855 would serve 4.23; 3.6 is above 4.23 x 0.8
    assert inside_band.record.action == "hold" and "hysteresis" in inside_band.record.reason
    assert inside_band.setting == HIGH.setting
    cooling, state = tick(45.0, 2.0, 1, state.model_copy(update={"routes": {
        ROUTE: state.routes[ROUTE].model_copy(update={"changed_at_s": 30.0})}}))
    assert cooling.record.action == "hold" and "clock cooldown" in cooling.record.reason
    lowered, state = tick(61.0, 2.0, 1, state)
    assert lowered.record.action == "set_clock" and lowered.setting == LOW.setting


def test_advisory_reports_the_setting_but_tells_the_replicas_nothing() -> None:
    target, _ = tick(0.0, 2.0, 1, ScalingState(), config(advisory=True))
    assert target.setting is None
    assert target.record.setting_after == LOW.setting and target.record.reason.startswith("advisory: ")


def test_levels_follow_the_mix_of_query_types() -> None:
    per_type = {QueryType.SISO: 8.0, QueryType.SILO: 2.0}
    level = SettingLevel(setting=DeviceSetting(sm_clock_mhz=855), msrr_rps=2.0, msrr_by_type=per_type, power_w=145.2)
    option = ShapeOption(shape="full-gpu", msrr_rps=2.0, msrr_by_type=per_type, power_w=145.2, clock_mhz=855,
                         levels=(level,))
    mixed = mix_capacity(RouteCapacity(route=ROUTE, options=(option,)), {QueryType.SISO: 3.0, QueryType.SILO: 1.0})
    assert mixed.options[0].levels[0].msrr_rps == pytest.approx(4.0 / (3.0 / 8.0 + 1.0 / 2.0))


def test_a_tensor_parallel_replica_counts_as_its_gpus() -> None:
    tp2 = RouteCapacity(route=ROUTE, options=(ShapeOption(shape="full-gpu", msrr_rps=5.0, tensor_parallel_size=2),))
    sizing = size_route(12.0, tp2, LIMITS, idle_to_zero=False)
    assert sizing.allocation.replicas == 3 and "of 2 GPUs" in sizing.explanation
    assert gpus_required(12.0, tp2) == pytest.approx(4.8)
    assert tp2.options[0].gpus == 2


@pytest.mark.parametrize(("option", "field"), [
    ({"shape": "1g.10gb", "msrr_rps": 1.0, "tensor_parallel_size": 2}, "tensor_parallel_size"),
    ({"shape": "1g.10gb", "msrr_rps": 1.0, "levels": [LOW]}, "levels"),
    ({"shape": "full-gpu", "msrr_rps": 1.0, "clock_mhz": 1410, "levels": [LOW]}, "levels"),
    ({"shape": "full-gpu", "msrr_rps": 1.0, "clock_mhz": 855, "levels": [LOW, LOW]}, "levels"),
])
def test_impossible_levers_are_refused_naming_the_field(option: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field}: "):
        ShapeOption.model_validate(option)
