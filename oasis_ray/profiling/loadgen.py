"""Closed-loop load: a fixed number of requests in flight, each replaced the moment it completes.

Closed loop rather than a Poisson arrival process because the MSRR search
steers by concurrency: at concurrency c the engine always holds exactly c
requests, so its batch occupancy, and hence latency and throughput, are a
function of c alone and the search can bracket the SLO boundary on it.

Requests are numbered in the order they are sent. The first `warmup` are
never measured (they meet an idle engine all at once); the next `measured`
are; after them, filler requests keep the concurrency at c until the last
measured request completes, and are then cancelled, so no measured request
sees a draining engine. The engine is reached only through `send`, so this
runs against a fake in tests.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from oasis_ray.profiling.measurement import PowerReading, RequestRecord

SendRequest = Callable[[int], Awaitable[RequestRecord]]
ReadPower = Callable[[], PowerReading]


@dataclass(frozen=True)
class ClosedLoopRun:
    records: list[RequestRecord]
    window_open: PowerReading
    window_close: PowerReading


async def run_closed_loop(
    send: SendRequest, *, concurrency: int, warmup: int, measured: int, read_power: ReadPower
) -> ClosedLoopRun:
    """Run one level; power is read as the first measured request is sent and as the last one completes."""
    if concurrency < 1 or warmup < 0 or measured < 1:
        raise ValueError(f"need concurrency >= 1, warmup >= 0, measured >= 1; got {concurrency}, {warmup}, {measured}")
    numbers = itertools.count()
    records: list[RequestRecord] = []
    readings: dict[str, PowerReading] = {}
    measured_left = measured
    all_measured = asyncio.Event()

    async def keep_one_in_flight() -> None:
        nonlocal measured_left
        while True:
            index = next(numbers)
            if index == warmup:
                readings["open"] = read_power()
            record = await send(index)
            records.append(record)
            if warmup <= index < warmup + measured:
                measured_left -= 1
                if measured_left == 0:
                    readings["close"] = read_power()
                    all_measured.set()

    workers = [asyncio.create_task(keep_one_in_flight()) for _ in range(concurrency)]
    finished = asyncio.create_task(all_measured.wait())
    try:
        await asyncio.wait([finished, *workers], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (finished, *workers):
            task.cancel()
        outcomes = await asyncio.gather(finished, *workers, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, asyncio.CancelledError)]
    if failures:
        raise failures[0]
    return ClosedLoopRun(records=records, window_open=readings["open"], window_close=readings["close"])


def prompt_token_ids(pool: Sequence[int], length: int, seed: int) -> list[int]:
    """`length` token ids drawn from `pool`, a different sequence for every seed.

    Distinct prompts keep the prefix-caching variant honest: repeated prompts
    would be served from cache and flatter it. Ids rather than text make the
    length exact, which re-tokenising generated text would not.
    """
    if not pool:
        raise ValueError("the token pool is empty")
    return random.Random(seed).choices(pool, k=length)
