"""oasis-joint's damping swept on both Azure traces at three rates: which settings meet the energy targets.

The energy result (benchmarks/energy_policies.py) runs oasis-joint with one
set of damping settings. This sweeps them, every combination of headroom,
hysteresis, downscale cooldown and forecast given, on the same workloads
(both traces x0.25, x1, x4, split over Llama-3-8B and Qwen-7B, on the paper
table), and prints per setting oasis-joint's saving against static-peak and
its SLO attainment (the lower of per request and per 5-minute window) on
each workload, and how many workloads meet every target (>= 40% less than
static-peak, >= 15% less than paper Algorithm 1, at >= 99% SLO attainment).
static-peak and paper Algorithm 1 are simulated once per workload. The
benchmark's own setting is marked with `*`.

    .venv/bin/python benchmarks/energy_damping.py

Traces: Azure LLM inference trace 2023, Azure Public Dataset, CC-BY 4.0;
Patel et al., "Splitwise: Efficient generative LLM inference using phase
splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

from oasis_ray.costs.table import CostTable
from oasis_ray.planning.capacity_cli import TRACE_CREDITS, format_table
from oasis_ray.planning.energy_study import (
    JOINT,
    PAPER,
    STATIC_PEAK,
    Comparison,
    StudySetup,
    Targets,
    fluid_ideal_wh,
    static_peak_keeping_slo,
)
from oasis_ray.planning.paper_tables import PAPER_SLO_P95_E2E_S, paper_hct, paper_inventory
from oasis_ray.planning.sim_policies import SIMULATION_HEADROOM, SimulationSettings, oasis_joint, paper_algorithm1
from oasis_ray.planning.sim_workload import Workload
from oasis_ray.planning.simulator import simulate
from oasis_ray.planning.traces import load_azure_trace
from oasis_ray.scaling.settings import HoltForecast, ReactiveForecast, ScalingConfig

TRACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
FORECASTS = {"holt": HoltForecast, "reactive": ReactiveForecast}


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def main() -> int:
    defaults = oasis_joint(SIMULATION_HEADROOM).scaling
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headroom", type=_floats, default=[0.3, 0.5, 0.7])
    parser.add_argument("--hysteresis", type=_floats, default=[0.1, 0.2, 0.35])
    parser.add_argument("--downscale-cooldown", type=_floats, default=[120.0, 300.0, 600.0], help="seconds")
    parser.add_argument("--forecast", default="holt,reactive", help=f"comma-separated from {', '.join(FORECASTS)}")
    parser.add_argument("--traces", default="code,conv")
    parser.add_argument("--scales", type=_floats, default=[0.25, 1.0, 4.0])
    args = parser.parse_args()
    forecasts = [name.strip() for name in args.forecast.split(",") if name.strip()]
    unknown = sorted(set(forecasts) - set(FORECASTS))
    if unknown:
        parser.error(f"--forecast: unknown {unknown}; choose from {sorted(FORECASTS)}")
    started = time.perf_counter()
    table = CostTable(paper_hct(), PAPER_SLO_P95_E2E_S)
    inventory = paper_inventory(512)
    pool, prices = inventory.pools[0], inventory.prices
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S)
    setup = StudySetup(table=table, pool=pool, prices=prices, settings=settings, headroom=SIMULATION_HEADROOM)
    targets = Targets()
    # Per workload, what every setting is compared with: static-peak's and paper Algorithm 1's runs, and the
    # fluid ideal (it depends on oasis-joint's configurations, which no damping setting changes).
    baselines = []
    for name in args.traces.split(","):
        trace = load_azure_trace(TRACES_DIR / f"azure_llm_2023_{name.strip()}.csv")
        for scale in args.scales:
            workload = Workload.from_trace(trace.scaled(scale) if scale != 1 else trace, ("llama-3-8b", "qwen-7b"))
            policies = {STATIC_PEAK: static_peak_keeping_slo(workload, setup), PAPER: paper_algorithm1()}
            runs = {policy_name: simulate(workload, policy, table, pool, prices, settings)
                    for policy_name, policy in policies.items()}
            ideal = fluid_ideal_wh(workload, table, pool, settings, oasis_joint())
            baselines.append((f"{name.strip()} x{scale:g}", workload, runs, policies, ideal))
    grid = list(itertools.product(args.headroom, args.hysteresis, args.downscale_cooldown, forecasts))
    rows = []
    for index, (headroom, hysteresis, cooldown, forecast) in enumerate(grid, start=1):
        scaling = ScalingConfig(**{**defaults.model_dump(), "headroom": headroom, "hysteresis": hysteresis,
                                   "downscale_cooldown_s": cooldown, "forecast": FORECASTS[forecast]()})
        policy = oasis_joint().model_copy(update={"scaling": scaling})
        cells, met = [], 0
        for label, workload, runs, policies, ideal in baselines:
            comparison = Comparison(label=label, ideal_wh=ideal, policies={**policies, JOINT: policy},
                                    runs={**runs, JOINT: simulate(workload, policy, table, pool, prices, settings)})
            result = comparison.runs[JOINT].result
            meets = not comparison.misses(targets)
            met += meets
            cells.append(f"{comparison.saving(STATIC_PEAK):+.1%} / "
                         f"{min(result.slo_attainment_requests, result.slo_attainment_windows):.1%}"
                         f"{' met' if meets else ''}")
        ours = scaling == defaults
        rows.append([f"{headroom:g}", f"{hysteresis:g}", f"{cooldown:g}", forecast + (" *" if ours else ""),
                     str(met), *cells])
        print(f"[{index}/{len(grid)}] headroom {headroom:g}, hysteresis {hysteresis:g}, down {cooldown:g} s, "
              f"{forecast}: {met} of {len(baselines)} met", file=sys.stderr, flush=True)
    print("oasis-joint's saving vs static-peak / SLO attainment (min of per request and per 5-minute window); "
          f"'met': >= {targets.saving_vs_static:.0%} vs static-peak, >= {targets.saving_vs_paper:.0%} vs "
          f"paper-alg1, at >= {targets.slo_attainment:.0%}")
    print(format_table(["headroom", "hysteresis", "down s", "forecast", "met",
                        *[label for label, *_ in baselines]], rows))
    print(f"* the setting benchmarks/energy_policies.py runs; {TRACE_CREDITS['azure']}")
    print(f"({len(grid)} settings x {len(baselines)} workloads in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
