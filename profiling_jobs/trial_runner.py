"""The process that profiles one engine configuration: it starts the engine once and runs its trials.

The sweep runs this class as a Ray actor holding exactly the devices it
profiles (N GPUs for a tensor-parallel engine), so the engine, the meters,
the clock lock and the power limit all live where the devices are. The
benchmark runs the same class in-process. Each trial's clock and power limit
are set on every GPU only for its own search and restored when it ends,
whatever it raised, so a trial that fails leaves the GPUs as it found them.

The actor owns its event loop rather than being an async actor: vLLM's
AsyncLLM binds to the loop it first runs on, and one trial at a time is the
point (a second concurrent trial would be measuring the first's load).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from oasis_ray.profiling.clock_control import ClockLock, PowerCap, capped_power, locked_sm_clock
from oasis_ray.profiling.loadgen import run_closed_loop
from oasis_ray.profiling.measurement import LoadPoint, summarize_level
from oasis_ray.profiling.msrr_search import meets_slo, search_msrr
from oasis_ray.profiling.power_probe import (
    CPU_POWER_NOTE,
    MIG_POWER_NOTE,
    NoPowerProbe,
    PowerProbe,
    open_gpu_probe,
    sample_engine_idle,
)
from oasis_ray.profiling.sweep_plan import EngineConfig, Trial
from oasis_ray.profiling.sweep_spec import CpuTarget, GpuTarget
from oasis_ray.profiling.trial_outcome import DeviceInfo, TrialOutcome, measured_outcome, utc_now
from profiling_jobs.engine import ProfiledEngine

# Seconds of NVML energy sampled with the engine loaded and idle, before each trial's first load point.
ENGINE_IDLE_SAMPLE_S = 3.0


class TrialTimeout(TimeoutError):
    """The trial's search ran past the spec's trial_timeout_s."""


class TrialRunner:
    def __init__(self, config: EngineConfig, gpu_indices: tuple[int, ...] | None = None) -> None:
        """Quick, so that in the sweep a finished constructor means Ray has placed the actor; start_engine is the slow part.

        `gpu_indices`: NVML indices of a GPU target; left out, the GPUs Ray assigned this actor.
        """
        self._config = config
        if gpu_indices is None and isinstance(config.hardware, GpuTarget):
            gpu_indices = _assigned_gpu_indices(config.tensor_parallel_size)
        self._gpu_indices = gpu_indices
        self._probe = self._open_probe()
        self._loop = asyncio.new_event_loop()
        self._engine: ProfiledEngine | None = None
        self._start_error: str | None = None
        self.engine_start_s: float | None = None

    def start_engine(self) -> float:
        """Start the engine once; returns its start-up seconds. A failed start is kept, and each trial reports it."""
        started = time.perf_counter()
        try:
            self._engine = self._loop.run_until_complete(ProfiledEngine.start(self._config))
        except Exception as error:
            self._start_error = f"{type(error).__name__}: {error}"
            raise
        self.engine_start_s = time.perf_counter() - started
        return self.engine_start_s

    def placed_on(self) -> str:
        """The node Ray placed this actor on, by IP and id; answers as soon as the actor exists.

        The id tells nodes apart where several share an IP (a multi-node cluster on one machine).
        """
        import ray

        return f"{ray.util.get_node_ip_address()} (node {ray.get_runtime_context().get_node_id()})"

    def _open_probe(self) -> PowerProbe:
        if isinstance(self._config.hardware, CpuTarget):
            return NoPowerProbe(CPU_POWER_NOTE)
        if self._gpu_indices is None:
            return NoPowerProbe(MIG_POWER_NOTE)
        return open_gpu_probe(self._gpu_indices)

    def run_trial(self, trial: Trial, run_id: str) -> TrialOutcome:
        if self._engine is None or self.engine_start_s is None:
            raise RuntimeError(f"the engine did not start: {self._start_error or 'start_engine was not called'}")
        engine_start_s = self.engine_start_s
        started_at = utc_now()
        deadline = time.monotonic() + trial.timeout_s
        send = self._engine.sender(trial.query, label=trial.trial_id)

        def measure(concurrency: int) -> LoadPoint:
            remaining = deadline - time.monotonic()
            warmup, measured = trial.load.warmup_requests(concurrency), trial.load.measured_requests(concurrency)
            level = run_closed_loop(
                send, concurrency=concurrency, warmup=warmup, measured=measured, read_power=self._probe.read
            )
            try:
                run = self._loop.run_until_complete(asyncio.wait_for(level, max(remaining, 0)))
            except TimeoutError:
                raise TrialTimeout(
                    f"trial passed its {trial.timeout_s:g} s limit at concurrency {concurrency}"
                ) from None
            point = summarize_level(
                concurrency=concurrency,
                records=run.records,
                warmup=warmup,
                measured=measured,
                output_tokens=trial.query.output_tokens,
                window_open=run.window_open,
                window_close=run.window_close,
            )
            verdict = "meets" if meets_slo(point, trial.slo) else "misses"
            print(
                f"[trial {trial.label()}] concurrency {concurrency}: P95 e2e {point.e2e_p95_s:.3f} s, "
                f"{point.requests_per_s:.2f} req/s, {verdict} the SLO",
                flush=True,
            )
            return point

        with self._gpu_settings() as (clock, cap):
            engine_idle = sample_engine_idle(self._probe, ENGINE_IDLE_SAMPLE_S)
            search_started = time.perf_counter()
            result = search_msrr(measure, trial.slo, trial.search)
            search_wall_s = time.perf_counter() - search_started
        device = DeviceInfo(
            device_name=self._probe.device_name,
            driver_version=self._probe.driver_version,
            power_note=self._probe.unavailable_reason,
        )
        return measured_outcome(
            trial,
            run_id=run_id,
            result=result,
            clock=clock,
            cap=cap,
            device=device,
            engine_idle=engine_idle,
            engine_start_s=engine_start_s,
            search_wall_s=search_wall_s,
            started_at=started_at,
        )

    @contextlib.contextmanager
    def _gpu_settings(self) -> Iterator[tuple[ClockLock, PowerCap]]:
        """The trial's clock and power limit on each of its GPUs; the row says set only if every GPU took it."""
        config = self._config
        if self._gpu_indices is None:
            yield (ClockLock(requested_mhz=None, locked=False, observed_sm_mhz=None, note=None),
                   PowerCap(requested_w=None, set=False, note=None))
            return
        with contextlib.ExitStack() as stack:
            locks = [stack.enter_context(locked_sm_clock(i, config.clock_mhz)) for i in self._gpu_indices]
            caps = [stack.enter_context(capped_power(i, config.power_limit_w)) for i in self._gpu_indices]
            yield _all_of(locks, caps)

    def shutdown(self) -> None:
        """Stop the engine, then let its background tasks see the cancellation before the loop closes."""
        if self._engine is not None:
            self._engine.shutdown()
        leftovers = asyncio.all_tasks(self._loop)
        for task in leftovers:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        self._loop.close()
        self._probe.close()


def _all_of(locks: list[ClockLock], caps: list[PowerCap]) -> tuple[ClockLock, PowerCap]:
    """One GPU's lock and cap stand for all only if every GPU took them; else the first refusal's note."""
    lock = next((lock for lock in locks if not lock.locked), locks[0])
    cap = next((cap for cap in caps if not cap.set), caps[0])
    return lock, cap


def _assigned_gpu_indices(count: int) -> tuple[int, ...]:
    import ray

    ids = ray.get_gpu_ids()
    if len(ids) != count:
        raise RuntimeError(f"a GPU trial of tensor-parallel degree {count} must hold {count} GPU(s), "
                           f"Ray assigned {ids}")
    return tuple(int(gpu) for gpu in ids)
