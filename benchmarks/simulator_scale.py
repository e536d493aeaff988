"""How the what-if simulator and the planner scale, on this machine, in one run, each figure against its target.

Simulator, one route group: the Azure conversation trace tiled end to end
(each copy starts where the previous ended) to 10k ... 10M requests on one
model (its two routes), under each autoscaling policy. Target: 10M requests
in under 30 s. Simulator, many routes: the trace split over 10 and 100
models (20 and 200 routes). Target: 200 routes at >= 100,000 simulated
requests per second of wall time. The decisions come from the fast path
(oasis_ray.planning.sim_decisions, the same decisions as the live core,
checked by tests/test_simulator.py); one row runs the core itself every
tick for comparison. Planner: one plan per cluster size, up to 10,000 GPUs
and 1,000 models (4 routes each, rates drawn so the cluster is about 70%
used), timed apart from indexing the table for the SLO (done once per table
and SLO). Target: a 10,000-GPU, 1,000-model plan in under 1 s.

The models are copies of the paper table's two models under new names (the OASIS paper's
figures and GPU-model rows, not measured here; see oasis_ray.planning.paper_tables), so
only the sizes are realistic, not the numbers.

    .venv/bin/python benchmarks/simulator_scale.py [--trace ../shared/traces/azure_llm_2023_conv.csv]

Trace: Azure LLM inference trace 2023, Azure Public Dataset, CC-BY 4.0;
Patel et al., "Splitwise: Efficient generative LLM inference using phase
splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from oasis_ray.profiling.hct import HardwareCostTable
from oasis_ray.planning.inventory import DevicePool, Inventory
from oasis_ray.planning.paper_tables import PAPER_MODELS, paper_hct, paper_inventory
from oasis_ray.planning.planner import PlanRequest, RouteDemand, plan
from oasis_ray.query_types import QueryType
from oasis_ray.costs.table import CostTable
from oasis_ray.planning.sim_policies import SimulationSettings, oasis_damped, oasis_joint, paper_algorithm1
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.planning.simulator import simulate
from oasis_ray.planning.traces import Trace, load_azure_trace

DEFAULT_TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure_llm_2023_conv.csv"
TRACE_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
EXACT_SIZE = 100_000
MODEL_COUNTS = (10, 100)
MANY_MODEL_REQUESTS = (100_000, 1_000_000)
CLUSTERS = ((8, 1), (64, 10), (1000, 100), (10_000, 1000))
SLO_S = 20.0
TARGET_TEN_MILLION_S = 30.0
TARGET_MANY_ROUTES_RPS = 100_000
TARGET_MANY_ROUTES = 200
TARGET_PLAN_S = 1.0
TARGET_UTILISATION = 0.7


def tiled(trace: Trace, requests: int, models: tuple[str, ...] = ("llama-3-8b",)) -> Workload:
    """The trace repeated end to end until it holds `requests` requests (its burst shape kept)."""
    base = trace.requests
    gap = float(base["arrival_s"].iloc[-1]) + float(np.diff(base["arrival_s"].to_numpy()).mean())
    copies = -(-requests // len(base))
    frames = [base.assign(arrival_s=base["arrival_s"] + i * gap) for i in range(copies)]
    requests_frame = pd.concat(frames, ignore_index=True).iloc[:requests]
    return Workload.from_trace(replace(trace, requests=requests_frame), models)


def many_models(table: HardwareCostTable, models: int) -> HardwareCostTable:
    """`models` renamed copies of the paper table's models, rows and load points alike."""
    names = list(PAPER_MODELS)
    rows, points = [], []
    for i in range(models):
        source = names[i % len(names)]
        copy = table.rows[table.rows["model_id"] == source].assign(model_id=f"model-{i:03d}")
        copy = copy.assign(trial_id=f"model-{i:03d}|" + copy["trial_id"])
        trial_points = table.load_points[table.load_points["trial_id"].isin(table.rows.loc[
            table.rows["model_id"] == source, "trial_id"])]
        points.append(trial_points.assign(trial_id=f"model-{i:03d}|" + trial_points["trial_id"]))
        rows.append(copy)
    return HardwareCostTable(rows=pd.concat(rows, ignore_index=True), load_points=pd.concat(points, ignore_index=True),
                             metadata=table.metadata)


def bench_simulator(trace: Trace) -> None:
    table = CostTable(paper_hct(), SLO_S)
    inventory = paper_inventory()
    settings = SimulationSettings(slo_p95_e2e_s=SLO_S)
    print("\nsimulator, one route group (one model): requests simulated per second of wall time")
    print(f"{'requests':>11}  {'trace h':>7}  {'policy':<12} {'decisions':<9} {'wall s':>8}  {'req/s':>10}")
    for size in TRACE_SIZES:
        workload = tiled(trace, size)
        runs = [(policy, "fast") for policy in (paper_algorithm1(), oasis_damped(), oasis_joint())]
        if size == EXACT_SIZE:
            runs.append((oasis_damped(), "exact"))
        for policy, decisions in runs:
            started = time.perf_counter()
            simulate(workload, policy, table, inventory.pools[0], inventory.prices,
                     settings.model_copy(update={"decisions": decisions}))
            wall = time.perf_counter() - started
            flag = "" if size < TRACE_SIZES[-1] else _verdict(wall < TARGET_TEN_MILLION_S,
                                                               f"< {TARGET_TEN_MILLION_S:g} s")
            print(f"{size:>11,}  {workload.duration_s / 3600:7.1f}  {policy.name:<12} {decisions:<9} {wall:8.2f}  "
                  f"{size / wall:10,.0f}{flag}")
    print(f"\n{'models':>11}  {'routes':>7}  {'requests':>10}  {'policy':<12} {'wall s':>8}  {'req/s':>10}")
    for models in MODEL_COUNTS:
        many = CostTable(many_models(paper_hct(), models), SLO_S)
        names = tuple(f"model-{i:03d}" for i in range(models))
        for size in MANY_MODEL_REQUESTS:
            workload = tiled(trace, size, names)
            policy = oasis_damped()
            started = time.perf_counter()
            simulate(workload, policy, many, inventory.pools[0], inventory.prices, settings)
            wall = time.perf_counter() - started
            routes = len({(model, policy.routes.routes[QUERY_TYPES[code]]) for model, code in workload.routes_present()})
            flag = "" if routes < TARGET_MANY_ROUTES else _verdict(size / wall >= TARGET_MANY_ROUTES_RPS,
                                                                   f">= {TARGET_MANY_ROUTES_RPS:,} req/s")
            print(f"{models:>11}  {routes:>7}  {size:>10,}  {policy.name:<12} {wall:8.2f}  {size / wall:10,.0f}{flag}")


def _verdict(met: bool, target: str) -> str:
    return f"  (target {target}: {'met' if met else 'MISSED'})"


def bench_planner() -> None:
    base = paper_hct()
    rng = np.random.default_rng(0)
    print("\nplanner: one plan per cluster (joint configuration choice); the table is indexed once per table and SLO")
    print(f"{'GPUs':>6}  {'models':>6}  {'routes':>6}  {'index s':>8}  {'plan s':>7}  {'GPUs used':>9}  shortfalls")
    for gpus, models in CLUSTERS:
        table = many_models(base, models)
        started = time.perf_counter()
        service = CostTable(table, SLO_S)
        indexed = time.perf_counter() - started
        pool = paper_inventory(gpus).pools[0]
        inventory = Inventory(pools=(pool,), prices=paper_inventory().prices)
        demands = _demands(service, pool, models, gpus, rng)
        request = PlanRequest(slo_p95_e2e_s=SLO_S, demands=demands, inventory=inventory)
        started = time.perf_counter()
        result = plan(request, service)
        planned = time.perf_counter() - started
        used = sum(p.whole_devices + p.mig_devices for p in result.pools)
        flag = "" if gpus < CLUSTERS[-1][0] else _verdict(planned < TARGET_PLAN_S, f"plan < {TARGET_PLAN_S:g} s")
        print(f"{gpus:>6}  {models:>6}  {len(demands):>6}  {indexed:8.3f}  {planned:7.3f}  {used:>9}  "
              f"{len(result.shortfalls)}{flag}")


def _demands(
    service: CostTable, pool: DevicePool, models: int, gpus: int, rng: np.random.Generator
) -> tuple[RouteDemand, ...]:
    """Random rates per route, scaled so their GPUs (need / full-GPU MSRR) add up to the target share."""
    routes = [(f"model-{i:03d}", qt) for i in range(models) for qt in QueryType]
    weights = rng.lognormal(0.0, 1.5, len(routes))
    full_msrr = []
    for model, query_type in routes:
        found = service.route_capacity(model, query_type, pool.hardware(), "joint")
        full_msrr.append(found[0].whole_unit.msrr_rps if found else 1.0)
    gpu_share = weights / weights.sum() * gpus * TARGET_UTILISATION
    return tuple(
        RouteDemand(model_id=model, query_type=query_type, rate_rps=float(share * msrr))
        for (model, query_type), share, msrr in zip(routes, gpu_share, full_msrr)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    args = parser.parse_args()
    bench_simulator(load_azure_trace(args.trace))
    bench_planner()


if __name__ == "__main__":
    main()
