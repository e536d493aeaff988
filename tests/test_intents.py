"""Intents pick as specified: the configuration per route at deployment, the running target per request, the plan.

Pure: synthetic cost tables (tests/hct_factory.py) whose figures are chosen so
the intents disagree, read through the real CostTable, config and planner.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import Any

import pytest

from oasis_ray.api import OasisRequestError
from oasis_ray.config import ConfigError, parse_config
from oasis_ray.costs.intent_config import IntentError, apply_intents, intent_targets
from oasis_ray.costs.source import CapacitySource
from oasis_ray.costs.table import CostTable
from oasis_ray.intent_routing import IntentTargets, ShapeFigures, Target, parse_intent
from oasis_ray.intents import INTENT_HEADER, Intent
from oasis_ray.planning import capacity_cli
from oasis_ray.planning.inventory import Inventory
from oasis_ray.planning.planner import PlanRequest, RouteDemand, plan
from oasis_ray.profiling.hct import load_hct
from oasis_ray.query_types import QueryType
from tests.hct_factory import hct_row, write_table

MODEL = "m"
MIG = "1g.10gb"
# (batch, variant) -> MSRR req/s, P95 s on an idle replica, power W at the MSRR; energy per request = power / MSRR.
FULL_GPU_FIGURES = {
    (1, "chunked_prefill"): (2.0, 0.5, 100.0),   # fastest answer: min-latency           50 J, 0.5 GPU-s
    (8, "standard"): (10.0, 1.5, 300.0),         # fewest joules: min-energy              30 J, 0.1 GPU-s
    (32, "standard"): (16.0, 3.0, 640.0),        # most requests per GPU: min-cost        40 J, 0.0625 GPU-s
}
ROUTE = {"name": "all", "model": MODEL, "engine": {"max_num_seqs": 16, "max_model_len": 4096, "dtype": "bfloat16"},
         "resources": {"accelerator": "gpu", "accelerator_type": "A100"}}


def row(query_type: QueryType, batch: int, variant: str, msrr: float, p95: float, power: float | None,
        mig: str | None = None):
    return hct_row(
        model_id=MODEL, hardware_kind="mig" if mig else "gpu", mig_profile=mig, query_type=query_type.value,
        msrr_req_s=msrr, max_num_seqs=batch, variant=variant, e2e_p95_s=p95,
        accelerator_type=None if mig else "A100", power_available=power is not None,
        mean_power_w=math.nan if power is None else power, power_note=None if power else "not measured",
        trial_id=f"{mig or 'full'}-{query_type.value}-{batch}-{variant}",
    )


def full_gpu_rows(power: bool = True) -> list:
    return [row(qt, batch, variant, msrr, p95, watts if power else None)
            for qt in QueryType for (batch, variant), (msrr, p95, watts) in FULL_GPU_FIGURES.items()]


def table(directory: Path, rows: list) -> CostTable:
    return CostTable(load_hct(write_table(directory, rows)))


def app(hct: Path | None, **route: Any) -> dict[str, Any]:
    raw = {"models": [{"model_id": MODEL, "default_route": "all"}], "routes": [{**copy.deepcopy(ROUTE), **route}]}
    return {**raw, "hct_path": str(hct)} if hct else raw


def configured(tmp_path: Path, rows: list, **route: Any):
    hct = write_table(tmp_path, rows)
    return apply_intents(parse_config(app(hct, **route)), CostTable(load_hct(hct)))


@pytest.mark.parametrize(("intent", "batch", "chunked"), [
    ("min-latency", 1, True), ("min-energy", 8, False), ("min-cost", 32, False), ("slo", 16, False),
])
def test_each_intent_configures_the_route_from_the_table_and_leaves_the_operators_settings(
    tmp_path, intent, batch, chunked
) -> None:
    config, choices = configured(tmp_path, full_gpu_rows(), intent=intent)
    engine = config.routes[0].engine
    assert (engine.max_num_seqs, engine.enable_chunked_prefill, engine.enable_prefix_caching) == (batch, chunked, False)
    assert (engine.max_model_len, engine.dtype) == (4096, "bfloat16")
    assert [choice.intent.value for choice in choices] == ([] if intent == "slo" else [intent])
    again, _ = apply_intents(config, CostTable(load_hct(tmp_path)))
    assert again == config


def test_the_app_intent_is_the_default_and_a_route_intent_overrides_it(tmp_path) -> None:
    hct = write_table(tmp_path, full_gpu_rows())
    config = parse_config({**app(hct), "intent": "min-cost"})
    assert apply_intents(config, CostTable(load_hct(hct)))[0].routes[0].engine.max_num_seqs == 32
    config = parse_config({**app(hct, intent="min-latency"), "intent": "min-cost"})
    assert apply_intents(config, CostTable(load_hct(hct)))[0].routes[0].engine.max_num_seqs == 1


def test_only_a_configuration_meeting_the_slo_on_every_shape_of_the_route_qualifies(tmp_path) -> None:
    """The slice never ran batch 1, so min-latency takes the fastest configuration both shapes can run."""
    mig_rows = [row(qt, batch, variant, msrr / 7, p95 * 1.5, None, mig=MIG)
                for qt in QueryType for (batch, variant), (msrr, p95, _) in FULL_GPU_FIGURES.items() if batch != 1]
    config, _ = configured(tmp_path, full_gpu_rows() + mig_rows, intent="min-latency", mig_shapes=[{"profile": MIG}])
    assert config.routes[0].engine.max_num_seqs == 8


@pytest.mark.parametrize(("rows", "route", "reason"), [
    (lambda: full_gpu_rows(power=False), {"intent": "min-energy"}, "no power was measured"),
    (lambda: [r for r in full_gpu_rows() if r.query_type != "LILO"], {"intent": "min-cost"},
     "no successful row for LILO"),
    (lambda: full_gpu_rows(), {"intent": "min-cost", "mig_shapes": [{"profile": MIG}]},
     "no configuration was measured for every query type (SISO, SILO, LISO, LILO) on 1g.10gb"),
    (lambda: [r.model_copy(update={"msrr_req_s": 0.0, "slo_feasible": False, "e2e_p95_s": 9.0})
              for r in full_gpu_rows()], {"intent": "min-latency"}, "no configuration meets the SLO"),
])
def test_a_table_that_cannot_answer_the_intent_is_refused_naming_the_route(tmp_path, rows, route, reason) -> None:
    with pytest.raises(IntentError) as refused:
        configured(tmp_path, rows(), **route)
    assert f"route '{MODEL}/all' (intent {route['intent']})" in str(refused.value)
    assert reason in str(refused.value)


def test_settings_the_chosen_configuration_makes_invalid_are_refused_naming_the_field(tmp_path) -> None:
    """A token budget below the context needs chunked prefill; min-energy's batch 8 is the standard variant."""
    engine = {**ROUTE["engine"], "enable_chunked_prefill": True, "max_num_batched_tokens": 512}
    with pytest.raises(IntentError, match=r"routes\[0\]\.engine .*max_num_batched_tokens: 512 is below max_model_len"):
        configured(tmp_path, full_gpu_rows(), intent="min-energy", engine=engine)


def test_intents_need_a_cost_table_and_one_table_serves_intents_and_autoscaling() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\]\.intent: 'min-energy' chooses from the cost table"):
        parse_config(app(None, intent="min-energy"))
    with pytest.raises(ConfigError, match=r"\n  intent: 'min-cost' chooses from the cost table"):
        parse_config({**app(None), "intent": "min-cost"})
    with pytest.raises(ConfigError, match=r"intent: Input should be 'min-latency'"):
        parse_config({**app(None), "intent": "fastest"})
    with pytest.raises(ConfigError, match="autoscaling.hct_path: 'other' is not the app's hct_path 't'"):
        parse_config({**app(Path("t")), "autoscaling": {"hct_path": "other"}})
    inherited = parse_config({**app(Path("t")), "autoscaling": {"rate_window_s": 10}})
    assert inherited.autoscaling is not None and inherited.table_path() == inherited.autoscaling.table_path()


def test_the_autoscaler_keeps_sizing_the_deployed_configuration_when_the_table_changes(tmp_path) -> None:
    """Replicas run what was deployed; a reloaded table that would rank another configuration first changes no size."""
    hct = write_table(tmp_path, full_gpu_rows())
    source = CapacitySource(parse_config({**app(hct, intent="min-cost"), "autoscaling": {}}))
    assert source.capacities()[0].whole_unit.max_num_seqs == 32
    cheaper_batch_8 = [r.model_copy(update={"msrr_req_s": 50.0}) if r.max_num_seqs == 8 else r for r in full_gpu_rows()]
    write_table(tmp_path, cheaper_batch_8)
    later = os.stat(tmp_path / "hct.parquet").st_mtime + 1
    os.utime(tmp_path / "hct.parquet", (later, later))
    option = source.capacities()[0].whole_unit
    assert (option.max_num_seqs, option.msrr_rps) == (32, 16.0)


def figures(msrr: float, p95: float, energy: float | None, fraction: float = 1.0) -> dict[QueryType, ShapeFigures]:
    return {QueryType.SISO: ShapeFigures(msrr_rps=msrr, gpu_fraction=fraction, p95_unloaded_s=p95,
                                         energy_per_request_j=energy)}


# A route with a full GPU and a MIG slice, and a second route with a short context.
TARGETS = IntentTargets(by_model={MODEL: (
    Target(route="short", shape="full-gpu", max_model_len=4096, figures=figures(10.0, 0.8, 40.0)),
    Target(route="short", shape=MIG, max_model_len=4096, figures=figures(2.0, 1.6, 25.0, fraction=1 / 7)),
    Target(route="tiny", shape="full-gpu", max_model_len=1024, figures=figures(20.0, 0.4, 20.0)),
)})
ALL_RUNNING = {"short": {"full-gpu": 1, MIG: 1}, "tiny": {"full-gpu": 1}}


def choose(intent: Intent, tokens: int = 2000, running=ALL_RUNNING, targets: IntentTargets = TARGETS):
    target = targets.choose(intent, model_id=MODEL, query_type=QueryType.SISO, tokens=tokens,
                            configured_route="short", running=running)
    return None if target is None else (target.route, target.shape)


def test_a_request_intent_picks_among_the_running_targets_whose_context_fits() -> None:
    """Full GPU for latency, the slice for energy, the full GPU again for cost (5 req/s per GPU on the slice: 14)."""
    assert choose(Intent.MIN_LATENCY) == ("short", "full-gpu")
    assert choose(Intent.MIN_ENERGY) == ("short", MIG)
    assert choose(Intent.MIN_COST) == ("short", MIG)
    assert choose(Intent.SLO) is None
    assert choose(Intent.MIN_LATENCY, tokens=1000) == ("tiny", "full-gpu")


def test_a_request_intent_never_picks_what_is_not_running_or_not_known() -> None:
    assert choose(Intent.MIN_ENERGY, running={"short": {"full-gpu": 1, MIG: 0}}) == ("short", "full-gpu")
    assert choose(Intent.MIN_LATENCY, running={}) is None
    unmeasured = IntentTargets(by_model={MODEL: (
        Target(route="short", shape="full-gpu", max_model_len=4096, figures=figures(10.0, 0.8, None)),
        Target(route="short", shape=MIG, max_model_len=4096, figures={}),
    )})
    assert choose(Intent.MIN_ENERGY, targets=unmeasured) is None
    assert choose(Intent.MIN_COST, targets=unmeasured) == ("short", "full-gpu")


def test_ties_keep_the_configured_route() -> None:
    twins = IntentTargets(by_model={MODEL: (
        Target(route="other", shape="full-gpu", max_model_len=4096, figures=figures(10.0, 0.8, 40.0)),
        Target(route="short", shape="full-gpu", max_model_len=4096, figures=figures(10.0, 0.8, 40.0)),
    )})
    running = {"other": {"full-gpu": 1}, "short": {"full-gpu": 1}}
    assert choose(Intent.MIN_LATENCY, running=running, targets=twins) == ("short", "full-gpu")


def test_targets_carry_the_tables_figures_and_no_slice_energy_without_an_idle_figure(tmp_path) -> None:
    mig_rows = [row(qt, 8, "standard", 2.0, 2.5, 200.0, mig=MIG) for qt in QueryType]
    config, _ = configured(tmp_path, full_gpu_rows() + mig_rows, mig_shapes=[{"profile": MIG}],
                           engine={**ROUTE["engine"], "max_num_seqs": 8})
    targets = {t.shape: t for t in intent_targets(config, CostTable(load_hct(tmp_path))).by_model[MODEL]}
    full, mig = targets["full-gpu"].figures[QueryType.LISO], targets[MIG].figures[QueryType.LISO]
    assert (full.msrr_rps, full.p95_unloaded_s, full.energy_per_request_j) == (10.0, 1.5, 30.0)
    assert (mig.msrr_rps, mig.gpu_fraction, mig.p95_unloaded_s, mig.energy_per_request_j) == (2.0, 1 / 7, 2.5, None)


def test_the_intent_header_is_parsed_or_refused_naming_the_header() -> None:
    assert parse_intent(None) is Intent.SLO
    assert parse_intent(" Min-Energy ") is Intent.MIN_ENERGY
    with pytest.raises(OasisRequestError) as refused:
        parse_intent("fastest")
    assert (refused.value.status_code, refused.value.param) == (400, INTENT_HEADER)
    assert "min-latency, min-energy, min-cost, slo" in refused.value.message


def test_the_plan_chooses_each_routes_configuration_for_the_intent(tmp_path) -> None:
    cost_table = table(tmp_path, full_gpu_rows())
    inventory = Inventory.model_validate({"pools": [{"name": "a100", "accelerator_type": "A100", "count": 8,
                                                     "usd_per_hour": 2.0}],
                                         "prices": {"usd_per_kwh": 0.1, "gco2_per_kwh": 400}})

    def planned(intent: Intent) -> tuple[int | None, str | None]:
        request = PlanRequest(slo_p95_e2e_s=5.0, inventory=inventory, intent=intent, allow_mig=False,
                              demands=(RouteDemand(model_id=MODEL, query_type=QueryType.SISO, rate_rps=5.0),))
        route = plan(request, cost_table).routes[0]
        return route.max_num_seqs, route.variant

    assert planned(Intent.MIN_LATENCY) == (1, "chunked_prefill")
    assert planned(Intent.MIN_ENERGY) == (8, "standard")
    assert planned(Intent.MIN_COST) == (32, "standard")
    assert planned(Intent.SLO) == (1, "chunked_prefill")  # the sweep's baseline: its first row


def test_the_plan_command_takes_an_intent_and_refuses_a_search_for_slo(capsys) -> None:
    base = ["plan", "--hct", "paper", "--demand", "llama-3-8b:SILO=3"]
    assert capacity_cli.main([*base, "--intent", "min-energy"]) == 0
    energy = capsys.readouterr().out
    assert capacity_cli.main([*base, "--intent", "min-latency"]) == 0
    latency = capsys.readouterr().out
    assert "intent min-energy" in energy and "intent min-latency" in latency
    assert energy.splitlines()[3] != latency.splitlines()[3]
    assert capacity_cli.main([*base, "--intent", "slo", "--choice", "joint"]) == capacity_cli.EXIT_BAD_INPUT
    assert "--choice: intent slo plans the baseline configuration" in capsys.readouterr().err
