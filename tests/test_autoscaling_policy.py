"""The cost-table capacity mapping and the Serve policy adapter, driven with Ray's own context classes."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingContext

from autoscaling.decision_board import find_board
from autoscaling.policy import STATE_KEY, OasisAutoscalingPolicy
from deployments.app import build_app
from oasis_ray.config import INGRESS_DEPLOYMENT, parse_config
from oasis_ray.costs.live import CapacityError, live_route_capacities
from oasis_ray.costs.table import CostTable
from oasis_ray.profiling.hct import load_hct
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.scaling.traffic import TrafficReport
from tests.conftest import MODEL_ID, app_config
from tests.hct_factory import hct_row, write_table

SHORT, LONG = f"{MODEL_ID}/short-output", f"{MODEL_ID}/long-output"
MIG = "1g.10gb"
# Each route's rows are measured at its own engine batch.
SHORT_CPU = {"hardware_kind": "cpu", "max_num_seqs": app_config()["routes"][0]["engine"]["max_num_seqs"]}
LONG_CPU = {"hardware_kind": "cpu", "max_num_seqs": app_config()["routes"][1]["engine"]["max_num_seqs"]}


def standard_rows():
    cpu, mig = SHORT_CPU, {"hardware_kind": "mig", "mig_profile": MIG}
    return [
        hct_row(model_id=MODEL_ID, query_type="SISO", msrr_req_s=4.0, **cpu),
        hct_row(model_id=MODEL_ID, query_type="LISO", msrr_req_s=2.0, **cpu),
        hct_row(model_id=MODEL_ID, query_type="SILO", msrr_req_s=1.0, **LONG_CPU),
        hct_row(model_id=MODEL_ID, query_type="LILO", msrr_req_s=0.5, **LONG_CPU),
        hct_row(model_id=MODEL_ID, query_type="SISO", msrr_req_s=0.8, **mig),
        hct_row(model_id=MODEL_ID, query_type="LISO", msrr_req_s=0.5, **mig),
    ]


def autoscaled_config(hct_path: Path, **scaling: Any) -> dict[str, Any]:
    raw = copy.deepcopy(app_config())
    raw["routes"][0]["mig_shapes"] = [{"profile": MIG, "resources": {"accelerator": "cpu", "cpus": 0.25,
                                                                    "custom_resources": {f"MIG-{MIG}": 1}}}]
    raw["routes"][0]["max_replicas"] = 2
    raw["autoscaling"] = {"hct_path": str(hct_path), "scaling": {"upscale_cooldown_s": 0, "downscale_cooldown_s": 0,
                                                                 "hysteresis": 0.1, **scaling}}
    return raw


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "hct", standard_rows())


def capacities_of(table: Path) -> dict[str, Any]:
    return {c.route: c for c in live_route_capacities(parse_config(autoscaled_config(table)), CostTable(load_hct(table)))}


def test_capacity_per_route_is_its_slowest_type_and_carries_every_types(table):
    capacities = capacities_of(table)
    assert {o.shape: o.msrr_rps for o in capacities[SHORT].options} == {"cpu": 2.0, MIG: 0.5}
    assert {o.shape: o.msrr_rps for o in capacities[LONG].options} == {"cpu": 0.5}
    assert {o.shape: o.msrr_by_type for o in capacities[SHORT].options} == {
        "cpu": {QueryType.SISO: 4.0, QueryType.LISO: 2.0}, MIG: {QueryType.SISO: 0.8, QueryType.LISO: 0.5}}
    assert capacities[LONG].whole_unit.msrr_by_type == {QueryType.SILO: 1.0, QueryType.LILO: 0.5}


def test_missing_rows_are_refused_naming_route_and_shape(tmp_path):
    table = write_table(tmp_path / "hct", [r for r in standard_rows() if r.mig_profile is None])
    with pytest.raises(CapacityError, match=rf"route '{SHORT}' shape '{MIG}': the HCT has no successful row for SISO"):
        capacities_of(table)


def test_unmet_slo_is_refused_naming_route(tmp_path):
    rows = [r if r.query_type.value != "LILO" else hct_row(model_id=MODEL_ID, query_type="LILO", msrr_req_s=0.0,
                                                           **LONG_CPU)
            for r in standard_rows()]
    table = write_table(tmp_path / "hct", rows)
    with pytest.raises(CapacityError, match=rf"route '{LONG}' shape 'cpu': the HCT never meets the SLO \(P95 <= 5 s\) for LILO"):
        build_app(autoscaled_config(table))


def test_route_bounds_flow_into_the_core():
    raw = autoscaled_config(Path("unused"))
    raw["routes"][1]["min_replicas"] = 0
    limits = parse_config(raw).scaling_config().route_limits
    assert (limits[SHORT].max_replicas, limits[SHORT].allow_scale_to_zero) == (2, False)
    assert limits[LONG].allow_scale_to_zero


def _context(app: str, name: str, running: int, *, metrics: dict[str, float] | None = None,
             state: dict | None = None) -> tuple[DeploymentID, AutoscalingContext]:
    deployment = DeploymentID(name=name, app_name=app)
    replicas = [ReplicaID(unique_id=f"{name}-{i}", deployment_id=deployment) for i in range(running)]
    aggregated = {metric: {replicas[0]: value} for metric, value in (metrics or {}).items()}
    return deployment, AutoscalingContext(
        deployment_id=deployment, deployment_name=name, app_name=app, current_num_replicas=running,
        target_num_replicas=running, running_replicas=replicas, total_num_requests=0.0, total_queued_requests=0.0,
        aggregated_metrics=aggregated, raw_metrics={}, capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=8, policy_state=state or {}, last_scale_up_time=None,
        last_scale_down_time=None, current_time=None, config=None,
    )


def _tick(policy: _Policy, rates: dict[tuple[str, QueryType], float], running: dict[str, int],
          state: dict | None = None):
    """`rates` per (route, query type), reported as the ingress reports them."""
    config = parse_config(policy.app_args)
    names = {route.deployment_name(shape): (route.key, shape) for route in config.routes for shape in route.shapes()}
    by_route: dict[str, dict[QueryType, float]] = {}
    for (route, query_type), rate in rates.items():
        by_route.setdefault(route, {})[query_type] = rate
    metrics = TrafficReport(type_rates=by_route).to_metrics()
    contexts = dict([_context(policy.app_name, INGRESS_DEPLOYMENT, 1, metrics=metrics, state=state)])
    for name, (key, shape) in names.items():
        contexts.update([_context(policy.app_name, name, running.get(f"{key}@{shape}", 0))])
    decisions, policy_state = policy(contexts)
    return {f"{names[d.name][0]}@{names[d.name][1]}": n for d, n in decisions.items()}, policy_state


class _Policy(OasisAutoscalingPolicy):
    """The real policy under an app name of its own, so the decision board it posts to (a real Ray actor on the
    session's cluster) holds only this test's decisions."""

    def __init__(self, app_args: dict[str, Any]):
        super().__init__(app_args=app_args)
        self.app_args = app_args
        self.app_name = f"policy-unit-test-{uuid.uuid4().hex[:8]}"

    def posted(self) -> list[ScalingRecord]:
        board = find_board(self.app_name)
        return [] if board is None else [record for _, record in ray.get(board.since.remote(0), timeout=30)]


def slowest(short_rps: float, long_rps: float) -> dict[tuple[str, QueryType], float]:
    """Traffic of each route's slowest type only (LISO, LILO), so routes are sized at their slowest MSRR."""
    return {(SHORT, QueryType.LISO): short_rps, (LONG, QueryType.LILO): long_rps}


@pytest.fixture
def policy(oasis_app, table):
    return _Policy(autoscaled_config(table))


def test_light_load_moves_to_a_mig_slice_make_before_break(policy):
    running = {f"{SHORT}@cpu": 1, f"{LONG}@cpu": 1}
    first, state = _tick(policy, slowest(0.2, 0.2), running)
    assert first[f"{SHORT}@{MIG}"] == 1 and first[f"{SHORT}@cpu"] == 1
    stored = next(iter(state.values()))[STATE_KEY]
    second, _ = _tick(policy, slowest(0.2, 0.2), {**running, f"{SHORT}@{MIG}": 1},
                      state={STATE_KEY: stored})
    assert (second[f"{SHORT}@{MIG}"], second[f"{SHORT}@cpu"]) == (1, 0)


def test_burst_takes_full_units_up_to_the_route_max(policy):
    targets, _ = _tick(policy, slowest(3.0, 0.2), {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1})
    assert targets[f"{SHORT}@cpu"] == 2
    assert targets[f"{LONG}@cpu"] == 1


MOSTLY_SISO = {(SHORT, QueryType.SISO): 2.7, (SHORT, QueryType.LISO): 0.3}


def test_a_mostly_fast_mix_is_sized_at_its_mix_not_its_slowest_type(policy):
    """3 req/s, 9 in 10 SISO: 3.3 rps needed is 1.1 x (2.7 / 4 + 0.3 / 2) = 0.91 cpu units, against 3.3 / 2 = 1.65
    at LISO's MSRR; the MIG slice serves 1 / (0.9 / 0.8 + 0.1 / 0.5) = 0.75 of the mix, too little."""
    running = {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1}
    targets, _ = _tick(policy, {**MOSTLY_SISO, (LONG, QueryType.SILO): 0.2}, running)
    assert (targets[f"{SHORT}@cpu"], targets[f"{LONG}@cpu"]) == (1, 1)
    [record] = policy.posted()
    assert record.msrr_rps == pytest.approx(3.0 / (2.7 / 4 + 0.3 / 2))
    assert record.gpus_required == pytest.approx(1.1 * (2.7 / 4 + 0.3 / 2))


def test_changes_are_posted_to_the_apps_board_and_holds_are_not(policy):
    running = {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1}
    _tick(policy, slowest(3.0, 0.2), running)
    assert [(r.route, r.action) for r in policy.posted()] == [(SHORT, "scale_up")]


def test_routes_without_a_rate_report_are_left_to_serve(policy):
    assert _tick(policy, {}, {f"{SHORT}@cpu": 0, f"{LONG}@cpu": 0})[0] == {}
    targets, _ = _tick(policy, {(LONG, QueryType.SILO): 0.2}, {f"{SHORT}@cpu": 0, f"{LONG}@cpu": 1})
    assert targets == {f"{LONG}@cpu": 1}


def test_advisory_mode_keeps_counts(oasis_app, table):
    targets, _ = _tick(_Policy(autoscaled_config(table, advisory=True)), slowest(3.0, 0.2),
                       {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1})
    assert targets == {f"{SHORT}@cpu": 0, f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1}


def test_unreadable_table_at_run_time_keeps_the_last_good_one(policy, table, caplog):
    before, _ = _tick(policy, slowest(3.0, 0.2), {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1})
    table.write_bytes(b"not parquet")
    after, _ = _tick(policy, slowest(3.0, 0.2), {f"{SHORT}@{MIG}": 1, f"{LONG}@cpu": 1})
    assert after == before
    assert "keeping the last good one" in caplog.text


def test_policy_refuses_a_config_without_autoscaling():
    with pytest.raises(ValueError, match="autoscaling: not configured"):
        OasisAutoscalingPolicy(app_args=app_config())


def test_under_apply_the_policy_publishes_the_clock_it_chose_on_the_board(oasis_app, tmp_path):
    """A light load on a full-GPU route whose table has two clocks (Table 3's power, seed 000): the low one."""
    from oasis_ray.device_setting import DeviceSetting

    def row(query_type: str, msrr: float, clock: int, power: float):
        return hct_row(model_id=MODEL_ID, hardware_kind="gpu", query_type=query_type, msrr_req_s=msrr,
                       trial_id=f"{query_type}-{clock}", clock_mhz=clock, clock_locked=True, power_available=True,
                       power_note=None, mean_power_w=power, energy_per_token_j=power / (msrr * 10))

    table = write_table(tmp_path / "hct", [row(qt, msrr * scale, clock, power) for qt in QueryType
                                           for clock, scale, power in ((1320, 1.0, 239.4), (855, 0.93, 145.2))
                                           for msrr in (4.0,)])
    route = f"{MODEL_ID}/all"
    policy = _Policy({
        "models": [{"model_id": MODEL_ID, "default_route": "all"}],
        "routes": [{"name": "all", "model": MODEL_ID, "engine": {"max_num_seqs": 4},
                    "resources": {"accelerator": "gpu"}, "max_replicas": 4}],
        "clock_control": "apply",
        "autoscaling": {"hct_path": str(table), "scaling": {"upscale_cooldown_s": 0, "downscale_cooldown_s": 0}},
    })
    targets, _ = _tick(policy, {(route, QueryType.SISO): 1.0}, {f"{route}@full-gpu": 1})
    assert targets == {f"{route}@full-gpu": 1}
    [record] = policy.posted()
    assert record.action == "set_clock" and record.setting_after == DeviceSetting(sm_clock_mhz=855)
    board = find_board(policy.app_name)
    assert ray.get(board.setting.remote(route), timeout=30) == DeviceSetting(sm_clock_mhz=855)
