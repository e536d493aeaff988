"""The energy result, simulated: four policies on both Azure traces at three rates, in one run, with ratios.

For each trace (code, conversation) x rate scale (x0.25, x1, x4) x policy
(static-peak, paper-alg1, oasis, oasis-joint; oasis_ray.planning.sim_policies)
it prints energy, GPU-hours, SLO attainment per request and per 5-minute
window and replica changes, the ratio of each policy's energy to
static-peak's, and oasis-joint's against paper Algorithm 1. Targets: at
>= 99% SLO attainment (both measures), oasis-joint uses >= 40% less energy
than static-peak and >= 15% less than paper Algorithm 1. Where a target is
missed, the comparison is rerun with one constraint lifted at a time
(start-up delay, burst size, idle power, clock floor;
oasis_ray.planning.energy_study) and how far each moves it is printed.
Beside each comparison is the fluid ideal on oasis-joint's configurations
(capacity that follows the rate exactly, every GPU at its MSRR), the most any
policy could save on them, so a miss reads as the policy's or the table's. It
opens with the paper's runtime experiment (Table 8) in simulation, and
writes a power-over-time plot per trace and rate under --out.

The traces are one service's traffic; they are split round robin over the
models given (by default the two the table has, Llama-3-8B and Qwen-7B), so
MIG packing of several models' slices matters.

    .venv/bin/python benchmarks/energy_policies.py --out /tmp/energy

Traces: Azure LLM inference trace 2023, Azure Public Dataset, CC-BY 4.0;
Patel et al., "Splitwise: Efficient generative LLM inference using phase
splitting", ISCA 2024.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oasis_ray.costs.table import CostTable
from oasis_ray.planning.capacity_cli import TRACE_CREDITS, format_table
from oasis_ray.planning.capacity_figures import power_over_time_figure
from oasis_ray.planning.energy_study import (
    JOINT,
    PAPER,
    POLICY_ORDER,
    STATIC_PEAK,
    Comparison,
    StudySetup,
    Targets,
    compare,
    what_ifs,
)
from oasis_ray.planning.paper_runtime import (
    PAPER_FULL_GPU_MEAN_POWER_W,
    PAPER_MIG_MEAN_POWER_W,
    PAPER_SAVING,
    RuntimeTraceSpec,
    runtime_experiment,
)
from oasis_ray.planning.inventory import Inventory
from oasis_ray.planning.paper_tables import PAPER_SLO_P95_E2E_S, paper_hct, paper_inventory
from oasis_ray.planning.sim_policies import SIMULATION_HEADROOM, SimulationSettings, policy_settings
from oasis_ray.planning.simulator import OFF_THE_BILL
from oasis_ray.planning.sim_workload import Workload
from oasis_ray.planning.traces import load_azure_trace
from oasis_ray.profiling.hct import HardwareCostTable

TRACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
TRACES = ("code", "conv")
SCALES = (0.25, 1.0, 4.0)
GPUS = 512
RUNTIME_TARGET_POINTS = 0.04
FIGURE_DPI = 110


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", default=",".join(TRACES), help="comma-separated from code, conv")
    parser.add_argument("--scales", default=",".join(f"{s:g}" for s in SCALES), help="rate scales")
    parser.add_argument("--models", default="llama-3-8b,qwen-7b", help="models the traces are split over")
    parser.add_argument("--headroom", type=float, default=SIMULATION_HEADROOM, help="oasis and oasis-joint")
    parser.add_argument("--out", type=Path, help="folder for the power-over-time plots (PNG)")
    args = parser.parse_args()
    started = time.perf_counter()
    hct = paper_hct()
    table = CostTable(hct, PAPER_SLO_P95_E2E_S)
    inventory = paper_inventory(GPUS)
    pool = inventory.pools[0]
    print(f"Cost table: {provenance(hct)}")
    if uses_gpu_model(hct):
        print(ML_ENERGY_CREDIT)
    print(f"Pool: {pool.name}, board idle {_watts(pool.idle_power_w)} (the board with no engine), "
          f"${pool.usd_per_hour}/GPU-h. {OFF_THE_BILL}\n")
    print_runtime_experiment(table, inventory)
    settings = SimulationSettings(slo_p95_e2e_s=PAPER_SLO_P95_E2E_S)
    setup = StudySetup(table=table, pool=pool, prices=inventory.prices, settings=settings, headroom=args.headroom)
    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    targets = Targets()
    summary = []
    for name in args.traces.split(","):
        trace = load_azure_trace(TRACES_DIR / f"azure_llm_2023_{name.strip()}.csv")
        for scale in (float(s) for s in args.scales.split(",")):
            workload = Workload.from_trace(trace.scaled(scale) if scale != 1 else trace, models)
            label = f"{name} x{scale:g}"
            comparison = compare(workload, setup, label)
            print_comparison(comparison, workload)
            missed = comparison.misses(targets)
            summary.append((label, comparison, missed))
            if missed:
                print(f"  MISSED: {'; '.join(missed)}")
                print_what_ifs(comparison, workload, setup)
            else:
                print("  targets met")
            if args.out:
                write_plot(comparison, workload, args.out, hct)
            print()
    print_summary(summary, targets)
    print("\n".join(policy_settings(policy) for policy in summary[0][1].policies.values()))
    print(TRACE_CREDITS["azure"])
    if uses_gpu_model(hct):
        print(ML_ENERGY_CREDIT)
    print(f"(all of the above in {time.perf_counter() - started:.0f} s)")
    return 0


ML_ENERGY_CREDIT = ('Derived rows come from the GPU model fitted to the OASIS tables and to ML.ENERGY\'s vLLM '
                    'measurements (J.-W. Chung et al., "The ML.ENERGY Benchmark", NeurIPS Datasets and Benchmarks '
                    '2025); see the README\'s GPU model section.')


def provenance(hct: HardwareCostTable) -> str:
    """Where the table's figures come from: counts of rows by provenance where the table records it."""
    rows = hct.rows
    if "provenance" not in rows:
        return f"{hct.metadata.spec_name} (schema without provenance)"
    counts = rows["provenance"].value_counts()
    parts = [f"{counts.get(kind, 0)} {kind}" for kind in ("published", "measured", "derived")]
    return f"{hct.metadata.spec_name}: {len(rows)} rows, " + ", ".join(parts)


def _watts(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f} W"


def uses_gpu_model(hct: HardwareCostTable) -> bool:
    rows = hct.rows
    return "provenance_note" in rows and bool(rows["provenance_note"].fillna("").str.contains("gpu_model").any())


def print_runtime_experiment(table: CostTable, inventory: Inventory) -> None:
    spec = RuntimeTraceSpec()
    result = runtime_experiment(table, inventory.pools[0], inventory.prices, spec)
    print("The paper's runtime experiment (seed 000, Table 8), simulated: Llama-3-8B on "
          f"{inventory.pools[0].name}, {result.full_gpu.requests} requests over {spec.hours:g} h "
          f"({spec.requests_per_hour:g} req/h, inter-arrival CV {spec.interarrival_cv:g}, gamma renewal, seed "
          f"{spec.seed}); each run holds one GPU, always on")
    rows = [["full GPU", f"{result.full_gpu.mean_power_w:.1f}", f"{PAPER_FULL_GPU_MEAN_POWER_W:.1f}", "-", "-", "-",
             f"{result.full_gpu.p99_s:.2f}", f"{result.full_gpu.slo_attainment_requests:.1%}"]]
    for shape, run in result.slices.items():
        gap = result.saving_on(shape) - PAPER_SAVING
        rows.append([shape, f"{run.mean_power_w:.1f}", f"{PAPER_MIG_MEAN_POWER_W:.1f}",
                     f"{result.saving_on(shape):.1%}", f"{gap * 100:+.1f}",
                     "met" if abs(gap) <= RUNTIME_TARGET_POINTS else "missed",
                     f"{run.p99_s:.2f}", f"{run.slo_attainment_requests:.1%}"])
    print(format_table(["run", "mean W", "paper W", "saving", "vs 12.4% (points)",
                        f"within +-{RUNTIME_TARGET_POINTS * 100:g}", "P99 s", "reqs <= SLO"], rows))
    gap = result.saving - PAPER_SAVING
    verdict = "within" if abs(gap) <= RUNTIME_TARGET_POINTS else "OUTSIDE"
    print(f"compared slice: {result.slice_shape}, the smallest that keeps every request within the SLO, as the "
          f"paper's did; saving {result.saving:.1%} vs the paper's {PAPER_SAVING:.1%}: {gap * 100:+.1f} points, "
          f"{verdict} +-{RUNTIME_TARGET_POINTS * 100:g}\n")


def print_comparison(comparison: Comparison, workload: Workload) -> None:
    static = comparison.energy(STATIC_PEAK)
    rows = []
    for name in POLICY_ORDER:
        r = comparison.runs[name].result
        rows.append([name, f"{r.energy_wh:,.0f}", f"{r.energy_wh / static:.2f}", f"{r.idle_energy_wh:,.0f}",
                     f"{r.gpu_hours:.2f}", str(r.peak_gpus), f"{r.slo_attainment_requests:.1%}",
                     f"{r.slo_attainment_windows:.1%}", f"{r.p95_s:.1f}", str(r.replica_changes)])
    print(f"{comparison.label}: {len(workload):,} requests over {workload.duration_s / 60:.0f} min, models "
          f"{', '.join(workload.models)}")
    print(format_table(["policy", "energy Wh", "/ static-peak", "idle Wh", "GPU-h", "peak GPUs", "SLO reqs",
                        "SLO 5-min", "P95 s", "changes"], rows))
    print(f"  oasis-joint / paper-alg1 energy: {comparison.energy(JOINT) / comparison.energy(PAPER):.2f}; saving "
          f"vs static-peak {comparison.saving(STATIC_PEAK):.1%}, vs paper-alg1 {comparison.saving(PAPER):.1%}")
    print(f"  fluid ideal on oasis-joint's configurations (capacity following the rate exactly, every GPU at its "
          f"MSRR): {comparison.ideal_wh:,.0f} Wh, saving {comparison.ideal_saving():.1%} vs static-peak")


def print_what_ifs(comparison: Comparison, workload: Workload, setup: StudySetup) -> None:
    print("  what binds (oasis-joint rerun with one constraint lifted; every policy rerun alike):")
    rows = [["as simulated", "-", *_standing(comparison)]]
    for what_if in what_ifs(workload, setup):
        rows.append([what_if.constraint, what_if.change, *_standing(what_if.comparison)])
    table = format_table(["lifted", "change", "vs static-peak", "vs paper-alg1", "SLO reqs", "SLO 5-min"], rows)
    print("\n".join("    " + line for line in table.splitlines()))


def _standing(comparison: Comparison) -> list[str]:
    result = comparison.runs[JOINT].result
    return [f"{-comparison.saving(STATIC_PEAK):+.1%}", f"{-comparison.saving(PAPER):+.1%}",
            f"{result.slo_attainment_requests:.1%}", f"{result.slo_attainment_windows:.1%}"]


def print_summary(summary: list[tuple[str, Comparison, list[str]]], targets: Targets) -> None:
    print(f"Summary (targets at >= {targets.slo_attainment:.0%} SLO attainment, per request and per 5-minute "
          f"window: oasis-joint >= {targets.saving_vs_static:.0%} less energy than static-peak, >= "
          f"{targets.saving_vs_paper:.0%} less than paper-alg1)")
    rows = []
    for label, comparison, missed in summary:
        joint = comparison.runs[JOINT].result
        rows.append([label, f"{comparison.saving(STATIC_PEAK):.2%}", f"{comparison.saving(PAPER):.2%}",
                     f"{min(joint.slo_attainment_requests, joint.slo_attainment_windows):.1%}",
                     "met" if not missed else "MISSED", f"{comparison.ideal_saving():.2%}"])
    print(format_table(["trace", "saving vs static-peak", "saving vs paper-alg1", "oasis-joint SLO (min)",
                        "targets", "fluid ideal vs static-peak"], rows))
    print("fluid ideal: oasis-joint's configurations with capacity that follows the rate exactly (no start-up, no "
          "headroom, fractions of a GPU, never below a route's smallest shape), every GPU at its MSRR: no policy "
          "that keeps each GPU within its MSRR saves more on these configurations "
          "(oasis_ray.planning.energy_study.fluid_ideal_wh)")


def write_plot(comparison: Comparison, workload: Workload, out: Path, hct: HardwareCostTable) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = [comparison.runs[name] for name in POLICY_ORDER]
    figure = power_over_time_figure(runs, f"{comparison.label}: fleet power per policy ({provenance(hct)})")
    path = out / f"power_{comparison.label.replace(' ', '_')}.png"
    figure.savefig(path, dpi=FIGURE_DPI)
    print(f"  wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
