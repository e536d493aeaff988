"""The what-if simulator: energy accounting by hand, the live decision core in the loop, queue arithmetic,
and the policy comparison on both real Azure traces with the paper-values table.

The synthetic table's figures are chosen so every expected number can be
worked out on paper; the Azure runs print their table for the record (run
with -s to see it) and check only what must hold whatever the numbers are.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oasis_ray.planning.capacity_cli import main as capacity_cli
from oasis_ray.profiling.hct import HCT_SCHEMA_VERSION, HardwareCostTable, HctMetadata, HctRow, LoadPointRow
from oasis_ray.planning.inventory import DevicePool, Prices
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.settings import HoltForecast, RouteLimits, ScalingConfig
from oasis_ray.scaling.shapes import ShapeOption
from oasis_ray.costs.table import CostTable
from oasis_ray.planning.paper_tables import PAPER_SLO_P95_E2E_S, paper_hct, paper_inventory
from oasis_ray.costs.curves import ServiceCurve
from oasis_ray.costs.table import ShapeChoice, route_capacity_at_mix
from oasis_ray.planning.sim_policies import (
    FixedGroup,
    FixedPolicy,
    OasisPolicy,
    SimulationSettings,
    oasis_damped,
    oasis_joint,
    paper_algorithm1,
    static_peak_policy,
)
from oasis_ray.planning.sim_routes import BY_OUTPUT, PER_TYPE
from oasis_ray.planning.sim_queue import backlog, latency_from_quantiles, queue_waits, window_p95_attainment
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.planning.simulator import simulate
from oasis_ray.profiling.sweep_spec import LoadSettings, SearchSettings, SloSpec
from oasis_ray.planning.traces import load_azure_trace, query_mix
from tests.hct_factory import hct_row

TRACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
MODEL = "m"
SLO_S = 5.0
IDLE_W = 100.0
USD_PER_GPU_HOUR = 2.0
PRICES = Prices(usd_per_kwh=0.25, gco2_per_kwh=400.0)
POOL = DevicePool(name="gpu", count=8, mig_geometry="A100-80GB", usd_per_hour=USD_PER_GPU_HOUR,
                  idle_power_w=IDLE_W)
LATENCY_S = 0.25


def _trial(shape: str, points: list[tuple[int, float, float]]) -> tuple[HctRow, list[LoadPointRow]]:
    """A SISO trial whose load points are (concurrency, req/s, power W), all at LATENCY_S."""
    kind = "gpu" if shape == "full-gpu" else "mig"
    best_rate, best_power = points[-1][1], points[-1][2]
    row = hct_row(model_id=MODEL, hardware_kind=kind, query_type="SISO", msrr_req_s=best_rate,
                  mig_profile=None if kind == "gpu" else shape, slo_p95_e2e_s=SLO_S, e2e_p50_s=LATENCY_S,
                  e2e_p95_s=LATENCY_S, e2e_p99_s=LATENCY_S, power_available=True, power_note=None,
                  mean_power_w=best_power, energy_per_token_j=best_power / best_rate / 10)
    load_points = [
        LoadPointRow(
            trial_id=row.trial_id, order=order, meets_slo=True, provenance="derived",
            provenance_note="synthetic test figures", concurrency=c, warmup_requests=c,
            measured_requests=30, window_s=30 / rate, e2e_p50_s=LATENCY_S, e2e_p95_s=LATENCY_S, e2e_p99_s=LATENCY_S,
            ttft_p50_s=0.1, ttft_p95_s=0.1, ttft_p99_s=0.1, tpot_p50_s=0.01, tpot_p95_s=0.01, tpot_p99_s=0.01,
            requests_per_s=rate, output_tokens_per_s=rate * 10, power_available=True, mean_power_w=power,
            energy_j=power * 30 / rate, energy_per_token_j=power / rate / 10, sm_clock_mhz=math.nan,
        )
        for order, (c, rate, power) in enumerate(points)
    ]
    return row, load_points


FULL_ENGINE_IDLE_W = 150.0
SLICE_ENGINE_IDLE_W = 110.0


def _synthetic_hct() -> HardwareCostTable:
    """Board idle 100 W. Full GPU: 150 W with the engine loaded, 200 W at 1 req/s, 300 W at 2 req/s.
    1g slice: 110 W loaded, 120 W at its 0.5 req/s (the board's reading, the rest of it idle)."""
    full_row, full_points = _trial("full-gpu", [(1, 1.0, 200.0), (2, 2.0, 300.0)])
    slice_row, slice_points = _trial("1g.10gb", [(1, 0.5, 120.0)])
    metadata = HctMetadata(
        schema_version=HCT_SCHEMA_VERSION, spec_name="synthetic", spec_hash="0", created_at="-", sweep_mode="grid",
        slo=SloSpec(p95_e2e_s=SLO_S), load=LoadSettings(), search=SearchSettings(), trials=2, failed_trials=0,
        device_names=[], driver_versions=[], vllm_version="-", ray_version="-", oasis_ray_version="-",
        python_version="-",
    )
    hct = HardwareCostTable.from_models([full_row, slice_row], full_points + slice_points, metadata)
    engine_idle = hct.rows["mig_profile"].map({"1g.10gb": SLICE_ENGINE_IDLE_W}).fillna(FULL_ENGINE_IDLE_W)
    return replace(hct, rows=hct.rows.assign(engine_idle_power_w=engine_idle))


@pytest.fixture(scope="module")
def table() -> CostTable:
    return CostTable(_synthetic_hct(), SLO_S)


def _steady(rate_rps: float, seconds: float, offset_s: float = 0.5) -> np.ndarray:
    return np.arange(offset_s, seconds, 1 / rate_rps)


def _workload(arrivals: np.ndarray) -> Workload:
    count = len(arrivals)
    return Workload.from_tokens("synthetic", arrivals, np.full(count, 100), np.full(count, 10), (MODEL,))


def _settings(**overrides: object) -> SimulationSettings:
    return SimulationSettings.model_validate(
        {"slo_p95_e2e_s": SLO_S, "bin_s": 1.0, "load_window_s": 1.0, "drain_s": 10.0, **overrides}
    )


def _oasis(**scaling: object) -> OasisPolicy:
    return OasisPolicy(name="oasis", config_choice="joint", scaling=ScalingConfig.model_validate(scaling))


def test_a_static_gpu_at_half_load_is_charged_its_curve_power_for_the_trace(table: CostTable) -> None:
    """One request per second on a 2 req/s GPU: 200 W (100 W of it the board's idle) for the 100 s from first
    arrival to last answer."""
    static = FixedPolicy(name="static", groups=(FixedGroup(model_id=MODEL, query_types=(QueryType.SISO,)),))
    run = simulate(_workload(_steady(1.0, 100.0)), static, table, POOL, PRICES, _settings())
    result = run.result
    assert result.charged_s == 100.0
    assert result.energy_wh == pytest.approx(200.0 * 100 / 3600)
    assert result.idle_energy_wh == pytest.approx(IDLE_W * 100 / 3600)
    assert result.mean_power_w == pytest.approx(200.0)
    assert (result.gpu_hours, result.peak_gpus) == (pytest.approx(100 / 3600), 1)
    assert result.device_cost_usd == pytest.approx(100 / 3600 * USD_PER_GPU_HOUR)
    assert result.energy_cost_usd == pytest.approx(200.0 * 100 / 3600 / 1000 * 0.25)
    assert result.co2_g == pytest.approx(200.0 * 100 / 3600 / 1000 * 400.0)
    assert (result.p50_s, result.p95_s, result.p99_s) == (LATENCY_S, LATENCY_S, LATENCY_S)
    assert (result.slo_attainment_requests, result.slo_attainment_windows, result.unserved) == (1.0, 1.0, 0)
    assert result.throughput_rps == pytest.approx(100 / (99.75 - 0.5))
    assert np.allclose(run.power_w, 200.0)


@pytest.mark.parametrize(("scale_by_length", "latency_s", "median_power_w"), [(True, 0.5, 200.0), (False, 0.25, 175.0)])
def test_a_request_twice_the_profiled_length_costs_twice_unless_told_otherwise(
    table: CostTable, scale_by_length: bool, latency_s: float, median_power_w: float
) -> None:
    """Profiled at 100 in / 10 out with TTFT 0.1 of 0.25 s: 200 / 20 tokens cost 0.4 x 2 + 0.6 x 2 = 2x.

    0.5 req/s of them load the GPU as 1 req/s would (200 W); counted at profiled cost, halfway from the
    loaded engine's 150 W to 200 W."""
    arrivals = _steady(0.5, 100.0)
    workload = Workload.from_tokens("long", arrivals, np.full(len(arrivals), 200), np.full(len(arrivals), 20),
                                    (MODEL,))
    static = FixedPolicy(name="static", groups=(FixedGroup(model_id=MODEL, query_types=(QueryType.SISO,)),))
    run = simulate(workload, static, table, POOL, PRICES, _settings(load_window_s=2.0,
                                                                    scale_by_length=scale_by_length))
    assert np.allclose(run.latency_s, latency_s)
    assert np.median(run.power_w) == pytest.approx(median_power_w)


def test_a_light_load_on_a_slice_holds_its_whole_gpu_charged_idle_plus_the_slices_draw(table: CostTable) -> None:
    """0.1 req/s needs 0.11 of a 0.5 req/s slice; its GPU is held, 100 W idle, and the slice adds 10 W loaded
    and 20 W at its MSRR: a fifth of the way, 12 W."""
    run = simulate(_workload(_steady(0.1, 600.0)), _oasis(), table, POOL, PRICES, _settings(load_window_s=10.0))
    result = run.result
    assert result.replica_changes == 0
    assert np.all(run.gpus_held == 1)
    assert np.all((run.power_w >= SLICE_ENGINE_IDLE_W - 1e-9) & (run.power_w <= 120.0 + 1e-9))
    assert np.median(run.power_w) == pytest.approx(IDLE_W + 10.0 + 10.0 * 0.2)
    assert result.idle_energy_wh == pytest.approx(IDLE_W * result.charged_s / 3600)


def _two_model_workload(rate_rps: float, seconds: float) -> Workload:
    arrivals = _steady(rate_rps, seconds)
    count = len(arrivals)
    return Workload.from_tokens("two-models", arrivals, np.full(count, 100), np.full(count, 10), ("a", "b"))


@pytest.fixture(scope="module")
def two_model_table() -> CostTable:
    """The synthetic table's rows for models 'a' and 'b'."""
    hct = _synthetic_hct()
    rows = pd.concat([hct.rows.assign(model_id=name, trial_id=name + hct.rows["trial_id"]) for name in ("a", "b")])
    points = pd.concat([hct.load_points.assign(trial_id=name + hct.load_points["trial_id"]) for name in ("a", "b")])
    return CostTable(replace(hct, rows=rows.reset_index(drop=True), load_points=points.reset_index(drop=True)), SLO_S)


@pytest.mark.parametrize(("packing", "gpus"), [("model", 2), ("fleet", 1)])
def test_two_models_slices_share_a_gpu_only_when_the_policy_packs_across_models(
    two_model_table: CostTable, packing: str, gpus: int
) -> None:
    """Each model at 0.05 req/s runs on a 1g slice; packed per model that is two GPUs' idle, fleet-wide one."""
    policy = _oasis().model_copy(update={"packing": packing})
    run = simulate(_two_model_workload(0.1, 600.0), policy, two_model_table, POOL, PRICES,
                   _settings(load_window_s=10.0))
    assert np.all(run.gpus_held == gpus)
    slice_draw = 2 * (SLICE_ENGINE_IDLE_W - IDLE_W)
    assert np.all(run.power_w >= gpus * IDLE_W + slice_draw - 1e-9)
    assert np.all(run.power_w <= gpus * IDLE_W + 2 * (120.0 - IDLE_W) + 1e-9)


def test_a_step_up_moves_the_route_to_whole_gpus_after_start_up(table: CostTable) -> None:
    arrivals = np.concatenate((_steady(0.1, 600.0), _steady(3.0, 1200.0, offset_s=600.2)))
    settings = _settings(load_window_s=10.0, startup_s=60.0, drain_s=600.0)
    run = simulate(_workload(arrivals), _oasis(), table, POOL, PRICES, settings)
    result = run.result
    # ceil(3 x 1.1 / 2) = 2 full GPUs; the slice is retired once they run (make before break), and its GPU freed.
    assert run.gpus_held[500] == 1
    assert run.gpus_held[1100] == 2
    assert result.peak_gpus == 3
    assert result.replica_changes >= 3
    assert result.unserved == 0
    # Requests that met only the slice during the start-up waited in its queue.
    assert result.p99_s > 5 * LATENCY_S


def test_static_and_oasis_refuse_a_table_prepared_for_another_slo(table: CostTable) -> None:
    static = FixedPolicy(name="static", groups=(FixedGroup(model_id=MODEL, query_types=(QueryType.SISO,)),))
    with pytest.raises(ValueError, match="slo_p95_e2e_s: the table was prepared for 5 s"):
        simulate(_workload(_steady(1.0, 10.0)), static, table, POOL, PRICES, _settings(slo_p95_e2e_s=9.0))


# --- queue and latency arithmetic ---------------------------------------------------------------


def test_the_closed_form_backlog_is_lindleys_recursion() -> None:
    rng = np.random.default_rng(1)
    arrived, capacity = rng.exponential(1.0, 500), rng.exponential(1.0, 500)
    expected, waiting = [], 0.0
    for a, c in zip(arrived, capacity):
        waiting = max(0.0, waiting + a - c)
        expected.append(waiting)
    assert np.allclose(backlog(arrived, capacity), expected)


def test_a_request_meeting_no_replica_waits_for_the_first_capacity() -> None:
    capacity = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1], dtype=float)
    arrived = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    waits, waiting = queue_waits(np.array([0.0]), np.array([0]), arrived, capacity, bin_s=1.0)
    assert waits[0] == pytest.approx(5.0)
    assert waiting.tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    never, _ = queue_waits(np.array([0.0]), np.array([0]), arrived, np.zeros(10), bin_s=1.0)
    assert never[0] == math.inf


def test_latency_draws_hit_the_measured_percentiles() -> None:
    u = np.array([0.5, 0.95, 0.99])
    p50, p95, p99 = np.full(3, 1.0), np.full(3, 2.0), np.full(3, 3.0)
    assert latency_from_quantiles(u, p50, p95, p99).tolist() == [1.0, 2.0, 3.0]


def test_slo_attainment_counts_windows_by_their_p95() -> None:
    arrivals = np.array([1.0, 2.0, 3.0, 61.0, 62.0])
    latencies = np.array([1.0, 1.0, 1.0, 1.0, 9.0])
    assert window_p95_attainment(arrivals, latencies, window_s=60.0, slo_s=5.0) == 0.5


# --- real traces, paper-values table -------------------------------------------------------------


def _azure(name: str) -> Path:
    path = TRACES_DIR / f"azure_llm_2023_{name}.csv"
    if not path.is_file():
        pytest.skip(f"real Azure trace not found at {path} (expected ../shared/traces beside the repo)")
    return path


def test_workload_query_types_match_the_trace_summary() -> None:
    trace = load_azure_trace(_azure("code"))
    workload = Workload.from_trace(trace, ("a", "b"))
    shares = np.bincount(workload.type_code, minlength=4) / len(workload)
    expected = query_mix(trace.requests["input_tokens"].to_numpy(), trace.requests["output_tokens"].to_numpy())
    assert {qt: share for qt, share in zip(QUERY_TYPES, shares)} == pytest.approx(expected)
    assert np.bincount(workload.model_index).tolist() == [4410, 4409]


@pytest.mark.parametrize("name", ["code", "conv"])
def test_simulate_compares_the_policies_on_a_real_azure_trace(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = capacity_cli(["simulate", "--trace", str(_azure(name)), "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n{printed}")
    assert exit_code == 0
    results = {r["policy"]: r for r in json.loads((tmp_path / "simulation.json").read_text())}
    assert list(results) == ["static-peak", "paper-alg1", "oasis", "oasis-joint"]
    for policy, result in results.items():
        assert result["requests"] == len(load_azure_trace(_azure(name)))
        assert result["energy_wh"] > result["idle_energy_wh"] > 0
        assert 0 <= result["slo_attainment_requests"] <= 1 and 0 <= result["slo_attainment_windows"] <= 1
        assert f"{policy} " in printed
    assert results["static-peak"]["replica_changes"] == 0 and results["oasis"]["replica_changes"] > 0
    assert "static-peak: always-on whole GPUs at the default clock (llama-3-8b x" in printed
    assert "paper-alg1: routes per-type" in printed and "headroom 0 (target utilisation 100% of MSRR), no damping" in printed
    assert "oasis: routes by-output (route MSRR: mix)" in printed and "target utilisation 67% of MSRR" in printed
    assert "oasis-joint: routes by-model" in printed and "forecast holt, MIG slices packed per fleet" in printed
    assert "GPUs the policy does not hold are off the bill" in printed
    assert "Azure LLM inference trace 2023" in printed and "CC-BY 4.0" in printed
    assert (tmp_path / "power.png").stat().st_size > 0


# --- route grouping, route capacity, start-up provisioning -----------------------------------------


@pytest.fixture(scope="module")
def paper_service() -> CostTable:
    return CostTable(paper_hct(), PAPER_SLO_P95_E2E_S)


def _choice(shape: str, msrr_rps: float, power_w: float) -> ShapeChoice:
    def no_curve() -> ServiceCurve:
        raise AssertionError("the capacity must not need a curve")

    return ShapeChoice(option=ShapeOption(shape=shape, msrr_rps=msrr_rps, power_w=power_w), trial_id=shape,
                       build_curve=no_curve)


def test_a_grouped_routes_msrr_is_the_harmonic_mix_or_the_slowest_type() -> None:
    """1 in 4 requests at 1 req/s and 3 in 4 at 3 req/s: 0.25 x 1 s + 0.75 x 1/3 s = 0.5 s each, so 2 req/s."""
    choices = [{QueryType.SISO: _choice("full-gpu", 3.0, 300.0), QueryType.LISO: _choice("full-gpu", 1.0, 200.0)}]
    shares = {QueryType.SISO: 0.75, QueryType.LISO: 0.25}
    plain = {"full-gpu": {QueryType.SISO: 1.0, QueryType.LISO: 1.0}}
    mix = route_capacity_at_mix("m/short-output", choices, shares, plain)
    assert mix.whole_unit.msrr_rps == pytest.approx(2.0)
    assert mix.whole_unit.power_w == pytest.approx(275.0)
    assert route_capacity_at_mix("m/short-output", choices, shares, plain, at_mix=False).whole_unit.msrr_rps == 1.0
    # Requests twice as costly as the profiled ones halve what a replica serves, type by type.
    doubled = {"full-gpu": {QueryType.SISO: 2.0, QueryType.LISO: 2.0}}
    costly = route_capacity_at_mix("m/short-output", choices, shares, doubled).whole_unit
    assert costly.msrr_rps == pytest.approx(1.0)
    assert costly.msrr_by_type == {QueryType.SISO: 1.5, QueryType.LISO: 0.5}


@pytest.mark.parametrize("mode", ["baseline", "one-at-a-time", "joint"])
def test_one_shared_configuration_for_one_type_is_that_types_own_choice(paper_service: CostTable, mode: str) -> None:
    pool = paper_inventory().pools[0]
    for query_type in QueryType:
        own = [c.option for c in paper_service.shape_choices("llama-3-8b", query_type, pool.hardware(), mode)]
        shared = [c[query_type].option for c in paper_service.shared_shape_choices(
            "llama-3-8b", {query_type: 1.0}, pool.hardware(), mode)]
        assert shared == own


def test_types_of_one_route_run_one_configuration(paper_service: CostTable) -> None:
    pool = paper_inventory().pools[0]
    shares = {QueryType.SISO: 0.4, QueryType.LISO: 0.6}
    for by_type in paper_service.shared_shape_choices("llama-3-8b", shares, pool.hardware(), "joint"):
        configurations = {(c.option.shape, c.option.clock_mhz, c.option.max_num_seqs, c.option.variant)
                          for c in by_type.values()}
        assert len(configurations) == 1
    # On its own SISO's best full-GPU configuration differs from the one it shares with LISO (the variant).
    alone = paper_service.shape_choices("llama-3-8b", QueryType.SISO, pool.hardware(), "joint")[0].option
    shared = paper_service.shared_shape_choices("llama-3-8b", shares, pool.hardware(), "joint")[0][QueryType.SISO].option
    assert (alone.variant, shared.variant) == ("chunked_prefill", "standard")


def _two_type_workload(rate_rps: float, seconds: float) -> Workload:
    """SISO and LISO requests alternating at the profiled lengths, for the paper table's llama-3-8b."""
    arrivals = _steady(rate_rps, seconds)
    large = np.arange(len(arrivals)) % 2 == 1
    inputs = np.where(large, 1000, 50)
    return Workload.from_tokens("two-types", arrivals, inputs, np.full(len(arrivals), 50), ("llama-3-8b",))


def test_types_sharing_a_route_share_its_replicas(paper_service: CostTable) -> None:
    """0.6 req/s of SISO + LISO: one 1g slice for the mix, against a slice per type when each has its own route."""
    inventory = paper_inventory()
    workload = _two_type_workload(0.6, 600.0)
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S, drain_s=60.0)
    runs = {}
    for grouping in (BY_OUTPUT, PER_TYPE):
        policy = OasisPolicy(name=grouping.name, config_choice="joint", routes=grouping,
                             scaling=ScalingConfig(headroom=0.1))
        runs[grouping.name] = simulate(workload, policy, paper_service, inventory.pools[0], inventory.prices, settings)
    # The mix's MSRR on 1g.20gb is 1 / (0.5 / 10.3 + 0.5 / 1.08) = 1.95 req/s: one slice covers 0.66.
    assert np.all(runs["by-output"].replicas_by_shape["1g.20gb"] == 1)
    assert np.all(runs["per-type"].replicas_by_shape["1g.20gb"] == 2)
    # One model's two slices share one GPU, so the second route adds its draw but no board.
    assert np.all(runs["by-output"].gpus_held == 1) and np.all(runs["per-type"].gpus_held == 1)
    assert runs["by-output"].result.slo_attainment_windows == 1.0


def test_a_routes_msrr_follows_the_mix_of_types_it_observes(paper_service: CostTable) -> None:
    """1.2 req/s of SISO for 600 s, then 1.6 req/s of LISO: 1.32 rps needed, then 1.76.

    Weighed tick by tick, as the live policy weighs the ingress's reports, the SISO half fits a 1g slice
    (SISO 10.3 req/s there); taking the slowest type's MSRR (LISO: 1.08 on 1g) would need a 2g slice
    (LISO 2.12) for the SISO half too. The LISO half needs the 2g slice either way.
    """
    siso, liso = _steady(1.2, 600.0), _steady(1.6, 1200.0, offset_s=600.3)
    arrivals = np.concatenate((siso, liso))
    inputs = np.concatenate((np.full(len(siso), 50), np.full(len(liso), 1000)))
    workload = Workload.from_tokens("siso-then-liso", arrivals, inputs, np.full(len(arrivals), 50), ("llama-3-8b",))
    inventory = paper_inventory()
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S, drain_s=60.0)
    shapes = {}
    for rule in ("mix", "slowest"):
        policy = OasisPolicy(name=rule, config_choice="joint", routes=BY_OUTPUT.model_copy(update={"capacity": rule}),
                             scaling=ScalingConfig(headroom=0.1))
        run = simulate(workload, policy, paper_service, inventory.pools[0], inventory.prices, settings)
        shapes[rule] = run.replicas_by_shape
    assert np.all(shapes["mix"]["1g.20gb"][100:590] == 1) and not shapes["mix"]["2g.20gb"][100:590].any()
    assert np.all(shapes["mix"]["2g.20gb"][750:1190] == 1) and not shapes["mix"]["1g.20gb"][750:1190].any()
    assert np.all(shapes["slowest"]["2g.20gb"][100:590] == 1)


def test_the_first_tick_provisions_for_the_ramp_before_a_scale_up_could_land(table: CostTable) -> None:
    """0.1 req/s for 20 s, then 3 req/s: ready at t = 0 is what 3 x 1.1 needs (2 GPUs), not the first 30 s' mean."""
    arrivals = np.concatenate((_steady(0.1, 20.0), _steady(3.0, 600.0, offset_s=20.2)))
    run = simulate(_workload(arrivals), _oasis(), table, POOL, PRICES, _settings(load_window_s=10.0, drain_s=60.0))
    assert run.gpus_held[0] == 2 and run.replicas_by_shape["full-gpu"][0] == 2
    assert run.result.p99_s == LATENCY_S


def test_static_peak_is_sized_for_the_requests_costs_when_lengths_count(table: CostTable) -> None:
    """1.5 req/s of requests twice the profiled length: 1.5 x 2 / 2 x 1.1 = 1.65, so 2 GPUs, and 1 otherwise."""
    arrivals = _steady(1.5, 300.0)
    workload = Workload.from_tokens("long", arrivals, np.full(len(arrivals), 200), np.full(len(arrivals), 20),
                                    (MODEL,))
    for scale_by_length, replicas in ((True, 2), (False, 1)):
        policy = static_peak_policy(workload, table, POOL, _settings(scale_by_length=scale_by_length), headroom=0.1)
        assert policy.groups[0].replicas == replicas


# --- the fast decisions are the core's decisions --------------------------------------------------


def _same_runs(workload: Workload, policy: OasisPolicy, table: CostTable, pool: DevicePool,
               settings: SimulationSettings) -> None:
    exact = simulate(workload, policy, table, pool, PRICES, settings.model_copy(update={"decisions": "exact"}))
    fast = simulate(workload, policy, table, pool, PRICES, settings.model_copy(update={"decisions": "fast"}))
    assert fast.result == exact.result
    assert fast.replicas_by_shape.keys() == exact.replicas_by_shape.keys()
    for shape, replicas in exact.replicas_by_shape.items():
        assert np.array_equal(fast.replicas_by_shape[shape], replicas), shape
    assert np.array_equal(fast.power_w, exact.power_w)


@pytest.mark.parametrize("name", ["code", "conv"])
@pytest.mark.parametrize("scale", [0.25, 1.0, 4.0])
def test_fast_decisions_are_the_live_cores_on_real_traces(paper_service: CostTable, name: str, scale: float) -> None:
    """Replica by replica, for every policy that autoscales, on 20 minutes of each Azure trace at three rates."""
    trace = load_azure_trace(_azure(name)).window(0.0, 1200.0).scaled(scale)
    workload = Workload.from_trace(trace, ("llama-3-8b", "qwen-7b"))
    inventory = paper_inventory(64)
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S, drain_s=300.0)
    policies = [paper_algorithm1(), oasis_damped(), oasis_joint(),
                oasis_damped().model_copy(update={"routes": BY_OUTPUT.model_copy(update={"capacity": "slowest"})})]
    for policy in policies:
        _same_runs(workload, policy, paper_service, inventory.pools[0], settings)


def test_fast_decisions_follow_scale_to_zero_bounds_and_holt_forecasts(table: CostTable) -> None:
    """Idle gaps long enough to scale to zero, bursts past max_replicas, a floor of two, a trend forecast."""
    rng = np.random.default_rng(7)
    pieces, start = [], 0.0
    for rate, seconds in ((0.2, 300), (0.0, 400), (6.0, 200), (1.5, 600), (0.0, 900), (3.0, 300), (0.05, 600)):
        if rate:
            pieces.append(start + np.sort(rng.uniform(0, seconds, rng.poisson(rate * seconds))))
        start += seconds
    workload = _workload(np.concatenate(pieces))
    limits = {"m/short-output": RouteLimits(min_replicas=1, max_replicas=3, allow_scale_to_zero=True,
                                            scale_to_zero_after_s=120.0)}
    settings = _settings(load_window_s=10.0, drain_s=300.0, startup_s=45.0)
    for scaling in (
        ScalingConfig(route_limits=limits, upscale_cooldown_s=20.0, downscale_cooldown_s=60.0),
        ScalingConfig(route_limits=limits, forecast=HoltForecast(horizon_s=30.0)),
        ScalingConfig(default_limits=RouteLimits(min_replicas=2, max_replicas=4), hysteresis=0.0, headroom=0.0),
    ):
        _same_runs(workload, _oasis().model_copy(update={"scaling": scaling}), table, POOL, settings)
