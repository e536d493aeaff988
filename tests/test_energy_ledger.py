"""EnergyLedger: per-interval splits that add up to the meter, and None (never 0) for work that was not measured."""

from __future__ import annotations

import math
import random

import pytest

from oasis_ray.telemetry.energy_ledger import EnergyLedger, SettledEnergy


def settled_map(records: list[SettledEnergy]) -> dict[str, float | None]:
    return {record.request_id: record.energy_j for record in records}


def test_an_interval_is_split_in_proportion_to_tokens() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 30, t=0.2)
    ledger.add_tokens("b", 10, t=0.7)
    ledger.finish("a")
    ledger.finish("b")
    assert settled_map(ledger.close_interval(1.0, 8.0)) == {"a": 6.0, "b": 2.0}
    assert len(ledger) == 0


def test_attributed_and_unattributed_energy_add_up_to_the_measured_energy() -> None:
    rng = random.Random(7)
    lifetimes: dict[str, range] = {}
    for i in range(20):
        start = rng.randrange(1, 46)
        lifetimes[f"r{i}"] = range(start, start + rng.randrange(1, 6))
    ledger = EnergyLedger()
    settled: list[SettledEnergy] = []
    measured = []
    for interval in range(1, 51):
        for request, active in lifetimes.items():
            if interval in active:
                ledger.add_tokens(request, rng.randrange(0, 40), t=interval - 0.99 + 0.98 * rng.random())
        measured.append(rng.uniform(50.0, 400.0))
        settled += ledger.close_interval(float(interval), measured[-1])
        for request, active in lifetimes.items():
            if interval == active[-1]:
                ledger.finish(request)
    settled += ledger.close_interval(51.0, 0.0)
    energies = settled_map(settled)
    assert set(energies) == set(lifetimes)
    assert all(energy is not None and energy >= 0 for energy in energies.values())
    attributed = math.fsum(energy for energy in energies.values() if energy is not None)
    assert 0 < attributed < math.fsum(measured)
    assert attributed + ledger.unattributed_j == pytest.approx(math.fsum(measured), rel=1e-12)
    assert ledger.measured_j == pytest.approx(math.fsum(measured), rel=1e-12)
    assert len(ledger) == 0


def test_tokens_after_the_interval_end_wait_for_the_next_interval() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 10, t=0.5)
    ledger.add_tokens("a", 10, t=1.5)
    ledger.add_tokens("b", 10, t=1.5)
    ledger.close_interval(1.0, 4.0)
    assert ledger.energy_for("a") is None
    ledger.close_interval(2.0, 6.0)
    assert (ledger.energy_for("a"), ledger.energy_for("b")) == (7.0, 3.0)


def test_a_missing_reading_makes_the_requests_served_in_it_unmeasured_not_zero() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("in-lost-interval", 10, t=0.5)
    ledger.add_tokens("in-measured-interval", 10, t=1.5)
    ledger.finish("in-lost-interval")
    ledger.finish("in-measured-interval")
    assert ledger.close_interval(1.0, None) == [SettledEnergy("in-lost-interval", None)]
    assert ledger.close_interval(2.0, 5.0) == [SettledEnergy("in-measured-interval", 5.0)]
    assert ledger.unattributed_j == 0.0


def test_a_request_partly_in_a_lost_interval_has_no_energy_rather_than_a_partial_one() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 10, t=0.5)
    ledger.add_tokens("a", 10, t=1.5)
    ledger.finish("a")
    assert ledger.close_interval(1.0, 5.0) == []
    assert ledger.close_interval(2.0, None) == [SettledEnergy("a", None)]


def test_tokens_for_an_interval_already_split_make_the_request_unmeasured() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 10, t=0.5)
    ledger.close_interval(1.0, 5.0)
    ledger.add_tokens("a", 10, t=0.9)
    ledger.finish("a")
    assert ledger.close_interval(2.0, 5.0) == [SettledEnergy("a", None)]
    assert ledger.unattributed_j == 5.0


def test_a_request_with_no_tokens_settles_as_unmeasured() -> None:
    ledger = EnergyLedger()
    ledger.finish("refused")
    assert ledger.close_interval(1.0, 3.0) == [SettledEnergy("refused", None)]
    assert ledger.unattributed_j == 3.0


def test_an_interval_with_only_zero_token_requests_is_shared_equally() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 0, t=0.5)
    ledger.add_tokens("b", 0, t=0.5)
    ledger.close_interval(1.0, 4.0)
    assert (ledger.energy_for("a"), ledger.energy_for("b")) == (2.0, 2.0)


def test_a_request_is_settled_once_and_then_forgotten() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 5, t=0.5)
    ledger.finish("a")
    assert ledger.close_interval(1.0, 2.0) == [SettledEnergy("a", 2.0)]
    assert ledger.close_interval(2.0, 2.0) == []
    with pytest.raises(KeyError):
        ledger.energy_for("a")


def test_an_unfinished_request_is_not_settled_but_its_energy_so_far_is_readable() -> None:
    ledger = EnergyLedger()
    ledger.add_tokens("a", 5, t=0.5)
    assert ledger.close_interval(1.0, 2.0) == []
    assert ledger.energy_for("a") == 2.0
    assert len(ledger) == 1


@pytest.mark.parametrize("energy_j", [-1.0, math.nan, math.inf])
def test_impossible_energy_is_refused(energy_j: float) -> None:
    with pytest.raises(ValueError, match="energy_j"):
        EnergyLedger().close_interval(1.0, energy_j)


def test_intervals_must_move_forward() -> None:
    ledger = EnergyLedger()
    ledger.close_interval(2.0, 1.0)
    with pytest.raises(ValueError, match="t_end"):
        ledger.close_interval(2.0, 1.0)


def test_negative_tokens_and_tokens_after_finish_are_refused() -> None:
    ledger = EnergyLedger()
    with pytest.raises(ValueError, match="tokens"):
        ledger.add_tokens("a", -1, t=0.5)
    ledger.finish("b")
    with pytest.raises(ValueError, match="finished"):
        ledger.add_tokens("b", 1, t=0.5)
