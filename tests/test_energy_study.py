"""The energy result's machinery: the paper's runtime experiment, the four-policy comparison and its what-ifs.

Pure and fast: the paper table (oasis_ray.planning.paper_tables) and short
windows of the real Azure traces. The full result is
benchmarks/energy_policies.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oasis_ray.costs.table import CostTable, ServedLengths
from oasis_ray.planning.energy_study import (
    JOINT,
    PAPER,
    POLICY_ORDER,
    STATIC_PEAK,
    StudySetup,
    Targets,
    compare,
    fluid_ideal_wh,
    what_ifs,
    without_bursts,
)
from oasis_ray.planning.paper_runtime import PAPER_SAVING, RuntimeTraceSpec, runtime_experiment, runtime_workload
from oasis_ray.planning.paper_tables import PAPER_SLO_P95_E2E_S, paper_hct, paper_inventory
from oasis_ray.planning.sim_policies import SIMULATION_HEADROOM, SimulationSettings, oasis_joint
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.planning.traces import load_azure_trace
from oasis_ray.query_types import QueryType

TRACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture(scope="module")
def table() -> CostTable:
    return CostTable(paper_hct(), PAPER_SLO_P95_E2E_S)


def test_the_runtime_trace_has_the_papers_rate_burstiness_and_mix() -> None:
    """41 req/h for 4 h, CV 1.70, 64.7 / 29.4 / 5.9% (seed 000, Section 4.3): within sampling error of 164."""
    spec = RuntimeTraceSpec(hours=400.0)
    workload = runtime_workload(spec)
    gaps = np.diff(workload.arrival_s)
    assert len(workload) / 400 == pytest.approx(41, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.70, rel=0.1)
    shares = dict(zip(QUERY_TYPES, np.bincount(workload.type_code, minlength=4) / len(workload)))
    assert shares == pytest.approx({QueryType.SISO: 0.647, QueryType.SILO: 0.059, QueryType.LISO: 0.294,
                                    QueryType.LILO: 0.0}, abs=0.02)
    assert set(workload.output_tokens[workload.type_code == QUERY_TYPES.index(QueryType.SILO)]) == {512}
    four_hours = runtime_workload(RuntimeTraceSpec())
    assert four_hours.duration_s < 4 * 3600 and np.array_equal(four_hours.arrival_s,
                                                                runtime_workload(RuntimeTraceSpec()).arrival_s)


def test_the_runtime_experiment_saves_what_the_paper_measured_within_four_points(table: CostTable) -> None:
    """Table 8: 188.2 W on a full GPU, 164.9 W on a slice that kept the SLO, -12.4%; simulated on the
    committed table, on the smallest slice whose run keeps every request within the SLO, and on the 1g slice."""
    inventory = paper_inventory()
    result = runtime_experiment(table, inventory.pools[0], inventory.prices, RuntimeTraceSpec())
    print(f"\nruntime experiment: full GPU {result.full_gpu.mean_power_w:.1f} W; " + "; ".join(
        f"{shape} {run.mean_power_w:.1f} W ({result.saving_on(shape):.1%}, {run.slo_attainment_requests:.1%} "
        f"within the SLO)" for shape, run in result.slices.items()) + f"; paper {PAPER_SAVING:.1%}")
    assert abs(result.saving - PAPER_SAVING) <= 0.04
    # Issue 10 item 5 names a 1g slice, as the paper does: its saving is within the bound too.
    assert abs(result.saving_on("1g.20gb") - PAPER_SAVING) <= 0.04
    assert result.mig.slo_attainment_requests == result.full_gpu.slo_attainment_requests == 1.0
    assert result.full_gpu.peak_gpus == result.mig.peak_gpus == 1
    # Every smaller slice tried missed the SLO for some request, which is why it is not the one compared.
    assert all(run.slo_attainment_requests < 1.0 for shape, run in result.slices.items() if shape != result.slice_shape)


def test_configurations_ranked_at_served_lengths_cost_less_for_the_traffic_they_are_chosen_for(
    table: CostTable,
) -> None:
    """Llama-3-8B for a LISO-heavy mix: at the profiled 1,000 / 50 tokens standard scheduling ranks first; at
    conversation-like 1,155 / 211 tokens chunked prefill does, and it spends less energy per served request."""
    whole = paper_inventory().pools[0].hardware(allow_mig=False)
    shares = {QueryType.SISO: 0.4, QueryType.LISO: 0.6}
    served = ServedLengths(by_type={QueryType.SISO: (100.0, 211.0), QueryType.LISO: (1155.0, 211.0)})
    profiled = table.shared_shape_choices("llama-3-8b", shares, whole, "joint")[0]
    at_served = table.shared_shape_choices("llama-3-8b", shares, whole, "joint", lengths=served)[0]

    def joules_per_served_request(by_type) -> float:
        """The mix's mean request at the served lengths, on one GPU at its MSRR."""
        joules = 0.0
        for query_type, share in shares.items():
            choice = by_type[query_type]
            cost = float(choice.curve.length_factor(*([value] for value in served.by_type[query_type]))[0])
            joules += share * cost * choice.option.power_w / choice.option.msrr_rps
        return joules

    variants = [next(iter(by_type.values())).option.variant for by_type in (profiled, at_served)]
    assert variants == ["standard", "chunked_prefill"]
    assert joules_per_served_request(at_served) < joules_per_served_request(profiled)


def _conv_window(minutes: float, scale: float = 1.0) -> Workload:
    path = TRACES_DIR / "azure_llm_2023_conv.csv"
    if not path.is_file():
        pytest.skip(f"real Azure trace not found at {path} (expected ../shared/traces beside the repo)")
    trace = load_azure_trace(path).window(0.0, minutes * 60).scaled(scale)
    return Workload.from_trace(trace, ("llama-3-8b", "qwen-7b"))


def _setup(table: CostTable) -> StudySetup:
    inventory = paper_inventory(64)
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S, drain_s=300.0)
    return StudySetup(table=table, pool=inventory.pools[0], prices=inventory.prices, settings=settings,
                      headroom=SIMULATION_HEADROOM)


def test_the_comparison_runs_every_policy_on_the_same_requests_and_states_its_misses(table: CostTable) -> None:
    workload = _conv_window(20)
    comparison = compare(workload, _setup(table), "conv 20 min")
    assert list(comparison.runs) == list(POLICY_ORDER)
    assert {run.result.requests for run in comparison.runs.values()} == {len(workload)}
    static = comparison.runs[STATIC_PEAK].result
    assert static.replica_changes == 0 and static.peak_gpus == pytest.approx(static.gpu_hours * 3600 / static.charged_s)
    assert comparison.saving(STATIC_PEAK) == pytest.approx(1 - comparison.energy(JOINT) / static.energy_wh)
    assert comparison.saving(PAPER) == pytest.approx(1 - comparison.energy(JOINT) / comparison.energy(PAPER))
    impossible = Targets(saving_vs_static=1.0, saving_vs_paper=1.0)
    assert [miss.split(" ")[0] for miss in comparison.misses(impossible)][-2:] == ["saving", "saving"]
    assert comparison.misses(Targets(slo_attainment=0.0, saving_vs_static=-10, saving_vs_paper=-10)) == []


def test_each_what_if_lifts_one_constraint_and_idle_power_is_the_idle_share_of_the_bill(table: CostTable) -> None:
    workload = _conv_window(20, scale=0.25)
    setup = _setup(table)
    comparison = compare(workload, setup, "conv")
    lifted = {what_if.constraint: what_if.comparison for what_if in what_ifs(workload, setup)}
    assert list(lifted) == ["start-up delay", "burst size", "idle power", "clock lever"]
    for name, run in comparison.runs.items():
        # Idle power is charged per GPU held and decides nothing, so without it each bill loses exactly that part.
        without_idle = lifted["idle power"].runs[name].result
        assert without_idle.energy_wh == pytest.approx(run.result.energy_wh - run.result.idle_energy_wh)
        assert without_idle.gpu_hours == pytest.approx(run.result.gpu_hours)
    # With replicas serving at once, the autoscalers never wait for capacity, so no request waits longer.
    instant = lifted["start-up delay"].runs[JOINT].result
    assert instant.slo_attainment_requests >= comparison.runs[JOINT].result.slo_attainment_requests


def test_spreading_bursts_keeps_every_request_in_its_window() -> None:
    workload = _conv_window(12)
    spread = without_bursts(workload, 300.0)
    assert np.array_equal(np.floor(spread.arrival_s / 300), np.floor(workload.arrival_s / 300))
    assert np.array_equal(spread.type_code, workload.type_code) and np.all(np.diff(spread.arrival_s) > 0)
    counts = np.bincount(np.floor(spread.arrival_s / 300).astype(int))
    gaps = np.diff(spread.arrival_s)[: counts[0] - 1]
    assert np.allclose(gaps, 300.0 / counts[0])


def test_the_fluid_ideal_is_under_every_policys_bill_and_slices_only_lower_it(table: CostTable) -> None:
    workload = _conv_window(20)
    setup = _setup(table)
    comparison = compare(workload, setup, "conv 20 min")
    lowest = min(comparison.energy(name) for name in POLICY_ORDER)
    assert 0 < comparison.ideal_wh < lowest
    assert comparison.ideal_saving() == pytest.approx(1 - comparison.ideal_wh / comparison.energy(STATIC_PEAK))
    whole_only = setup.pool.model_copy(update={"mig_geometry": None})
    assert comparison.ideal_wh <= fluid_ideal_wh(workload, table, whole_only, setup.settings, oasis_joint())


@pytest.mark.parametrize("share_of_msrr", [0.1, 2.0])
def test_the_fluid_ideal_is_the_hand_sum_at_a_steady_rate(table: CostTable, share_of_msrr: float) -> None:
    """SISO requests of the profiled lengths at a steady rate on whole GPUs: each takes 1 / MSRR GPU-seconds at
    the MSRR's draw over idle, and the route holds that GPU time, or one whole GPU where the rate is lower."""
    setup = _setup(table)
    pool = setup.pool.model_copy(update={"mig_geometry": None})
    policy = oasis_joint()
    curve = table.shared_shape_choices("llama-3-8b", {QueryType.SISO: 1.0}, pool.hardware(),
                                       policy.config_choice)[0][QueryType.SISO].curve
    rate = share_of_msrr * curve.msrr_rps
    count = round(rate * 600)
    workload = Workload.from_tokens("steady", (np.arange(count) + 0.5) / rate, np.full(count, curve.input_tokens),
                                    np.full(count, curve.output_tokens), ("llama-3-8b",))
    busy_s = count / curve.msrr_rps
    held_s = max(busy_s, 600.0)  # 20 rate windows of 30 s, each as busy as the others
    expected_wh = (pool.idle_power_w * held_s + curve.increment_at(curve.msrr_rps) * busy_s) / 3600
    assert fluid_ideal_wh(workload, table, pool, setup.settings, policy) == pytest.approx(expected_wh, rel=1e-9)
