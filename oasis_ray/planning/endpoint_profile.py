"""Profile a running oasis endpoint into a cost table, with the sweep's own search and table code.

The replay check compares the simulator with the live app, so the simulator
needs a table of the app as it runs (its engine, its cores, the ingress in
front), not of a separate engine. This runs each trial of a sweep spec with
the profiling job's pieces (closed-loop levels, `summarize_level`, the MSRR
search, `measured_outcome`, `merge_outcomes`), only sending requests over
HTTP instead of to an in-process engine. The spec describes what the
endpoint runs (hardware, batch size, variant) and the query lengths to
measure; nothing in it is applied to the endpoint.

Power is recorded as unavailable: a client cannot meter the server.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import platform
import time

import httpx

from oasis_ray.profiling.clock_control import ClockLock, PowerCap
from oasis_ray.profiling.hct import HardwareCostTable
from oasis_ray.profiling.loadgen import SendRequest, prompt_token_ids, run_closed_loop
from oasis_ray.profiling.measurement import EngineIdlePower, LoadPoint, PowerReading, RequestRecord, summarize_level
from oasis_ray.profiling.msrr_search import search_msrr
from oasis_ray.planning.replay import EndpointSettings, stream_completion
from oasis_ray.profiling.sweep_plan import Trial, expand_trials
from oasis_ray.profiling.sweep_spec import QueryLengths, SweepSpec
from oasis_ray.profiling.trial_outcome import (
    DeviceInfo,
    SoftwareVersions,
    TrialOutcome,
    measured_outcome,
    merge_outcomes,
    utc_now,
)

ENDPOINT_POWER_NOTE = "profiled through the HTTP endpoint: the client has no meter of the server"
NOT_KNOWN_TO_CLIENT = "unknown (profiled through the HTTP endpoint)"


def profile_endpoint(spec: SweepSpec, endpoint: EndpointSettings, run_id: str) -> HardwareCostTable:
    loop = asyncio.new_event_loop()
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    client = httpx.AsyncClient(base_url=endpoint.base_url, headers=headers, timeout=endpoint.request_timeout_s)
    try:
        outcomes = [_profile_trial(trial, client, endpoint, loop, run_id) for trial in expand_trials(spec)]
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
    versions = SoftwareVersions(
        vllm=NOT_KNOWN_TO_CLIENT, ray=NOT_KNOWN_TO_CLIENT, oasis_ray=NOT_KNOWN_TO_CLIENT,
        python=platform.python_version(),
    )
    return merge_outcomes(spec, outcomes, versions)


def _profile_trial(
    trial: Trial, client: httpx.AsyncClient, endpoint: EndpointSettings, loop: asyncio.AbstractEventLoop,
    run_id: str,
) -> TrialOutcome:
    started_at = utc_now()
    send = _streaming_sender(client, endpoint, trial.query)

    def measure(concurrency: int) -> LoadPoint:
        warmup, measured = trial.load.warmup_requests(concurrency), trial.load.measured_requests(concurrency)
        run = loop.run_until_complete(
            run_closed_loop(send, concurrency=concurrency, warmup=warmup, measured=measured, read_power=_no_meter)
        )
        return summarize_level(
            concurrency=concurrency, records=run.records, warmup=warmup, measured=measured,
            output_tokens=trial.query.output_tokens, window_open=run.window_open, window_close=run.window_close,
        )

    search_started = time.perf_counter()
    result = search_msrr(measure, trial.slo, trial.search)
    return measured_outcome(
        trial,
        run_id=run_id,
        result=result,
        clock=ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=None, note=None),
        cap=PowerCap(requested_w=None, set=False, note=None),
        device=DeviceInfo(device_name=None, driver_version=None, power_note=ENDPOINT_POWER_NOTE),
        engine_idle=EngineIdlePower(watts=math.nan, note=ENDPOINT_POWER_NOTE),
        engine_start_s=math.nan,
        search_wall_s=time.perf_counter() - search_started,
        started_at=started_at,
    )


def _no_meter() -> PowerReading:
    return PowerReading(timestamp_s=time.time(), energy_mj=None, sm_clock_mhz=None)


def _streaming_sender(client: httpx.AsyncClient, endpoint: EndpointSettings, query: QueryLengths) -> SendRequest:
    """Streams each answer to time its first token; the final usage chunk gives the token count."""
    numbers = itertools.count()
    pool = list(endpoint.token_pool)

    async def send(index: int) -> RequestRecord:
        body = {
            "model": endpoint.model,
            "prompt": prompt_token_ids(pool, query.input_tokens, endpoint.seed + next(numbers)),
            "max_tokens": query.output_tokens,
            "temperature": 0.0,
            "ignore_eos": True,
        }
        start_s = time.perf_counter()
        answer = await stream_completion(client, body)
        if answer.error is not None:
            raise RuntimeError(f"{endpoint.base_url} refused a profiling request: HTTP {answer.status_code}: "
                               f"{answer.error}")
        return RequestRecord(
            index=index, start_s=start_s,
            first_token_s=answer.first_token_s if answer.first_token_s is not None else answer.end_s,
            end_s=answer.end_s, output_tokens=answer.completion_tokens or 0,
        )

    return send
