"""Per-request energy as the ingress runs it: node intervals merged into one meter, requests settled from it."""

from __future__ import annotations

import asyncio

import pytest

from oasis_ray.query_types import QueryType
from oasis_ray.telemetry.energy_merge import NodeIntervalMerger
from oasis_ray.telemetry.gpu_sampler import EnergyInterval
from oasis_ray.telemetry.gpu_window import GpuWindow
from oasis_ray.telemetry.latency_window import LatencyWindow
from oasis_ray.telemetry.request_energy import EnergyOwner, RequestEnergy
from tests.test_telemetry import gpu_sample

OWNER = EnergyOwner("tiny", QueryType.SISO, "short-output")


def interval(t_start: float | None, t_end: float, **energy: float | None) -> EnergyInterval:
    return EnergyInterval(t_start, t_end, energy)


def test_one_node_passes_its_intervals_through():
    merger = NodeIntervalMerger(["a"])
    merger.add("a", interval(0, 1, g0=10.0, g1=5.0))
    assert merger.closes() == [(1, 15.0)]
    merger.add("a", interval(1, 2, g0=None))
    assert merger.closes() == [(2, None)]


def test_two_nodes_close_at_the_earliest_latest_end_and_no_joule_is_lost_or_doubled():
    merger = NodeIntervalMerger(["a", "b"])
    merger.add("a", interval(0, 1.0, g=10.0))
    assert merger.closes() == [], "b has not reported yet"
    merger.add("b", interval(0, 1.2, g=20.0))
    merger.add("a", interval(1.0, 2.0, g=11.0))
    assert merger.closes() == [(1.2, 30.0)]
    merger.add("b", interval(1.2, 2.2, g=21.0))
    assert merger.closes() == [(2.0, 11.0)]
    merger.add("a", interval(2.0, 3.0, g=12.0))
    assert merger.closes() == [(2.2, 21.0)]


def test_a_lost_interval_on_any_node_makes_the_close_unmeasured():
    merger = NodeIntervalMerger(["a", "b"])
    merger.add("a", interval(0, 1, g=10.0))
    merger.add("b", interval(0, 1, g=None))
    assert merger.closes() == [(1, None)]


def test_unknown_node_and_no_nodes_are_refused():
    with pytest.raises(ValueError, match="nodes"):
        NodeIntervalMerger([])
    with pytest.raises(KeyError, match="'c'"):
        NodeIntervalMerger(["a"]).add("c", interval(0, 1))


def test_requests_split_the_measured_energy_by_tokens_and_report_it_once():
    async def scenario() -> tuple[list[tuple[EnergyOwner, float | None]], float | None, float]:
        reported: list[tuple[EnergyOwner, float | None]] = []
        energy = RequestEnergy(["a"], lambda owner, joules: reported.append((owner, joules)))
        energy.add_interval("a", interval(None, 10.0, g=None))
        energy.served("r1", 30, 10.5)
        energy.served("r2", 10, 10.7)
        energy.finish("r1", OWNER, awaited=True)
        energy.finish("r2", OWNER)
        waiting = asyncio.ensure_future(energy.energy_of("r1", timeout_s=5))
        await asyncio.sleep(0)
        energy.add_interval("a", interval(10.0, 11.0, g=8.0))
        return reported, await waiting, energy.unattributed_j

    reported, r1, unattributed = asyncio.run(scenario())
    assert r1 == pytest.approx(6.0)
    assert sorted(joules for _, joules in reported) == pytest.approx([2.0, 6.0])
    assert unattributed == 0


def test_energy_of_an_unmeasured_or_unsettled_request_is_none_not_zero():
    async def scenario() -> tuple[float | None, float | None, list[float | None]]:
        reported: list[float | None] = []
        energy = RequestEnergy(["a"], lambda _, joules: reported.append(joules))
        energy.add_interval("a", interval(None, 1.0))
        energy.served("lost", 5, 1.5)
        energy.finish("lost", OWNER, awaited=True)
        energy.add_interval("a", interval(1.0, 2.0))
        lost = await energy.energy_of("lost", timeout_s=1)
        energy.served("late", 5, 2.5)
        energy.finish("late", OWNER, awaited=True)
        late = await energy.energy_of("late", timeout_s=0.05)
        return lost, late, reported

    lost, late, reported = asyncio.run(scenario())
    assert (lost, late, reported) == (None, None, [None])


def test_latency_window_p95_covers_the_window_only():
    window = LatencyWindow(10.0)
    for i in range(100):
        window.record("tiny/SISO", 100.0, float(i))
    window.record("tiny/LILO", 50.0, 3.0)
    assert window.p95(105.0) == {"tiny/SISO": pytest.approx(94.05)}
    assert window.p95(200.0) == {}


def test_gpu_window_sums_energy_inside_the_window_and_says_none_when_any_is_lost():
    window = GpuWindow(10.0)
    samples = [gpu_sample(0, uuid="GPU-0", power_w=300.0), gpu_sample(1, uuid="GPU-1", power_w=None)]
    window.add("n", samples, interval(None, 100.0, **{"GPU-0": None, "GPU-1": None}))
    window.add("n", samples, interval(100.0, 101.0, **{"GPU-0": 300.0, "GPU-1": 80.0}))
    window.add("n", samples, interval(101.0, 102.0, **{"GPU-0": 310.0, "GPU-1": None}))
    by_index = {status.index: status for status in window.statuses(now_s=105.0)}
    assert by_index[0].energy_j == pytest.approx(610.0) and by_index[0].power_w == 300.0
    assert by_index[1].energy_j is None and by_index[1].power_w is None
    assert not any(s.energy_j == 0 or s.power_w == 0 for s in by_index.values())
    assert window.statuses(now_s=200.0)[0].energy_j is None, "nothing metered inside a later window"
