"""Capacity planning from the command line: plan, simulate (policies side by side) and replay.

    python -m oasis_ray.planning.capacity_cli plan --hct paper --demand llama-3-8b:LISO=0.0114 --gpus 8
    python -m oasis_ray.planning.capacity_cli plan --hct paper --demand llama-3-8b:LISO=2 --intent min-latency
    python -m oasis_ray.planning.capacity_cli simulate --hct paper --trace ../shared/traces/azure_llm_2023_conv.csv --out out/
    python -m oasis_ray.planning.capacity_cli replay --url http://127.0.0.1:8000 --model oasis-tiny-llama \\
        --trace ../shared/traces/azure_llm_2023_conv.csv --duration 30 --out out/

`--hct paper` uses oasis_ray.planning.paper_tables: the OASIS paper's figures as
published and GPU-model rows (oasis_ray.gpu_model) for what it does not give, not
measured here; its default inventory (`--gpus`) has the fit's idle power and
placeholder prices. `--inventory`
takes a YAML or JSON file in the Inventory schema (pools and prices).

Outputs: a table on stdout at the end; with --out, plan.json,
simulation.json and power.png (power over time per policy), or replay.json.
Long runs show a progress bar on stderr.

Exit status: 0 done; 1 a plan with a shortfall, or a replay with failed
requests; 2 bad input (trace, table, inventory, arguments).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError
from tqdm import tqdm

from oasis_ray.intents import Intent
from oasis_ray.planning.capacity_figures import power_over_time_figure
from oasis_ray.planning.energy_study import StudySetup, static_peak_keeping_slo
from oasis_ray.profiling.hct import HardwareCostTable, HctError, load_hct
from oasis_ray.planning.inventory import DevicePool, Inventory, Prices
from oasis_ray.planning.paper_tables import PAPER_RUN_ID, PAPER_SLO_P95_E2E_S, paper_hct, paper_inventory
from oasis_ray.planning.planner import Plan, PlanRequest, RouteDemand, plan
from oasis_ray.query_types import QueryType
from oasis_ray.planning.replay import EndpointSettings, run_replay
from oasis_ray.planning.replay_plan import ReplayReport, replay_requests
from oasis_ray.costs.table import CostTable
from oasis_ray.planning.sim_policies import (
    SIMULATION_HEADROOM,
    STATIC_PEAK_HEADROOM,
    FixedPolicy,
    OasisPolicy,
    SimulationSettings,
    oasis_damped,
    oasis_joint,
    paper_algorithm1,
    policy_settings,
)
from oasis_ray.planning.sim_routes import GROUPINGS
from oasis_ray.planning.sim_workload import QUERY_TYPES, Workload
from oasis_ray.planning.simulator import OFF_THE_BILL, SimRun, simulate
from oasis_ray.planning.traces import Trace, TraceError, load_azure_trace, load_burstgpt_trace

EXIT_SHORT = 1
EXIT_BAD_INPUT = 2
PAPER = "paper"
POLICY_NAMES = ("static-peak", "paper-alg1", "oasis", "oasis-joint")
FIGURE_DPI = 130
TRACE_CREDITS = {
    "azure": "Trace: Azure LLM inference trace 2023, Azure Public Dataset, CC-BY 4.0; Patel et al., "
    '"Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024.',
    "burstgpt": 'Trace: BurstGPT, Wang et al., "BurstGPT: A Real-world Workload Dataset to Optimize LLM '
    'Serving Systems", arXiv:2401.17644.',
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (TraceError, HctError, ValidationError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oasis_ray.planning.capacity_cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True)

    planning = commands.add_parser("plan", help="what to deploy for given rates, and what it costs")
    _table_arguments(planning)
    planning.add_argument("--demand", action="append", default=[], metavar="MODEL:TYPE=RPS",
                          help="a route's rate, e.g. llama-3-8b:LISO=0.0114 (repeatable)")
    planning.add_argument("--trace", type=Path, help="plan for the mean rates of a trace instead")
    _trace_arguments(planning)
    planning.add_argument("--intent", choices=[intent.value for intent in Intent], default=Intent.MIN_ENERGY.value,
                          help="what each route's configuration is chosen for: the fewest joules per request "
                               "(default), the lowest P95, the fewest GPU-hours, or slo: the sweep's baseline "
                               "configuration, as deployed without a choice")
    planning.add_argument("--choice", choices=("one-at-a-time", "joint"),
                          help="how the intent's configuration is searched (default joint)")
    planning.add_argument("--headroom", type=float, default=0.1)
    planning.add_argument("--no-mig", action="store_true", help="whole devices only")
    planning.set_defaults(run=_plan)

    simulating = commands.add_parser("simulate", help="policies side by side on a trace")
    _table_arguments(simulating)
    simulating.add_argument("--trace", type=Path, required=True)
    _trace_arguments(simulating)
    simulating.add_argument("--pool", help="the inventory pool to simulate (default: the first)")
    simulating.add_argument("--policies", default=",".join(POLICY_NAMES),
                            help=f"comma-separated, from {', '.join(POLICY_NAMES)}")
    simulating.add_argument("--headroom", type=float, default=SIMULATION_HEADROOM,
                            help=f"oasis's and oasis-joint's headroom (default {SIMULATION_HEADROOM:g}: target utilisation "
                                 f"{1 / (1 + SIMULATION_HEADROOM):.0%}% of MSRR; the live default is 0.1)")
    simulating.add_argument("--static-headroom", type=float, default=STATIC_PEAK_HEADROOM,
                            help=f"static-peak's headroom over its busiest window (default {STATIC_PEAK_HEADROOM:g})")
    simulating.add_argument("--routes", choices=tuple(GROUPINGS),
                            help="how oasis and oasis-joint group query types into routes (default: oasis "
                                 "by-output as serve_config.yaml, SISO+LISO and SILO+LILO; oasis-joint by-model, "
                                 "one route per model); per-type is the paper's (paper-alg1 is always per-type)")
    simulating.add_argument("--route-capacity", choices=("mix", "slowest"), default="mix",
                            help="a grouped route's MSRR: at each tick's mix of types, as the live policy "
                                 "(default), or always its slowest type's (safe for any mix)")
    simulating.add_argument("--startup-s", type=float, default=60.0, help="replica start-up time")
    simulating.add_argument("--tick-s", type=float, default=10.0, help="autoscaler interval")
    simulating.add_argument("--no-length-scaling", action="store_true",
                            help="every request of a type costs its profiled lengths (the paper's assumption)")
    simulating.set_defaults(run=_simulate)

    replaying = commands.add_parser("replay", help="replay a trace window against a running oasis endpoint")
    replaying.add_argument("--url", required=True, help="HTTP root of the app")
    replaying.add_argument("--api-key")
    replaying.add_argument("--model", required=True)
    replaying.add_argument("--trace", type=Path, required=True)
    _trace_arguments(replaying, with_models=False)
    replaying.add_argument("--max-model-len", type=int, default=2048, help="the route's context")
    replaying.add_argument("--max-output-tokens", type=int, default=256)
    replaying.add_argument("--out", type=Path)
    replaying.set_defaults(run=_replay)
    return parser


def _table_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hct", default=PAPER, help="cost table path, or 'paper' for the paper-values table")
    parser.add_argument("--slo", type=float, help=f"P95 end-to-end SLO in s (default: the table's; paper "
                                                  f"{PAPER_SLO_P95_E2E_S:g})")
    parser.add_argument("--inventory", type=Path, help="YAML/JSON in the Inventory schema")
    parser.add_argument("--gpus", type=int, default=8, help="with the paper table and no --inventory: A100s")
    parser.add_argument("--out", type=Path)


def _trace_arguments(parser: argparse.ArgumentParser, with_models: bool = True) -> None:
    parser.add_argument("--format", choices=("azure", "burstgpt"), default="azure")
    parser.add_argument("--burstgpt-model", help="keep only this BurstGPT model's requests")
    parser.add_argument("--rate-scale", type=float, default=1.0, help="replay this many times as fast")
    parser.add_argument("--start", type=float, default=0.0, help="window start, s after the first request")
    parser.add_argument("--duration", type=float, help="window length in s (default: to the end)")
    if with_models:
        parser.add_argument("--models", default="llama-3-8b",
                            help="comma-separated models the trace is split over, round robin")


def _plan(args: argparse.Namespace) -> int:
    table, inventory, slo = _table_inventory_slo(args)
    demands = _demands(args)
    intent = Intent(args.intent)
    if intent is Intent.SLO and args.choice is not None:
        raise ValueError("--choice: intent slo plans the baseline configuration; there is nothing to search")
    request = PlanRequest(slo_p95_e2e_s=slo, demands=demands, inventory=inventory, config_choice=args.choice or "joint",
                          intent=intent, headroom=args.headroom, allow_mig=not args.no_mig)
    result = plan(request, CostTable(table, slo))
    print(_plan_table(result, table))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "plan.json").write_text(result.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.out / 'plan.json'}")
    return 0 if result.feasible else EXIT_SHORT


def _simulate(args: argparse.Namespace) -> int:
    table, inventory, slo = _table_inventory_slo(args)
    pool = inventory.pool(args.pool) if args.pool else inventory.pools[0]
    trace = _trace(args)
    workload = Workload.from_trace(trace, _models(args))
    settings = SimulationSettings(slo_p95_e2e_s=slo, startup_s=args.startup_s, tick_s=args.tick_s,
                                  scale_by_length=not args.no_length_scaling)
    service = CostTable(table, slo)
    runs: list[SimRun] = []
    policies = _policies(args, workload, service, pool, inventory.prices, settings)
    for policy in policies:
        with tqdm(total=100, desc=policy.name, unit="%", file=sys.stderr, leave=False) as bar:
            runs.append(simulate(workload, policy, service, pool, inventory.prices, settings, _bar_to(bar)))
    print(_simulation_table(runs, policies, workload, table, args))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        results = [run.result.model_dump(mode="json") for run in runs]
        (args.out / "simulation.json").write_text(json.dumps(results, indent=2) + "\n")
        figure = power_over_time_figure(runs, f"{workload.name}: power per policy ({_provenance(table)})")
        figure.savefig(args.out / "power.png", dpi=FIGURE_DPI)
        print(f"wrote {args.out / 'simulation.json'} and {args.out / 'power.png'}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    trace = _trace(args)
    requests = replay_requests(trace, max_model_len=args.max_model_len, max_output_tokens=args.max_output_tokens)
    endpoint = EndpointSettings(base_url=args.url, api_key=args.api_key, model=args.model)
    with tqdm(total=len(requests), desc="replay", unit="req", file=sys.stderr, leave=False) as bar:
        measured = run_replay(requests, endpoint, on_done=lambda done: bar.update(done - bar.n))
    print(_replay_table(measured, trace, args))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "replay.json").write_text(measured.model_dump_json(indent=2) + "\n")
        print(f"wrote {args.out / 'replay.json'}")
    return 0 if measured.succeeded == measured.sent else EXIT_SHORT


def _table_inventory_slo(args: argparse.Namespace) -> tuple[HardwareCostTable, Inventory, float]:
    table = paper_hct() if args.hct == PAPER else load_hct(Path(args.hct))
    if args.inventory:
        inventory = Inventory.model_validate(yaml.safe_load(args.inventory.read_text()))
    elif args.hct == PAPER:
        inventory = paper_inventory(args.gpus)
    else:
        raise ValueError("--inventory: needed with a measured table (only the paper table has a default)")
    slo = args.slo if args.slo is not None else table.metadata.slo.p95_e2e_s
    return table, inventory, slo


def _trace(args: argparse.Namespace) -> Trace:
    if args.format == "azure":
        trace = load_azure_trace(args.trace)
    else:
        trace = load_burstgpt_trace(args.trace, model=args.burstgpt_model)
    if args.duration is not None or args.start > 0:
        end = args.start + args.duration if args.duration is not None else math.inf
        trace = trace.window(args.start, end)
    return trace.scaled(args.rate_scale) if args.rate_scale != 1.0 else trace


def _models(args: argparse.Namespace) -> tuple[str, ...]:
    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    if not models:
        raise ValueError("--models: name at least one model")
    return models


def _demands(args: argparse.Namespace) -> tuple[RouteDemand, ...]:
    demands = [_parse_demand(text) for text in args.demand]
    if args.trace is not None:
        workload = Workload.from_trace(_trace(args), _models(args))
        duration = max(workload.duration_s, 1.0)
        for model_index, code in workload.routes_present():
            count = int(((workload.model_index == model_index) & (workload.type_code == code)).sum())
            demands.append(RouteDemand(model_id=workload.models[model_index], query_type=QUERY_TYPES[code],
                                       rate_rps=count / duration))
    if not demands:
        raise ValueError("--demand or --trace: nothing to plan for")
    return tuple(demands)


def _parse_demand(text: str) -> RouteDemand:
    try:
        route, rate = text.rsplit("=", 1)
        model, query_type = route.rsplit(":", 1)
        return RouteDemand(model_id=model, query_type=QueryType(query_type.upper()), rate_rps=float(rate))
    except ValueError:
        raise ValueError(f"--demand: {text!r} is not MODEL:TYPE=RPS (TYPE one of SISO, SILO, LISO, LILO)") from None


def _policies(
    args: argparse.Namespace, workload: Workload, table: CostTable, pool: DevicePool, prices: Prices,
    settings: SimulationSettings,
) -> list[FixedPolicy | OasisPolicy]:
    names = [name.strip() for name in args.policies.split(",") if name.strip()]
    unknown = sorted(set(names) - set(POLICY_NAMES))
    if unknown or not names:
        raise ValueError(f"--policies: unknown {unknown}; choose from {', '.join(POLICY_NAMES)}")
    def routed(policy: OasisPolicy) -> OasisPolicy:
        grouping = GROUPINGS[args.routes] if args.routes else policy.routes
        return policy.model_copy(update={"routes": grouping.model_copy(update={"capacity": args.route_capacity})})

    builders: dict[str, Callable[[], FixedPolicy | OasisPolicy]] = {
        "static-peak": lambda: static_peak_keeping_slo(workload, StudySetup(
            table=table, pool=pool, prices=prices, settings=settings, headroom=args.headroom,
            static_headroom=args.static_headroom)),
        "paper-alg1": paper_algorithm1,
        "oasis": lambda: routed(oasis_damped(args.headroom)),
        "oasis-joint": lambda: routed(oasis_joint(args.headroom)),
    }
    return [builders[name]() for name in names]


def _bar_to(bar: tqdm) -> Callable[[float], None]:
    return lambda fraction: bar.update(round(fraction * 100) - bar.n)


def _provenance(table: HardwareCostTable) -> str:
    if table.metadata.spec_name == PAPER_RUN_ID:
        return "OASIS paper figures and GPU-model rows, not measured here"
    return table.metadata.spec_name


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as wide as their widest cell; the first left-aligned, the rest right-aligned (numbers)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _number(value: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _plan_table(result: Plan, table: HardwareCostTable) -> str:
    rows = [
        [r.route, f"{r.rate_rps:.4g}", r.pool or "-", r.shape or "-", str(r.replicas),
         "default" if r.clock_mhz is None and r.shape else str(r.clock_mhz or "-"), str(r.max_num_seqs or "-"),
         r.variant or "-", _number(r.power_w), "-" if r.p95_s is None else _number(r.p95_s, 2), r.reason]
        for r in result.routes
    ]
    headers = ["route", "req/s", "pool", "shape", "replicas", "clock MHz", "batch", "variant", "power W",
               "P95 s", "why"]
    lines = [
        f"Plan (intent {result.intent.value}, {result.config_choice} configuration choice; "
        f"SLO P95 <= {result.slo_p95_e2e_s:g} s; "
        f"headroom {result.headroom:g}; table: {_provenance(table)})",
        format_table(headers, rows),
        "",
        "MIG slices: " + (", ".join(f"{s.route} -> {s.pool} gpu {s.gpu_index} {s.profile}@{s.start_slot}"
                                    for s in result.mig_slices) or "none"),
        "pools: " + "; ".join(f"{p.pool}: {p.whole_devices} whole, {p.mig_devices} partitioned, {p.free_devices} "
                               f"free of {p.devices}, idle {_number(p.idle_power_w)} W" for p in result.pools),
        f"power {_number(result.power_w)} W | energy {_number(result.energy_kwh_per_hour, 3)} kWh/h | "
        f"cost ${result.usd_per_hour:,.2f}/h (devices ${result.device_usd_per_hour:,.2f}, energy "
        f"${result.energy_usd_per_hour:,.2f}) | CO2 {_number(result.co2_g_per_hour)} g/h",
    ]
    lines += [f"SHORTFALL: {s.message}" for s in result.shortfalls] or ["feasible: the inventory meets the SLO"]
    lines.append("power: each route's draw over its boards' idle, plus every held GPU's idle on its pool's line; "
                 "free GPUs are off the bill.")
    return "\n".join(lines)


def _simulation_table(
    runs: list[SimRun], policies: list[FixedPolicy | OasisPolicy], workload: Workload, table: HardwareCostTable,
    args: argparse.Namespace,
) -> str:
    first = runs[0].result
    return "\n".join([
        f"Simulation of {workload.name}: {len(workload):,} requests over {workload.duration_s / 60:.1f} min "
        f"(rate x{args.rate_scale:g}), models {', '.join(workload.models)}; SLO P95 <= {first.slo_p95_e2e_s:g} s; "
        f"table: {_provenance(table)}; request cost "
        f"{'by its own token lengths' if not args.no_length_scaling else 'of its query type profiled lengths'}",
        simulation_results_table(runs),
        *(policy_settings(policy) for policy in policies),
        SIMULATION_NOTES.format(window=first.slo_window_s),
        TRACE_CREDITS[args.format],
    ])


SIMULATION_NOTES = (
    "SLO att.: share of requests within the SLO latency, and share of {window:g} s windows whose P95 meets it. "
    "Energy and GPU-h: every GPU held, idle included (a partly sliced GPU's unused rest too); " + OFF_THE_BILL
)


def simulation_results_table(runs: list[SimRun]) -> str:
    """One row per run: energy (and its ratio to the first run's), GPUs, latency, SLO attainment, changes."""
    baseline = runs[0].result.energy_wh
    headers = ["policy", "energy Wh", f"vs {runs[0].result.policy}", "idle Wh", "mean W", "GPU-h", "peak GPUs",
               "cost $", "P50 s", "P95 s", "P99 s", "SLO reqs", "SLO windows", "changes", "unserved"]
    rows = []
    for run in runs:
        r = run.result
        change = r.energy_wh / baseline - 1 if baseline and math.isfinite(baseline) else math.nan
        rows.append([
            r.policy, _number(r.energy_wh), "n/a" if not math.isfinite(change) else f"{change:+.1%}",
            _number(r.idle_energy_wh), _number(r.mean_power_w), _number(r.gpu_hours, 2), str(r.peak_gpus),
            f"{r.cost_usd:,.2f}", _number(r.p50_s, 2), _number(r.p95_s, 2), _number(r.p99_s, 2),
            f"{r.slo_attainment_requests:.1%}", f"{r.slo_attainment_windows:.1%}", str(r.replica_changes),
            str(r.unserved),
        ])
    return format_table(headers, rows)


def _replay_table(measured: ReplayReport, trace: Trace, args: argparse.Namespace) -> str:
    headers = ["sent", "ok", "P50 s", "P95 s", "P99 s", "req/s", "worst send lateness s", "query types"]
    row = [str(measured.sent), str(measured.succeeded), _number(measured.p50_s, 3), _number(measured.p95_s, 3),
           _number(measured.p99_s, 3), _number(measured.throughput_rps, 2), _number(measured.max_send_lateness_s, 3),
           ", ".join(f"{k}:{v}" for k, v in sorted(measured.query_types.items()))]
    failures = [f"request {r.index}: HTTP {r.status_code} {r.error}" for r in measured.records if r.status_code != 200]
    return "\n".join([f"Replay of {trace.name} against {args.url}", format_table(headers, [row]), *failures[:10],
                      TRACE_CREDITS[args.format]])


if __name__ == "__main__":
    raise SystemExit(main())
