"""The autoscaler's pure decision core: Algorithm 1, damping, scale to zero, advisory mode, moves and forecasts.

The capacity figures are the paper's where it gives them (Llama-3-8B, LISO,
MSRR 4.54 req/s on a full A100); the MIG slices' MSRRs are made up but
ordered as real ones are.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest
from pydantic import ValidationError

from oasis_ray.query_types import QueryType
from oasis_ray.scaling.allocation import size_route
from oasis_ray.scaling.settings import EwmaPeakForecast, HoltForecast, RouteLimits, ScalingConfig
from oasis_ray.scaling.core import RouteTarget, TickInput, decide
from oasis_ray.scaling.forecast import EwmaPeakForecaster, EwmaPeakState, HoltForecaster, HoltState, advance_forecast
from oasis_ray.scaling.mix import mix_capacity, mix_msrr
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.scaling.shapes import RouteCapacity, ShapeOption
from oasis_ray.scaling.state import ScalingState

ROUTE = "llama-3-8b/LISO"
FULL_MSRR = 4.54
SLICE_1G_MSRR = 0.9
SLICE_3G_MSRR = 2.3
TICK_S = 10.0


def llama_capacity(*, with_mig: bool = True) -> RouteCapacity:
    options = [ShapeOption(shape="full-gpu", msrr_rps=FULL_MSRR, clock_mhz=1410, max_num_seqs=16, power_w=310.0)]
    if with_mig:
        options += [
            ShapeOption(shape="3g.40gb", msrr_rps=SLICE_3G_MSRR),
            ShapeOption(shape="1g.10gb", msrr_rps=SLICE_1G_MSRR),
        ]
    return RouteCapacity(route=ROUTE, options=tuple(options))


def undamped(**overrides: object) -> ScalingConfig:
    """Algorithm 1 alone: no headroom, cooldown or hysteresis, so the expected numbers are the paper's."""
    settings: dict[str, object] = {
        "headroom": 0.0, "hysteresis": 0.0, "upscale_cooldown_s": 0.0, "downscale_cooldown_s": 0.0,
    }
    return ScalingConfig.model_validate({**settings, **overrides})


def tick(
    now_s: float,
    rate_rps: float | None,
    config: ScalingConfig,
    *,
    running: dict[str, int] | None = None,
    state: ScalingState | None = None,
    capacity: RouteCapacity | None = None,
) -> tuple[RouteTarget, ScalingState]:
    decision, next_state = decide(
        TickInput(
            now_s=now_s,
            observed_rps={} if rate_rps is None else {ROUTE: rate_rps},
            current_replicas={ROUTE: running or {}},
            routes=(capacity or llama_capacity(),),
            config=config,
            state=state or ScalingState(),
        )
    )
    return decision.routes[ROUTE], next_state


def running(target: RouteTarget) -> dict[str, int]:
    return {shape: count for shape, count in target.replicas.items() if count}


# --- Algorithm 1 -------------------------------------------------------------------------------


def test_paper_llama_at_41_requests_per_hour_fits_the_smallest_mig_slice() -> None:
    target, _ = tick(0.0, 41 / 3600, undamped())
    record = target.record
    assert record.gpus_required is not None
    assert record.gpus_required == pytest.approx(41 / 3600 / FULL_MSRR)
    assert round(record.gpus_required, 4) == 0.0025
    assert (record.chosen_shape, record.chosen_replicas, record.msrr_rps) == ("1g.10gb", 1, SLICE_1G_MSRR)
    assert target.replicas == {"1g.10gb": 1, "3g.40gb": 0, "full-gpu": 0}


def test_paper_llama_at_10_rps_needs_three_full_gpus() -> None:
    target, _ = tick(0.0, 10.0, undamped())
    assert target.record.gpus_required == pytest.approx(2.2026, abs=1e-4)
    assert (target.record.chosen_shape, target.record.msrr_rps) == ("full-gpu", FULL_MSRR)
    assert target.replicas == {"1g.10gb": 0, "3g.40gb": 0, "full-gpu": 3}
    assert target.record.action == "scale_up"


@pytest.mark.parametrize(
    ("rate_rps", "shape"),
    [(0.9, "1g.10gb"), (0.91, "3g.40gb"), (2.3, "3g.40gb"), (2.31, "full-gpu"), (4.54, "full-gpu")],
)
def test_below_one_gpu_the_smallest_covering_slice_else_one_full_gpu(rate_rps: float, shape: str) -> None:
    sizing = size_route(rate_rps, llama_capacity(), RouteLimits(), idle_to_zero=False)
    assert (sizing.allocation.shape, sizing.allocation.replicas) == (shape, 1)


def test_a_route_without_mig_shapes_gets_one_full_gpu_below_one() -> None:
    sizing = size_route(0.01, llama_capacity(with_mig=False), RouteLimits(), idle_to_zero=False)
    assert (sizing.allocation.shape, sizing.allocation.replicas) == ("full-gpu", 1)
    assert sizing.explanation == "no MIG slice covers the need, so 1 full-gpu"


@pytest.mark.parametrize(
    ("rate_rps", "headroom", "expected"),
    [
        (9.0, 0.0, ("full-gpu", 2)),
        (9.0, 0.1, ("full-gpu", 3)),
        (0.85, 0.0, ("1g.10gb", 1)),
        (0.85, 0.1, ("3g.40gb", 1)),
    ],
)
def test_headroom_sizes_for_the_rate_plus_its_share(
    rate_rps: float, headroom: float, expected: tuple[str, int]
) -> None:
    target, _ = tick(0.0, rate_rps, undamped(headroom=headroom))
    assert (target.record.chosen_shape, target.record.chosen_replicas) == expected
    assert target.record.need_rps == pytest.approx(rate_rps * (1 + headroom))


def test_a_whole_number_of_gpus_is_not_rounded_up_by_floating_point_noise() -> None:
    capacity = RouteCapacity(route=ROUTE, options=(ShapeOption(shape="full-gpu", msrr_rps=0.11),))
    target, _ = tick(0.0, 0.2, undamped(headroom=0.1), capacity=capacity)
    assert target.record.gpus_required == 0.2 * 1.1 / 0.11 > 2.0
    assert target.replicas == {"full-gpu": 2}


def test_max_replicas_caps_the_route_and_the_record_says_it_is_short() -> None:
    config = undamped(default_limits={"max_replicas": 8})
    target, _ = tick(0.0, 50.0, config)
    assert target.replicas["full-gpu"] == 8
    assert "capped at max_replicas 8, which serve 36.32 of the 50 rps needed" in target.record.reason


def test_min_replicas_raises_the_chosen_shape_count() -> None:
    target, _ = tick(0.0, 0.01, undamped(route_limits={ROUTE: {"min_replicas": 2, "max_replicas": 4}}))
    assert running(target) == {"1g.10gb": 2}
    assert target.record.reason.endswith("raised to min_replicas 2")


# --- a route's mix of query types --------------------------------------------------------------

SISO, LISO, SILO = QueryType.SISO, QueryType.LISO, QueryType.SILO
# A route serving fast SISO (10 req/s per GPU) and slow LISO (2 req/s per GPU).
SHORT_MSRR = {SISO: 10.0, LISO: 2.0}


def short_output_capacity() -> RouteCapacity:
    """A full GPU that knows its types' MSRRs (route MSRR the slowest's), and a slice that knows only its own."""
    return RouteCapacity(route=ROUTE, options=(
        ShapeOption(shape="full-gpu", msrr_rps=2.0, msrr_by_type=SHORT_MSRR),
        ShapeOption(shape="1g.10gb", msrr_rps=0.9),
    ))


def test_the_mix_msrr_is_algorithm_1_summed_over_the_types() -> None:
    """4 SISO/s and 1 LISO/s need 4/10 + 1/2 = 0.9 GPUs for 5 req/s, so a GPU serves 5 / 0.9 of that mix."""
    assert mix_msrr(SHORT_MSRR, {SISO: 4.0, LISO: 1.0}) == pytest.approx(5 / 0.9)
    assert mix_msrr(SHORT_MSRR, {SISO: 0.8, LISO: 0.2}) == pytest.approx(5 / 0.9)
    assert mix_msrr(SHORT_MSRR, {SISO: 3.0}) == pytest.approx(10.0)


def test_without_traffic_the_mix_is_the_slowest_type() -> None:
    assert mix_msrr(SHORT_MSRR, {}) == 2.0
    assert mix_msrr(SHORT_MSRR, {SISO: 0.0, LISO: 0.0}) == 2.0
    # Another route's type weighs nothing here.
    assert mix_msrr(SHORT_MSRR, {SILO: 3.0}) == 2.0


def test_the_mix_refuses_negative_rates_and_no_types() -> None:
    with pytest.raises(ValueError, match=r"rates: negative for \['LISO'\]"):
        mix_msrr(SHORT_MSRR, {SISO: 1.0, LISO: -0.5})
    with pytest.raises(ValueError, match="msrr_by_type: no query type"):
        mix_msrr({}, {SISO: 1.0})


def test_a_mixed_capacity_reweighs_the_options_that_know_their_types_and_keeps_the_others() -> None:
    capacity = short_output_capacity()
    mixed = mix_capacity(capacity, {SISO: 4.0, LISO: 1.0})
    assert mixed.whole_unit.msrr_rps == pytest.approx(5 / 0.9)
    assert mixed.whole_unit.msrr_by_type == SHORT_MSRR
    assert mixed.option("1g.10gb") == capacity.option("1g.10gb")
    assert mix_capacity(capacity, {}).whole_unit.msrr_rps == 2.0


def test_the_core_sizes_a_mixed_route_as_the_sum_of_its_types() -> None:
    """5 req/s of that mix: 0.9 GPUs, so one; at the slowest type's MSRR 5 / 2 = 2.5, so three."""
    mixed, _ = tick(0.0, 5.0, undamped(), capacity=mix_capacity(short_output_capacity(), {SISO: 4.0, LISO: 1.0}))
    assert mixed.record.gpus_required == pytest.approx(4 / 10 + 1 / 2)
    assert running(mixed) == {"full-gpu": 1}
    slowest, _ = tick(0.0, 5.0, undamped(), capacity=short_output_capacity())
    assert slowest.record.gpus_required == pytest.approx(2.5)
    assert running(slowest) == {"full-gpu": 3}


def test_type_msrrs_must_be_positive() -> None:
    with pytest.raises(ValidationError) as zero:
        ShapeOption(shape="full-gpu", msrr_rps=1.0, msrr_by_type={SISO: 0.0})
    assert _error_locations(zero.value) == [("msrr_by_type", "SISO")]


# --- cooldowns and hysteresis ------------------------------------------------------------------


@pytest.mark.parametrize(("need", "hysteresis", "action", "full_gpus"),
                         [(9.0, 0.2, "hold", 3), (7.0, 0.4, "hold", 3), (7.0, 0.2, "scale_down", 2)])
def test_hysteresis_scales_down_only_below_the_smaller_plans_band(
    need: float, hysteresis: float, action: str, full_gpus: int
) -> None:
    # Three full GPUs serve 13.62 rps and two 9.08. Two serve 9 rps with almost nothing spare, so a small rise
    # would undo the move: only 7 rps at h=0.2 is below two GPUs' band (9.08 x 0.8 = 7.26; at h=0.4, 5.45).
    target, _ = tick(0.0, need, undamped(hysteresis=hysteresis), running={"full-gpu": 3})
    assert target.record.action == action
    assert target.replicas["full-gpu"] == full_gpus


def test_a_need_swinging_across_one_gpus_capacity_does_not_flap_between_one_and_two() -> None:
    # Seen live: at 2 units, a need just under one unit's MSRR (4.54) scaled down, and the next small rise
    # scaled back up, every tick. With the band on the smaller plan the route holds two.
    config = undamped(hysteresis=0.2)
    _, state = tick(0.0, 5.0, config, running={"full-gpu": 1})
    changes = 0
    for step in range(1, 21):
        target, state = tick(10.0 * step, 4.0 if step % 2 else 5.0, config, running={"full-gpu": 2}, state=state)
        changes += target.record.changed
        assert target.replicas["full-gpu"] == 2, target.record.reason
    assert changes == 0


def test_within_the_band_the_reason_gives_its_edges() -> None:
    target, _ = tick(0.0, 7.0, undamped(hysteresis=0.4), running={"full-gpu": 3})
    assert target.record.reason == (
        "need 7 rps would leave the smaller plan (9.08 rps) less than 0.4 spare (hysteresis); keeping 13.62 rps"
    )


def test_upscale_waits_for_its_cooldown_after_a_change() -> None:
    config = undamped(upscale_cooldown_s=30.0)
    first, state = tick(5.0, 10.0, config, running={"full-gpu": 1})
    assert first.record.action == "scale_up" and first.replicas["full-gpu"] == 3
    held, state = tick(15.0, 14.0, config, running={"full-gpu": 3}, state=state)
    assert held.record.action == "hold" and held.replicas["full-gpu"] == 3
    assert held.record.reason == "upscale cooldown, 20s left: need 14 rps exceeds capacity 13.62 rps"
    assert (held.record.chosen_shape, held.record.chosen_replicas) == ("full-gpu", 4)
    after, _ = tick(35.0, 14.0, config, running={"full-gpu": 3}, state=state)
    assert after.record.action == "scale_up" and after.replicas["full-gpu"] == 4


def test_a_scale_up_also_postpones_the_next_scale_down() -> None:
    config = undamped(upscale_cooldown_s=30.0, downscale_cooldown_s=300.0)
    _, state = tick(5.0, 10.0, config, running={"full-gpu": 1})
    held, state = tick(100.0, 2.0, config, running={"full-gpu": 3}, state=state)
    assert held.record.action == "hold"
    assert held.record.reason.startswith("downscale cooldown, 205s left: need 2 rps below 2.3")
    assert held.replicas["full-gpu"] == 3
    down, _ = tick(305.0, 2.0, config, running={"full-gpu": 3}, state=state)
    assert down.record.action == "scale_down"
    assert (down.record.chosen_shape, down.record.chosen_replicas) == ("3g.40gb", 1)


def bursty_rates(seed: int = 9, ticks: int = 360, mean_rps: float = 4.0, cv: float = 1.7) -> list[float]:
    """Log-normal rates with AR(1) memory in log space: bursts last a few ticks, as real traffic bursts do."""
    rng = random.Random(seed)
    sigma = math.sqrt(math.log(1 + cv**2))
    mu = math.log(mean_rps) - sigma**2 / 2
    memory = 0.6
    log_deviation = rng.gauss(0.0, sigma)
    rates = []
    for _ in range(ticks):
        log_deviation = memory * log_deviation + math.sqrt(1 - memory**2) * rng.gauss(0.0, sigma)
        rates.append(math.exp(mu + log_deviation))
    return rates


def replay(rates: list[float], config: ScalingConfig) -> tuple[int, float]:
    """(replica changes, longest stretch in seconds with capacity below the need); replicas start instantly."""
    capacity = llama_capacity()
    state = ScalingState()
    current: dict[str, int] = {}
    changes, short_s, longest_short_s = 0, 0.0, 0.0
    for index, rate in enumerate(rates):
        target, state = tick(index * TICK_S, rate, config, running=current, state=state)
        changes += target.record.changed
        current = running(target)
        short_s = short_s + TICK_S if capacity.serving_rps(current) < rate * (1 + config.headroom) else 0.0
        longest_short_s = max(longest_short_s, short_s)
    return changes, longest_short_s


def test_damping_stops_a_bursty_rate_from_flapping_without_lasting_under_provision() -> None:
    rates = bursty_rates()
    assert 1.5 < statistics.pstdev(rates) / statistics.mean(rates) < 1.9
    limits = {"max_replicas": 64}
    raw_changes, raw_short_s = replay(rates, undamped(headroom=0.1, default_limits=limits))
    damped = ScalingConfig(
        headroom=0.1, hysteresis=0.3, upscale_cooldown_s=30.0, downscale_cooldown_s=300.0,
        default_limits=RouteLimits(max_replicas=64),
    )
    damped_changes, damped_short_s = replay(rates, damped)
    assert raw_short_s == 0.0
    assert raw_changes > 150
    assert damped_changes * 4 < raw_changes
    assert 0.0 < damped_short_s <= damped.upscale_cooldown_s


# --- scale to zero -----------------------------------------------------------------------------


def test_an_idle_route_scales_to_zero_only_where_allowed_and_after_its_idle_time() -> None:
    allowed = undamped(default_limits={"allow_scale_to_zero": True, "scale_to_zero_after_s": 60.0})
    target, state = tick(0.0, 0.0, allowed, running={"1g.10gb": 1})
    assert running(target) == {"1g.10gb": 1}
    target, state = tick(50.0, 0.0, allowed, running={"1g.10gb": 1}, state=state)
    assert running(target) == {"1g.10gb": 1}
    target, state = tick(60.0, 0.0, allowed, running={"1g.10gb": 1}, state=state)
    assert target.record.action == "scale_down"
    assert running(target) == {} and target.record.replicas_after == {}
    assert target.record.reason == "no traffic; idle for at least 60s and scale to zero is allowed"

    _, idle_state = tick(0.0, 0.0, undamped(), running={"1g.10gb": 1})
    kept, _ = tick(3600.0, 0.0, undamped(), running={"1g.10gb": 1}, state=idle_state)
    assert idle_state.routes[ROUTE].idle_since_s == 0.0
    assert running(kept) == {"1g.10gb": 1} and kept.record.action == "hold"


def test_the_first_request_after_zero_starts_a_replica_despite_the_cooldown() -> None:
    config = undamped(
        upscale_cooldown_s=600.0,
        downscale_cooldown_s=0.0,
        default_limits={"allow_scale_to_zero": True, "scale_to_zero_after_s": 0.0},
    )
    zero, state = tick(100.0, 0.0, config, running={"1g.10gb": 1})
    assert running(zero) == {}
    woken, _ = tick(101.0, 0.02, config, running={}, state=state)
    assert woken.record.action == "scale_up"
    assert running(woken) == {"1g.10gb": 1}
    assert woken.record.reason.startswith("scale from zero")


# --- advisory mode -----------------------------------------------------------------------------


def test_advisory_mode_keeps_replica_counts_and_records_what_it_would_do() -> None:
    config = undamped(advisory=True)
    target, state = tick(0.0, 10.0, config, running={"full-gpu": 1})
    assert target.replicas == {"1g.10gb": 0, "3g.40gb": 0, "full-gpu": 1}
    record = target.record
    assert (record.action, record.advisory, record.changed) == ("scale_up", True, True)
    assert record.replicas_before == {"full-gpu": 1} and record.replicas_after == {"full-gpu": 3}
    assert record.reason.startswith("advisory: need 10 rps exceeds capacity 4.54 rps")

    again, _ = tick(10.0, 10.0, config, running={"full-gpu": 1}, state=state)
    assert again.replicas["full-gpu"] == 1
    assert (again.record.action, again.record.changed) == ("hold", False)


def test_leaving_advisory_mode_starts_from_the_replicas_that_run_not_the_shadow_plan() -> None:
    _, shadow = tick(0.0, 10.0, undamped(advisory=True), running={"full-gpu": 1})
    target, _ = tick(10.0, 10.0, undamped(), running={"full-gpu": 1}, state=shadow)
    assert target.record.replicas_before == {"full-gpu": 1}
    assert target.replicas["full-gpu"] == 3 and target.record.changed


# --- lost state --------------------------------------------------------------------------------


def test_with_no_state_the_running_replicas_are_the_plan_and_no_cooldown_runs() -> None:
    config = ScalingConfig(headroom=0.0, hysteresis=0.2, upscale_cooldown_s=30.0, downscale_cooldown_s=300.0)
    steady, _ = tick(1000.0, 11.0, config, running={"full-gpu": 3})
    assert (steady.record.action, steady.record.changed) == ("hold", False)
    assert running(steady) == {"full-gpu": 3}

    _, recent = tick(995.0, 20.0, config, running={"full-gpu": 3})
    blocked, _ = tick(1000.0, 25.0, config, running={"full-gpu": 5}, state=recent)
    assert blocked.record.action == "hold" and running(blocked) == {"full-gpu": 5}
    fresh, _ = tick(1000.0, 25.0, config, running={"full-gpu": 5})
    assert fresh.record.action == "scale_up" and running(fresh) == {"full-gpu": 6}


def test_state_survives_a_json_round_trip_with_its_forecaster() -> None:
    config = undamped(forecast={"mode": "holt"})
    _, state = tick(0.0, 3.0, config, running={"full-gpu": 1})
    restored = ScalingState.model_validate_json(state.model_dump_json())
    assert restored == state
    assert isinstance(restored.routes[ROUTE].forecaster, HoltState)


def test_a_route_without_a_rate_keeps_its_plan() -> None:
    target, state = tick(0.0, None, undamped(), running={"full-gpu": 2})
    assert running(target) == {"full-gpu": 2}
    assert target.record.reason == "no rate observed for this route; keeping the current plan"
    assert (target.record.observed_rps, target.record.gpus_required, target.record.msrr_rps) == (None, None, FULL_MSRR)
    assert state.routes[ROUTE].plan.replicas == 2


# --- make before break -------------------------------------------------------------------------


def test_a_move_to_full_gpus_keeps_the_slice_until_every_new_replica_runs() -> None:
    config = undamped()
    moving, state = tick(0.0, 6.0, config, running={"1g.10gb": 1})
    assert moving.record.action == "scale_up"
    assert running(moving) == {"full-gpu": 2, "1g.10gb": 1}

    starting, state = tick(10.0, 6.0, config, running={"1g.10gb": 1, "full-gpu": 1}, state=state)
    assert running(starting) == {"full-gpu": 2, "1g.10gb": 1}
    assert not starting.record.changed

    ready, state = tick(20.0, 6.0, config, running={"1g.10gb": 1, "full-gpu": 2}, state=state)
    assert ready.record.action == "finish_move"
    assert ready.replicas == {"1g.10gb": 0, "3g.40gb": 0, "full-gpu": 2}
    assert ready.record.reason.endswith("retired 1g.10gb: all 2 full-gpu replica(s) running")

    settled, _ = tick(30.0, 6.0, config, running={"full-gpu": 2}, state=state)
    assert (settled.record.action, settled.record.changed) == ("hold", False)


def test_a_move_back_to_a_slice_keeps_the_full_gpus_until_the_slice_runs() -> None:
    config = undamped()
    shrinking, state = tick(0.0, 0.5, config, running={"full-gpu": 2})
    assert shrinking.record.action == "scale_down"
    assert running(shrinking) == {"full-gpu": 2, "1g.10gb": 1}
    done, _ = tick(10.0, 0.5, config, running={"full-gpu": 2, "1g.10gb": 1}, state=state)
    assert running(done) == {"1g.10gb": 1}


# --- forecasting -------------------------------------------------------------------------------


def test_holt_learns_a_linear_ramp_and_projects_it_ahead() -> None:
    forecaster = HoltForecaster(HoltForecast(alpha=0.5, beta=0.3, horizon_s=60.0, sample_interval_s=10.0))
    state: HoltState | None = None
    for step in range(40):
        state = forecaster.observe(state, step * 10.0, 0.05 * step * 10.0)
    assert state is not None
    assert state.trend_rps_per_s == pytest.approx(0.05, rel=0.01)
    assert state.forecast_rps == pytest.approx(19.5 + 0.05 * 60.0, rel=0.01)


def test_forecasters_ignore_samples_closer_than_their_interval() -> None:
    forecaster = HoltForecaster(HoltForecast(sample_interval_s=10.0))
    first = forecaster.observe(None, 0.0, 4.0)
    assert forecaster.observe(first, 9.9, 40.0) == first
    assert forecaster.observe(first, 10.0, 40.0).level_rps == pytest.approx(22.0)


def test_ewma_peak_hold_keeps_a_burst_and_lets_it_decay_to_the_mean() -> None:
    forecaster = EwmaPeakForecaster(EwmaPeakForecast(alpha=0.5, peak_decay=0.5, sample_interval_s=1.0))
    state: EwmaPeakState | None = None
    forecasts = []
    for second, rate in enumerate([1.0, 1.0, 9.0, 1.0, 1.0, 1.0]):
        state = forecaster.observe(state, float(second), rate)
        forecasts.append(state.forecast_rps)
    assert forecasts == [1.0, 1.0, 9.0, 4.5, 2.25, 1.5]


def test_a_forecast_of_another_mode_is_restarted_not_reinterpreted() -> None:
    holt = HoltState(level_rps=7.0, trend_rps_per_s=1.0, sampled_at_s=0.0, forecast_rps=67.0)
    restarted = advance_forecast(EwmaPeakForecast(), holt, 100.0, 3.0)
    assert restarted == EwmaPeakState(mean_rps=3.0, sampled_at_s=100.0, forecast_rps=3.0)


def test_proactive_scaling_leads_reactive_on_a_ramp() -> None:
    ramp = [0.05 * step * TICK_S for step in range(60)]
    holt = HoltForecast(alpha=0.5, beta=0.3, horizon_s=60.0, sample_interval_s=TICK_S)
    plans: dict[str, list[float]] = {}
    for mode, config in (("reactive", undamped()), ("holt", undamped(forecast=holt))):
        state = ScalingState()
        current: dict[str, int] = {}
        capacities: list[float] = []
        for step, rate in enumerate(ramp):
            target, state = tick(step * TICK_S, rate, config, running=current, state=state)
            current = running(target)
            capacities.append(llama_capacity().serving_rps(state.routes[ROUTE].plan.as_replicas()))
        plans[mode] = capacities
    assert all(ahead >= behind for ahead, behind in zip(plans["holt"], plans["reactive"], strict=True))
    assert sum(ahead > behind for ahead, behind in zip(plans["holt"], plans["reactive"], strict=True)) >= 10


def test_the_record_shows_the_forecast_the_need_was_sized_for() -> None:
    config = undamped(forecast={"mode": "ewma_peak", "alpha": 0.5, "peak_decay": 0.5, "sample_interval_s": 10.0})
    _, state = tick(0.0, 8.0, config)
    target, _ = tick(10.0, 2.0, config, running={"full-gpu": 2}, state=state)
    assert (target.record.observed_rps, target.record.forecast_rps, target.record.need_rps) == (2.0, 5.0, 5.0)
    assert target.record.chosen_replicas == 2


# --- the record --------------------------------------------------------------------------------


def test_log_line_renders_every_field_as_key_value_pairs() -> None:
    record = ScalingRecord(
        route=ROUTE, action="scale_up", advisory=False, observed_rps=10.0, forecast_rps=None, need_rps=11.0,
        gpus_required=11.0 / FULL_MSRR, chosen_shape="full-gpu", chosen_replicas=3, msrr_rps=FULL_MSRR,
        replicas_before={"full-gpu": 1, "1g.10gb": 1}, replicas_after={"full-gpu": 3, "1g.10gb": 0},
        reason='need 11 rps exceeds capacity 5.44 rps; "ceil"',
    )
    assert record.log_line() == (
        "route=llama-3-8b/LISO action=scale_up advisory=false observed_rps=10 forecast_rps=- need_rps=11 "
        "gpus_required=2.423 shape=full-gpu shape_replicas=3 msrr_rps=4.54 before=1g.10gb:1,full-gpu:1 "
        'after=full-gpu:3 reason="need 11 rps exceeds capacity 5.44 rps; \\"ceil\\""'
    )
    assert record.changed


def test_a_decision_lists_only_the_records_that_change_something() -> None:
    other = RouteCapacity(route="qwen/SISO", options=(ShapeOption(shape="cpu", msrr_rps=1.0),))
    decision, _ = decide(
        TickInput(
            now_s=0.0,
            observed_rps={ROUTE: 10.0, "qwen/SISO": 0.5},
            current_replicas={ROUTE: {"full-gpu": 1}, "qwen/SISO": {"cpu": 1}},
            routes=(llama_capacity(), other),
            config=undamped(),
        )
    )
    assert [record.route for record in decision.changes()] == [ROUTE]
    assert decision.targets()["qwen/SISO"] == {"cpu": 1}


# --- validation --------------------------------------------------------------------------------


def _error_locations(error: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(detail["loc"]) for detail in error.errors()]


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError) as bad_hysteresis:
        ScalingConfig(hysteresis=1.0)
    assert _error_locations(bad_hysteresis.value) == [("hysteresis",)]

    with pytest.raises(ValidationError) as bad_alpha:
        ScalingConfig.model_validate({"forecast": {"mode": "holt", "alpha": 0}})
    assert _error_locations(bad_alpha.value) == [("forecast", "holt", "alpha")]

    with pytest.raises(ValidationError) as unknown:
        ScalingConfig.model_validate({"upscale_delay": 5})
    assert _error_locations(unknown.value) == [("upscale_delay",)]

    with pytest.raises(ValidationError, match="max_replicas: 2 is below min_replicas 3") as bounds:
        ScalingConfig.model_validate({"route_limits": {ROUTE: {"min_replicas": 3, "max_replicas": 2}}})
    assert _error_locations(bounds.value) == [("route_limits", ROUTE)]


def test_shape_and_capacity_errors_name_the_field_and_route() -> None:
    with pytest.raises(ValidationError, match="gpu_fraction: 'full-gpu' is a whole unit"):
        ShapeOption(shape="full-gpu", gpu_fraction=0.5, msrr_rps=1.0)
    with pytest.raises(ValidationError) as bad_shape:
        ShapeOption(shape="8g.90gb", gpu_fraction=1.0, msrr_rps=1.0)
    assert _error_locations(bad_shape.value) == [("shape",)]
    with pytest.raises(ValidationError, match="route 'llama-3-8b/LISO' needs exactly one of"):
        RouteCapacity(route=ROUTE, options=(ShapeOption(shape="1g.10gb", msrr_rps=0.9),))
    assert ShapeOption(shape="3g.40gb", msrr_rps=1.0).gpu_fraction == pytest.approx(3 / 7)


def test_tick_errors_name_the_unknown_route_and_the_bad_rate() -> None:
    with pytest.raises(ValidationError, match=r"observed_rps: route\(s\) \['mistral/LILO'\] have no capacity entry"):
        TickInput(now_s=0.0, observed_rps={"mistral/LILO": 1.0}, routes=(llama_capacity(),))
    with pytest.raises(ValidationError) as negative:
        TickInput(now_s=0.0, observed_rps={ROUTE: -1.0}, routes=(llama_capacity(),))
    assert _error_locations(negative.value) == [("observed_rps", ROUTE)]
