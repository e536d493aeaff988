"""Load points from hand-made timelines, and the closed loop driven against a fake engine."""

from __future__ import annotations

import asyncio
import math

import pytest

from oasis_ray.profiling.loadgen import prompt_token_ids, run_closed_loop
from oasis_ray.profiling.measurement import MeasurementError, PowerReading, RequestRecord, summarize_level

NO_METER = PowerReading(timestamp_s=0.0, energy_mj=None, sm_clock_mhz=None)
NO_METER_LATER = PowerReading(timestamp_s=7.0, energy_mj=None, sm_clock_mhz=None)


def record(index: int, start: float, first: float, end: float, tokens: int = 11) -> RequestRecord:
    return RequestRecord(index=index, start_s=start, first_token_s=first, end_s=end, output_tokens=tokens)


# Concurrency 2, two warm-up requests (0, 1), four measured (2-5), one filler (6) that completed.
TIMELINE = [
    record(0, 0.0, 0.5, 3.0),
    record(1, 0.0, 0.5, 4.0),
    record(2, 3.0, 3.1, 4.0),  # window opens at 3.0, when request 2 is sent
    record(3, 4.0, 4.2, 6.0),
    record(4, 4.0, 4.4, 7.0),
    record(5, 6.0, 6.8, 10.0),  # window closes at 10.0
    record(6, 7.0, 7.1, 9.0),
]


def level(
    records: list[RequestRecord] = TIMELINE, opened: PowerReading = NO_METER, closed: PowerReading = NO_METER_LATER
):
    return summarize_level(
        concurrency=2, records=records, warmup=2, measured=4, output_tokens=11, window_open=opened, window_close=closed
    )


def test_latency_percentiles_come_from_measured_requests_only() -> None:
    point = level()
    # measured end-to-end latencies 1, 2, 3, 4 s; linear interpolation between ranks
    assert (point.e2e_p50_s, point.e2e_p95_s, point.e2e_p99_s) == pytest.approx((2.5, 3.85, 3.97))
    # TTFTs 0.1, 0.2, 0.4, 0.8 s
    assert point.ttft_p50_s == pytest.approx(0.3)
    # TPOT = (end - first token) / 10 decode steps: 0.09, 0.18, 0.26, 0.32 s
    assert point.tpot_p50_s == pytest.approx(0.22)
    assert (point.concurrency, point.warmup_requests, point.measured_requests) == (2, 2, 4)


def test_rates_count_every_completion_inside_the_window() -> None:
    point = level()
    # window 3.0-10.0 s: completions at 4.0 (twice), 6.0, 7.0, 9.0 and 10.0; the one at 3.0 opened it
    assert point.window_s == 7.0
    assert point.requests_per_s == pytest.approx(6 / 7)
    assert point.output_tokens_per_s == pytest.approx(6 / 7 * 11)


def test_power_and_energy_come_from_the_counter_delta() -> None:
    opened = PowerReading(timestamp_s=100.0, energy_mj=5_000_000, sm_clock_mhz=1400)
    closed = PowerReading(timestamp_s=104.0, energy_mj=6_200_000, sm_clock_mhz=1420)
    point = level(opened=opened, closed=closed)
    assert point.power_available
    assert point.energy_j == 1200.0
    assert point.mean_power_w == 300.0
    assert point.energy_per_token_j == pytest.approx(300.0 / (6 / 7 * 11))
    assert point.sm_clock_mhz == 1410.0


def test_without_a_meter_power_is_nan_and_flagged_never_zero() -> None:
    point = level()
    assert not point.power_available
    assert all(
        math.isnan(v) for v in (point.mean_power_w, point.energy_j, point.energy_per_token_j, point.sm_clock_mhz)
    )


def test_a_restarted_energy_counter_gives_no_power_rather_than_a_guess() -> None:
    opened = PowerReading(timestamp_s=100.0, energy_mj=9_000_000_000, sm_clock_mhz=1400)
    closed = PowerReading(timestamp_s=104.0, energy_mj=2_000, sm_clock_mhz=1400)
    point = level(opened=opened, closed=closed)
    assert not point.power_available and math.isnan(point.mean_power_w)
    assert point.sm_clock_mhz == 1400.0


def test_a_request_of_the_wrong_length_invalidates_the_level() -> None:
    short = [*TIMELINE[:3], record(3, 4.0, 4.2, 6.0, tokens=7), *TIMELINE[4:]]
    with pytest.raises(MeasurementError, match=r"1 measured request\(s\) produced 7 tokens instead of 11"):
        level(short)


def test_a_missing_measured_request_invalidates_the_level() -> None:
    with pytest.raises(MeasurementError, match="expected 4 measured requests, got 3"):
        level([r for r in TIMELINE if r.index != 4])


class FakeEngine:
    """Serves each request after a few event-loop turns; counts what is in flight and what was cancelled."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[int] = []
        self.cancelled: list[int] = []
        self.fail_at = fail_at
        self.clock = 0.0

    async def send(self, index: int) -> RequestRecord:
        self.sent.append(index)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        start = self.clock
        try:
            if index == self.fail_at:
                raise RuntimeError(f"engine died serving request {index}")
            for _ in range(1 + index % 3):
                await asyncio.sleep(0)
                self.clock += 0.25
            return record(index, start, start + 0.1, self.clock)
        except asyncio.CancelledError:
            self.cancelled.append(index)
            raise
        finally:
            self.in_flight -= 1


def test_closed_loop_keeps_concurrency_constant_and_reads_power_at_the_window_edges() -> None:
    engine = FakeEngine()
    readings: list[int] = []

    def read_power() -> PowerReading:
        readings.append(len(engine.sent))
        return PowerReading(timestamp_s=float(len(readings)), energy_mj=None, sm_clock_mhz=None)

    run = asyncio.run(run_closed_loop(engine.send, concurrency=3, warmup=3, measured=9, read_power=read_power))
    indices = sorted(r.index for r in run.records)
    assert set(range(12)) <= set(indices)
    assert engine.most_in_flight == 3
    assert readings[0] == 3, "the window opens as the first measured request (number 3) is sent"
    assert len(readings) == 2
    assert (run.window_open.timestamp_s, run.window_close.timestamp_s) == (1.0, 2.0)
    assert engine.in_flight == 0, "fillers still in flight at the end were cancelled"
    assert set(engine.cancelled) == set(engine.sent) - set(indices)
    assert all(index >= 12 for index in engine.cancelled)


def test_closed_loop_raises_the_engines_error_and_cancels_the_rest() -> None:
    engine = FakeEngine(fail_at=5)
    with pytest.raises(RuntimeError, match="engine died serving request 5"):
        asyncio.run(run_closed_loop(engine.send, concurrency=4, warmup=4, measured=8, read_power=lambda: NO_METER))
    assert engine.in_flight == 0


def test_closed_loop_refuses_a_meaningless_level() -> None:
    with pytest.raises(ValueError, match="need concurrency >= 1"):
        asyncio.run(
            run_closed_loop(FakeEngine().send, concurrency=0, warmup=0, measured=5, read_power=lambda: NO_METER)
        )


def test_prompts_have_the_exact_length_and_differ_per_seed() -> None:
    pool = list(range(10, 500))
    first, again, other = prompt_token_ids(pool, 200, 7), prompt_token_ids(pool, 200, 7), prompt_token_ids(pool, 200, 8)
    assert len(first) == 200 and set(first) <= set(pool)
    assert first == again
    assert first != other and first[0:8] != other[0:8]
    with pytest.raises(ValueError, match="token pool is empty"):
        prompt_token_ids([], 3, 0)
