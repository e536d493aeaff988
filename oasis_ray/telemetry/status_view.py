"""The operator's one-screen answer to "what is the app doing": a snapshot model and its plain-text rendering.

Pure, so the command, an HTTP route and the tests render the same text from
the same snapshot; gathering the snapshot from a running app is the caller's
job. Unknown is never printed as 0: power and energy without a measurement
read "unavailable" (with the sampler's reason where there is one), and a rate
or latency that was not measured reads "-".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, model_validator

from oasis_ray.device_setting import ClockControl
from oasis_ray.device_setting import LeaseStatus
from oasis_ray.telemetry.gpu_sampler import UNAVAILABLE
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.record import ScalingRecord, running_replicas

NOT_MEASURED = "-"
NO_SAMPLER = f"{UNAVAILABLE} (no GPU sampler has reported)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RouteStatus(_Strict):
    model: str
    route: str
    replicas: dict[str, NonNegativeInt] = Field(description="Running replicas by shape.")


class QueryTypeStatus(_Strict):
    model: str
    query_type: QueryType
    route: str
    rate_rps: float | None = Field(ge=0, description="Requests per second over the window; None if not measured.")
    p95_e2e_s: float | None = Field(ge=0, description="P95 end-to-end latency; None without requests in the window.")
    slo_p95_e2e_s: float | None = Field(gt=0, description="The P95 end-to-end objective; None if none is set.")


class GpuStatus(_Strict):
    node: str
    index: NonNegativeInt
    name: str
    power_w: float | None = Field(ge=0, description="Latest power reading; None where NVML offers none.")
    energy_j: float | None = Field(ge=0, description="Energy metered over the window; None if any of it was lost.")


class StatusSnapshot(_Strict):
    taken_at: datetime
    window_s: float = Field(gt=0, description="What 'recent' means for rates, P95 and energy.")
    routes: list[RouteStatus]
    query_types: list[QueryTypeStatus]
    scaling: list[ScalingRecord] = Field(description="The last decisions, oldest first.")
    gpus: list[GpuStatus]
    gpu_status: dict[str, str] = Field(description="Per node, as Telemetry.gpu_status() gives it.")
    clock_control: ClockControl = Field("advisory", description="Whether replicas apply their GPU settings.")
    gpu_settings: list[LeaseStatus] = Field(
        default_factory=list, description="Each replica's GPU-settings lease, as its node's keeper holds it."
    )

    @model_validator(mode="after")
    def _gpus_come_from_reporting_nodes(self) -> StatusSnapshot:
        for i, gpu in enumerate(self.gpus):
            if gpu.node not in self.gpu_status:
                raise ValueError(f"gpus[{i}].node: '{gpu.node}' has no entry in gpu_status")
        return self


def render_status(snapshot: StatusSnapshot) -> str:
    taken_at = snapshot.taken_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sections = [
        f"oasis-ray status at {taken_at} (rates, P95 and energy over the last {snapshot.window_s:g} s)",
        _section("Routes", _routes(snapshot.routes)),
        _section("Query types", _query_types(snapshot.query_types)),
        _section("Last scaling decisions", [record.log_line() for record in snapshot.scaling] or ["none yet"]),
        _section("GPUs", _gpus(snapshot)),
        _section(f"GPU settings (clock_control: {snapshot.clock_control})", _gpu_settings(snapshot)),
    ]
    return "\n\n".join(sections) + "\n"


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, *(f"  {line}" for line in lines)])


def _routes(routes: list[RouteStatus]) -> list[str]:
    rows = [[r.model, r.route, _replicas(r.replicas)] for r in routes]
    return _table(["MODEL", "ROUTE", "REPLICAS"], rows) if rows else ["no routes"]


def _replicas(replicas: dict[str, int]) -> str:
    running = running_replicas(replicas)
    return ", ".join(f"{shape}:{count}" for shape, count in sorted(running.items())) or "none running"


def _query_types(statuses: list[QueryTypeStatus]) -> list[str]:
    rows = [
        [
            s.model,
            s.query_type.value,
            s.route,
            _number(s.rate_rps, "{:.2f}"),
            _number(s.p95_e2e_s, "{:.3f}"),
            _number(s.slo_p95_e2e_s, "{:g}"),
            _slo_verdict(s),
        ]
        for s in statuses
    ]
    headers = ["MODEL", "TYPE", "ROUTE", "RATE (req/s)", "P95 E2E (s)", "SLO P95 (s)", "SLO"]
    return _table(headers, rows) if rows else ["no query types"]


def _slo_verdict(status: QueryTypeStatus) -> str:
    if status.p95_e2e_s is None or status.slo_p95_e2e_s is None:
        return NOT_MEASURED
    return "met" if status.p95_e2e_s <= status.slo_p95_e2e_s else "MISSED"


def _gpus(snapshot: StatusSnapshot) -> list[str]:
    if not snapshot.gpu_status:
        return [f"power and energy: {NO_SAMPLER}"]
    rows = [
        [g.node, str(g.index), g.name, _measured(g.power_w, "{:.1f}"), _measured(g.energy_j, "{:.1f}")]
        for g in snapshot.gpus
    ]
    lines = _table(["NODE", "GPU", "NAME", "POWER (W)", "ENERGY (J)"], rows) if rows else []
    reporting = {g.node for g in snapshot.gpus}
    for node, status in sorted(snapshot.gpu_status.items()):
        if node in reporting:
            continue
        measured = not status.startswith(UNAVAILABLE)
        lines.append(f"node {node}: {status}" if measured else f"node {node}: power and energy {status}")
    return lines


def _gpu_settings(snapshot: StatusSnapshot) -> list[str]:
    if snapshot.clock_control == "off":
        return ["off: replicas set nothing and report nothing"]
    lines = [line for status in sorted(snapshot.gpu_settings, key=lambda s: (s.route, s.shape, s.holder))
             for line in status.lines()]
    return lines or ["no replica has reported its setting yet"]


def _number(value: float | None, spec: str) -> str:
    return NOT_MEASURED if value is None else spec.format(value)


def _measured(value: float | None, spec: str) -> str:
    return UNAVAILABLE if value is None else spec.format(value)


def _table(headers: list[str], rows: Sequence[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in [headers, *rows]]
