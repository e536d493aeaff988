"""A real profiling sweep submitted as a Ray job: a trial's actor killed, the driver killed, resubmitted, reported.

One local cluster and one sweep (the shipped tiny CPU spec: three engine
configurations x LISO and SILO) serve every test here, because each vLLM
engine takes most of a minute to start on two cores. In the first job, the
actor of one engine configuration is killed (SIGKILL) once a trial is saved,
then the job's driver is killed (SIGKILL) once another trial is measured, and
the sweep is resubmitted.

The cluster is this module's own (tests/local_cluster.py): it never touches a
cluster another test session runs on the same machine, and its dashboard and
job agent have ports of their own. It uses Ray's token authentication with the
machine's token, which the job client and the `ray` CLI send because token
mode is on in this process, as the `oasis` command turns it on.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_tasks

from oasis_cli.cluster_auth import use_cluster_token
from oasis_cli.jobs import job_client, submit_when_agent_ready
from oasis_ray.profiling.hct import HctRow, load_hct
from oasis_ray.profiling.sweep_plan import expand_trials
from oasis_ray.profiling.sweep_spec import load_spec, spec_hash
from oasis_ray.profiling.trial_store import TRIALS_DIR
from profiling_jobs import report
from tests.local_cluster import local_cluster

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC = REPO_ROOT / "profiling_jobs" / "specs" / "tiny_cpu.yaml"
# How long to look for a trial actor with its engine up before taking any actor Ray reports running.
ENGINE_WAIT_S = 20.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POLL_S = 2.0
# Only a guard against a hung job blocking the suite; no assertion depends on speed.
STUCK_AFTER_S = 900.0
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}


@dataclass(frozen=True)
class Cluster:
    dashboard_url: str
    temp_dir: Path  # the cluster's own; its raylet's command line names it

    def env(self) -> dict[str, str]:
        """The `ray` CLI's environment: token mode is on in this process (use_cluster_token), so in the CLI too."""
        return dict(os.environ)

    def client(self) -> JobSubmissionClient:
        return job_client(self.dashboard_url)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster(num_cpus=2, dashboard=True) as started:
        assert started.dashboard_url is not None
        use_cluster_token()
        yield Cluster(dashboard_url=started.dashboard_url, temp_dir=started.temp_dir)


@dataclass(frozen=True)
class SweepRuns:
    out: Path
    first_status: JobStatus
    first_run_files: dict[str, str]
    first_logs: str
    killed_trials: set[str]  # the trials the killed actor had not finished, recorded as failed
    saved_after_kill: list[str]  # trials measured in the first job after the actor was killed
    second_status: JobStatus
    second_logs: str


def _wait_for(client: JobSubmissionClient, job_id: str, done: Callable[[JobStatus], bool]) -> JobStatus:
    deadline = time.monotonic() + STUCK_AFTER_S
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if done(status):
            return status
        time.sleep(POLL_S)
    pytest.fail(
        f"job {job_id} still {client.get_job_status(job_id)} after {STUCK_AFTER_S:.0f} s:\n"
        f"{client.get_job_logs(job_id)[-5000:]}"
    )


def _sweep_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "profiling_jobs.sweep", "--spec", str(SPEC.relative_to(REPO_ROOT)), "--out", str(out)]


def _cluster_processes(cluster: Cluster, *markers: str) -> list[psutil.Process]:
    """The processes of this module's own cluster (under its raylet) whose command lines have every marker."""
    raylets = [p for p in psutil.process_iter(["cmdline"])
               if "raylet" in " ".join(p.info["cmdline"] or []) and str(cluster.temp_dir) in " ".join(p.info["cmdline"] or [])]
    found = []
    for raylet in raylets:
        for process in raylet.children(recursive=True):
            try:
                command = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if all(marker in command for marker in markers):
                found.append(process)
    return found


def _actor_amid_a_trial(cluster: Cluster, client: JobSubmissionClient, job_id: str) -> psutil.Process:
    """The worker process of a trial actor that Ray reports running a trial, as soon as one does.

    Asked of Ray's state API, not read from process titles: a look at the titles found none amid a trial
    while two were (a local run), and a later poll of them found only the third engine's trial (a CI run).
    The state API lags the task: a CI run killed an actor it still reported running after its last trial
    had ended, so no trial failed and the sweep finished before its driver could be killed. An actor whose
    engine process is up is amid a trial, so one with a child process is taken first; after
    ENGINE_WAIT_S without one, any actor Ray reports running.
    """
    started = time.monotonic()
    while time.monotonic() < started + STUCK_AFTER_S and client.get_job_status(job_id) not in TERMINAL:
        running = list_tasks(address=cluster.dashboard_url, raise_on_missing_output=False, filters=[
            ("name", "=", "TrialRunner.run_trial"), ("state", "=", "RUNNING")])
        pids = [task.worker_pid for task in running if task.worker_pid]
        for pid in pids:
            try:
                process = psutil.Process(pid)
                if process.children(recursive=True):
                    return process
            except psutil.NoSuchProcess:
                continue
        if pids and time.monotonic() > started + ENGINE_WAIT_S:
            return psutil.Process(pids[0])
        time.sleep(0.5)
    pytest.fail(f"Ray reported no trial running while job {job_id} ran")


def _sweep_driver(out: Path) -> psutil.Process:
    """The job's driver: the Python process of the sweep writing to this test's own output directory.

    Ray runs a job's entrypoint under `sh -c`, and this machine's sh (dash) stays as its parent, with the
    same command in its own command line. Killing that shell instead left the driver saving trials until
    Ray's watcher killed its process group a moment later (a CI run saw one more trial saved after the kill).
    """
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[1:3] == ["-m", "profiling_jobs.sweep"] and str(out) in cmdline:
            return process
    pytest.fail(f"no sweep driver writes to {out}")


def _outcomes(trials: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text())["row"] for path in trials.glob("*.json")}


@pytest.fixture(scope="module")
def sweep_runs(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> SweepRuns:
    """Submit the sweep, kill one trial actor, kill the driver, then resubmit it with the `ray job submit` CLI."""
    client = cluster.client()
    out = tmp_path_factory.mktemp("sweep") / "hct"
    trials = out / TRIALS_DIR
    first = submit_when_agent_ready(
        client, entrypoint=" ".join(_sweep_command(out)), runtime_env={"working_dir": str(REPO_ROOT)}
    )
    # Two engines run side by side on the two CPUs; once one has saved a trial, kill an actor.
    _wait_for(client, first, lambda status: status in TERMINAL or len(list(trials.glob("*.json"))) >= 1)
    saved_before_kill = set(_outcomes(trials))
    _actor_amid_a_trial(cluster, client, first).kill()  # an actor amid a trial, not one done

    def failed_with_actor() -> set[str]:
        return {t for t, row in _outcomes(trials).items()
                if row["status"] == "failed" and "actor" in (row["error"] or "").lower()}

    def measured_since_kill() -> list[str]:
        return sorted(t for t, row in _outcomes(trials).items() if row["status"] == "ok" and t not in saved_before_kill)

    # The sweep goes on: the killed actor's trials are recorded as failed, and other trials are measured after.
    _wait_for(client, first, lambda status: status in TERMINAL or bool(failed_with_actor() and measured_since_kill()))
    killed_trials, saved_after_kill = failed_with_actor(), measured_since_kill()
    # The driver dies without a word (SIGKILL), as on a lost head process; its trial actors go with it.
    _sweep_driver(out).kill()
    first_status = _wait_for(client, first, lambda status: status in TERMINAL)
    # Ray kills a dead driver's actors some seconds after it learns of the death, and until then an actor amid
    # a trial may still save it: the first run's files are read once none of its actors is left.
    _, alive = psutil.wait_procs(_cluster_processes(cluster, "ray::TrialRunner"), timeout=STUCK_AFTER_S)
    assert not alive, f"the killed driver's trial actors still run: {alive}"
    first_run_files = {path.stem: path.read_text() for path in trials.glob("*.json")}

    ray_cli = Path(sys.executable).with_name("ray")
    submit = [str(ray_cli), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(REPO_ROOT)]
    submitted = subprocess.run(
        [*submit, "--submission-id", "resumed-sweep", "--no-wait", "--", *_sweep_command(out)],
        capture_output=True,
        text=True,
        check=False,
        env=cluster.env(),
    )
    assert submitted.returncode == 0, submitted.stderr
    second_status = _wait_for(client, "resumed-sweep", lambda status: status in TERMINAL)
    return SweepRuns(
        out=out,
        first_status=first_status,
        first_run_files=first_run_files,
        first_logs=client.get_job_logs(first),
        killed_trials=killed_trials,
        saved_after_kill=saved_after_kill,
        second_status=second_status,
        second_logs=client.get_job_logs("resumed-sweep"),
    )


def test_every_row_has_an_msrr_whose_p95_meets_the_slo(sweep_runs: SweepRuns) -> None:
    assert sweep_runs.second_status == JobStatus.SUCCEEDED, sweep_runs.second_logs[-5000:]
    spec = load_spec(SPEC)
    table = load_hct(sweep_runs.out)
    rows, points = table.rows, table.load_points
    assert rows["trial_id"].tolist() == [trial.trial_id for trial in expand_trials(spec)]
    assert rows["status"].tolist() == ["ok"] * len(rows)
    assert (rows["msrr_req_s"] > 0).all()
    assert (rows["e2e_p95_s"] <= spec.slo.p95_e2e_s).all()
    for _, row in rows.iterrows():
        of_trial = points[points["trial_id"] == row["trial_id"]]
        assert len(of_trial) == row["load_points"] >= 2
        at_msrr = of_trial[of_trial["concurrency"] == row["msrr_concurrency"]].iloc[0]
        assert (at_msrr["requests_per_s"], at_msrr["e2e_p95_s"]) == (row["msrr_req_s"], row["e2e_p95_s"])
        assert bool(at_msrr["meets_slo"])
        assert row["msrr_req_s"] == of_trial.loc[of_trial["meets_slo"], "requests_per_s"].max()
    assert {(r["query_type"], r["input_tokens"], r["output_tokens"]) for _, r in rows.iterrows()} == {
        ("LISO", 200, 20),
        ("SILO", 20, 200),
    }
    assert table.metadata.spec_hash == spec_hash(spec)


def test_cpu_rows_record_power_as_unavailable_never_zero(sweep_runs: SweepRuns) -> None:
    rows = load_hct(sweep_runs.out).rows
    assert not rows["power_available"].any()
    assert all(math.isnan(v) for v in [*rows["mean_power_w"], *rows["energy_per_token_j"]])
    assert set(rows["power_note"]) == {"CPU target: no power meter"}
    assert not rows["clock_locked"].any()


def test_a_killed_trial_actor_fails_its_trials_and_the_sweep_goes_on(sweep_runs: SweepRuns) -> None:
    assert sweep_runs.killed_trials, "no trial was recorded as failed by the actor's death"
    for trial_id in sweep_runs.killed_trials:
        row = json.loads(sweep_runs.first_run_files[trial_id])["row"]
        assert row["status"] == "failed" and row["load_points"] == 0
    assert sweep_runs.saved_after_kill, "no trial was measured after the kill"
    assert f"retrying {len(sweep_runs.killed_trials)} that failed earlier" in sweep_runs.second_logs


def test_a_resubmitted_sweep_loses_no_trial_finished_before_its_driver_was_killed(sweep_runs: SweepRuns) -> None:
    assert sweep_runs.first_status == JobStatus.FAILED
    measured_first = {trial_id: text for trial_id, text in sweep_runs.first_run_files.items()
                      if json.loads(text)["row"]["status"] == "ok"}
    table = load_hct(sweep_runs.out / "hct.csv")
    assert 0 < len(measured_first) < len(table.rows), "the first job must have been killed midway"
    for trial_id, text in measured_first.items():
        assert (sweep_runs.out / TRIALS_DIR / f"{trial_id}.json").read_text() == text
    first_run_ids = {json.loads(text)["row"]["run_id"] for text in sweep_runs.first_run_files.values()}
    assert len(first_run_ids) == 1
    run_of = dict(zip(table.rows["trial_id"], table.rows["run_id"], strict=True))
    assert {trial_id for trial_id, run in run_of.items() if run in first_run_ids} == set(measured_first)
    assert len({run for run in run_of.values() if run not in first_run_ids}) == 1
    assert f"skipping {len(measured_first)} finished in earlier runs" in sweep_runs.second_logs
    assert list(table.rows.columns) == list(HctRow.model_fields)


def test_job_log_shows_progress_current_trial_and_eta(sweep_runs: SweepRuns) -> None:
    lines = [line for line in sweep_runs.second_logs.splitlines() if re.match(r"\[sweep\] \d+/6 trials done", line)]
    done_before = sum(json.loads(text)["row"]["status"] == "ok" for text in sweep_runs.first_run_files.values())
    assert lines[-1].startswith(f"[sweep] 6/6 trials done ({done_before} from earlier runs, 0 failed) | elapsed ")
    assert lines[-1].endswith("| ETA 0m00s | running: none")
    # Once a trial has finished, a line gives an ETA and names a trial running then. Both jobs' logs count: which
    # engine comes up first, and so whether a trial label leads the list, differs from run to run.
    all_lines = [line for line in (sweep_runs.first_logs + sweep_runs.second_logs).splitlines()
                 if re.match(r"\[sweep\] \d+/6 trials done", line)]
    assert any(
        re.search(r"\| ETA \d+m\d{2}s \| running: (?:[^;]+; )*oasis-tiny-llama \| cpu x1 \| batch \d", line)
        for line in all_lines
    ), "\n".join(all_lines)
    # Three engine configurations, each asking for 1 of the cluster's 2 CPUs: the third waits until one is done,
    # and a line printed once the other two engines are up (so both hold their CPU) says so.
    waiting = "waiting for CPU 1 (cluster free: CPU 0 of 2): oasis-tiny-llama | cpu x1"
    assert any(waiting in line for line in sweep_runs.first_logs.splitlines() if line.startswith("[sweep] ")), (
        sweep_runs.first_logs[-5000:]
    )
    # The node's IP as Ray reports it (the machine's own address, whatever the head was started with).
    placed = r"^\[sweep\] placed on [0-9a-f.:]+ \(node [0-9a-f]+\), starting engine: oasis-tiny-llama \| cpu x1"
    assert re.search(placed, sweep_runs.first_logs, re.MULTILINE), sweep_runs.first_logs[-5000:]


def test_report_draws_its_figures_from_the_swept_table(sweep_runs: SweepRuns, tmp_path: Path) -> None:
    assert report.main([str(sweep_runs.out / "hct.parquet"), "--out", str(tmp_path)]) == 0
    for name in ("clock_effects.png", "msrr_by_query_type.png", "latency_vs_concurrency.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    summary = (tmp_path / "summary.md").read_text()
    assert len([line for line in summary.splitlines() if line.startswith("| oasis-tiny-llama | cpu x1 |")]) == 6
    assert "Power n/a means not measured (CPU target: no power meter), never zero." in summary
