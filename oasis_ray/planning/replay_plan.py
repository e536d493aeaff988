"""What a live replay sends and how its outcome is read: the pure half of `oasis_ray.planning.replay`.

A trace records lengths, not text, so each request becomes a prompt of
token ids of the trace's input length and a max_tokens of its output length,
capped so that prompt plus output fits the route's context (a request over
it would be refused with 400 and measure nothing). The same capped requests
feed the simulator (`replayed_workload`), so measured and simulated latency
are of the very same arrivals and lengths.

Percentiles are nearest-rank, as in the simulator, and over successful
requests only; failures are counted separately and must be looked at before
any latency is believed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.query_types import DEFAULT_TAU_TOKENS
from oasis_ray.planning.sim_queue import latency_percentiles
from oasis_ray.planning.sim_workload import Workload
from oasis_ray.planning.simulator import SimRun
from oasis_ray.planning.traces import Trace

HTTP_OK = 200


@dataclass(frozen=True)
class ReplayRequest:
    index: int
    send_at_s: float
    input_tokens: int
    max_tokens: int


def replay_requests(trace: Trace, *, max_model_len: int, max_output_tokens: int) -> list[ReplayRequest]:
    """The trace's requests with lengths capped: output first (to `max_output_tokens`), then input to fit."""
    if max_output_tokens < 1 or max_model_len <= max_output_tokens:
        raise ValueError(
            f"max_output_tokens: need 1 <= {max_output_tokens} < max_model_len {max_model_len} to leave room "
            "for a prompt"
        )
    requests = trace.requests
    outputs = np.minimum(requests["output_tokens"].to_numpy(), max_output_tokens)
    inputs = np.clip(requests["input_tokens"].to_numpy(), 1, max_model_len - outputs)
    arrivals = requests["arrival_s"].to_numpy()
    return [
        ReplayRequest(index=i, send_at_s=float(arrivals[i]), input_tokens=int(inputs[i]), max_tokens=int(outputs[i]))
        for i in range(len(requests))
    ]


def replayed_workload(
    name: str, requests: list[ReplayRequest], model_id: str, tau: int = DEFAULT_TAU_TOKENS
) -> Workload:
    """The replayed requests as the simulator sees them, classified by the capped lengths the app saw."""
    return Workload.from_tokens(
        name,
        np.asarray([r.send_at_s for r in requests]),
        np.asarray([r.input_tokens for r in requests]),
        np.asarray([r.max_tokens for r in requests]),
        (model_id,),
        tau,
    )


class ReplayRecord(BaseModel):
    """One request as sent and answered; times are seconds after the replay started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    scheduled_s: float
    sent_s: float
    latency_s: float
    status_code: int = Field(description="HTTP status; 0 when no response came (connection error, timeout).")
    query_type: str | None = Field(description="x-oasis-query-type as the app classified the request.")
    route: str | None
    output_tokens: int | None
    error: str | None


class ReplayReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    records: list[ReplayRecord]
    sent: int
    succeeded: int
    p50_s: float
    p95_s: float
    p99_s: float
    throughput_rps: float = Field(description="Successes over the time from the first send to the last answer.")
    max_send_lateness_s: float = Field(description="How far the client fell behind the schedule at worst.")
    query_types: dict[str, int]


def report(records: list[ReplayRecord]) -> ReplayReport:
    ok = [r for r in records if r.status_code == HTTP_OK]
    latencies = np.asarray([r.latency_s for r in ok]) if ok else np.asarray([math.nan])
    p50, p95, p99 = latency_percentiles(latencies)
    span = max((r.sent_s + r.latency_s for r in ok), default=0.0) - min((r.sent_s for r in records), default=0.0)
    types: dict[str, int] = {}
    for record in ok:
        key = record.query_type or "unknown"
        types[key] = types.get(key, 0) + 1
    return ReplayReport(
        records=sorted(records, key=lambda r: r.index),
        sent=len(records),
        succeeded=len(ok),
        p50_s=p50,
        p95_s=p95,
        p99_s=p99,
        throughput_rps=len(ok) / span if span > 0 else math.nan,
        max_send_lateness_s=max((r.sent_s - r.scheduled_s for r in records), default=0.0),
        query_types=types,
    )


class ReplayComparison(BaseModel):
    """Simulated against measured on the same requests; a gap is simulated / measured - 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int
    measured_p95_s: float
    simulated_p95_s: float
    p95_gap: float
    measured_throughput_rps: float
    simulated_throughput_rps: float
    throughput_gap: float


def compare(measured: ReplayReport, simulated: SimRun) -> ReplayComparison:
    sim = simulated.result
    return ReplayComparison(
        requests=measured.sent,
        measured_p95_s=measured.p95_s,
        simulated_p95_s=sim.p95_s,
        p95_gap=sim.p95_s / measured.p95_s - 1,
        measured_throughput_rps=measured.throughput_rps,
        simulated_throughput_rps=sim.throughput_rps,
        throughput_gap=sim.throughput_rps / measured.throughput_rps - 1,
    )
