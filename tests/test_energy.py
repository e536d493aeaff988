"""Counter deltas, the energy meter and per-request attribution."""

from __future__ import annotations

import math

import pytest

from oasis_ray.telemetry.energy import EnergyMeter, attribute_energy, counter_delta_mj


def test_delta_of_a_rising_counter() -> None:
    assert counter_delta_mj(1_000, 251_000) == 250_000
    assert counter_delta_mj(7, 7) == 0


def test_delta_across_a_wrap() -> None:
    assert counter_delta_mj(2**64 - 100, 50) == 150
    assert counter_delta_mj(990, 10, wrap_at=1_000) == 20


def test_restart_is_unknown_not_a_guess() -> None:
    assert counter_delta_mj(9_876_543_210, 1_234) is None
    assert counter_delta_mj(400, 10, wrap_at=1_000) is None


def test_delta_rejects_readings_outside_the_counter_range() -> None:
    with pytest.raises(ValueError, match="current counter reading 1000 is outside"):
        counter_delta_mj(10, 1_000, wrap_at=1_000)
    with pytest.raises(ValueError, match="previous counter reading -1"):
        counter_delta_mj(-1, 10)


def test_meter_sums_measured_intervals() -> None:
    meter = EnergyMeter()
    assert meter.mean_power_w is None
    assert meter.add(100.0, 1_000_000) is None
    assert meter.add(101.0, 1_300_000) == 300.0
    assert meter.add(103.0, 1_700_000) == 400.0
    assert (meter.total_j, meter.seconds, meter.measured_intervals, meter.lost_intervals) == (700.0, 3.0, 2, 0)
    assert meter.mean_power_w == pytest.approx(700.0 / 3.0)


def test_meter_loses_intervals_around_missing_readings_and_restarts() -> None:
    meter = EnergyMeter()
    readings = [
        (0.0, 10_000),
        (1.0, 210_000),  # measured: 200 J over 1 s
        (2.0, None),  # lost: 1 -> 2
        (3.0, 610_000),  # lost: 2 -> 3
        (4.0, 910_000),  # measured: 300 J over 1 s
        (5.0, 5_000),  # restart: lost
        (7.0, 405_000),  # measured: 400 J over 2 s
    ]
    results = [meter.add(t, mj) for t, mj in readings]
    assert results == [None, 200.0, None, None, 300.0, None, 400.0]
    assert (meter.total_j, meter.seconds, meter.lost_intervals, meter.measured_intervals) == (900.0, 4.0, 3, 3)
    assert meter.mean_power_w == 225.0


def test_meter_of_only_missing_readings_has_no_power() -> None:
    meter = EnergyMeter()
    for t in (0.0, 1.0, 2.0):
        meter.add(t, None)
    assert (meter.mean_power_w, meter.lost_intervals, meter.total_j) == (None, 2, 0.0)


def test_meter_refuses_readings_out_of_order() -> None:
    meter = EnergyMeter()
    meter.add(5.0, 100)
    with pytest.raises(ValueError, match="forward in time"):
        meter.add(5.0, 200)
    assert meter.add(6.0, 1_100) == 1.0


def test_attribution_is_proportional_to_tokens() -> None:
    assert attribute_energy(90.0, {"a": 10, "b": 20, "c": 60}) == pytest.approx({"a": 10.0, "b": 20.0, "c": 60.0})


def test_attribution_sums_to_the_measured_total() -> None:
    tokens = {f"req-{i}": 1 + (i * 7919) % 113 for i in range(997)}
    shares = attribute_energy(123.456789, tokens)
    assert abs(math.fsum(shares.values()) - 123.456789) <= math.ulp(123.456789)
    assert shares["req-1"] / shares["req-2"] == pytest.approx(tokens["req-1"] / tokens["req-2"])


def test_attribution_gives_the_rounding_remainder_to_the_largest_share() -> None:
    shares = attribute_energy(7.77, {f"req-{i}": 1 for i in range(7)} | {"big": 3})
    assert math.fsum(shares.values()) == 7.77
    assert [shares[f"req-{i}"] for i in range(7)] == [7.77 * 1 / 10] * 7
    assert shares["big"] != 7.77 * 3 / 10, "the remainder must land on the largest share"
    assert shares["big"] == pytest.approx(7.77 * 3 / 10, rel=1e-15)


def test_attribution_of_zero_tokens_splits_equally() -> None:
    shares = attribute_energy(10.0, {"a": 0, "b": 0, "c": 0, "d": 0})
    assert shares == {"a": 2.5, "b": 2.5, "c": 2.5, "d": 2.5}


def test_attribution_with_no_requests_is_empty() -> None:
    assert attribute_energy(50.0, {}) == {}


def test_attribution_rejects_negative_tokens_naming_the_request() -> None:
    with pytest.raises(ValueError, match="request 'req-7' has negative tokens"):
        attribute_energy(1.0, {"req-1": 3, "req-7": -2})


@pytest.mark.parametrize("energy_j", [-0.5, math.nan, math.inf])
def test_attribution_rejects_bad_energy(energy_j: float) -> None:
    with pytest.raises(ValueError, match="energy_j must be a finite number >= 0"):
        attribute_energy(energy_j, {"a": 1})
