"""`oasis profile SPEC`: run a profiling sweep where it belongs and say where the table is.

With --fingerprint the job is profiling_jobs.fingerprint instead: the spec's
rows estimated from fingerprints of its models, run the same way.

With a Ray cluster running (the one `oasis serve` started, or the one named
with --address or RAY_ADDRESS) the sweep is submitted as a Ray job: the
checkout is its working_dir, and the entrypoint runs the head node's own
Python (asked of the cluster, so a venv that is not on PATH still serves),
which is what a bare `python -m ...` entrypoint gets wrong. The job's log is
followed here; Ctrl-C stops the job, and running the same command again
resumes it (finished trials are kept). A cluster without a dashboard cannot
take jobs, so the sweep then runs from here as a driver of that cluster. With
no cluster, the sweep starts a local Ray instance that ends with it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shlex
import sys
import uuid
from pathlib import Path

from oasis_cli.cluster import LOCAL, ClusterChoiceError, ClusterRef, find_cluster
from oasis_cli.cluster_auth import use_cluster_token
from oasis_cli.jobs import job_client, submit_when_agent_ready
from oasis_ray.config import PROJECT_ROOT
from oasis_ray.profiling.hct import ROWS_FILE
from oasis_ray.profiling.sweep_spec import SpecError, load_spec

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXAMPLES = """\
examples:
  oasis profile profiling_jobs/specs/tiny_cpu.yaml --out /tmp/hct-tiny-cpu
      on the running cluster as a Ray job (or on a local Ray instance when none runs)
  oasis profile profiling_jobs/specs/gpu_example.yaml --out /shared/hct/llama-3-8b --address 10.0.0.1:6379
  oasis profile my_sweep.yaml --address http://127.0.0.1:8265 --python /opt/venv/bin/python
      through the dashboard alone (e.g. a KubeRay head, port-forwarded)
  oasis profile profiling_jobs/specs/fingerprint_cpu.yaml --fingerprint --embedded-layers 8 --out /tmp/hct-fp
      the spec's rows estimated from 1- and 2-layer fingerprints of its models (profiling_jobs.fingerprint)

Re-running the same command resumes: finished trials are skipped, failed ones retried.
Exit status: 0 every trial measured; 1 some failed or the job did not succeed; 2 bad input."""


def parser() -> argparse.ArgumentParser:
    parsing = argparse.ArgumentParser(
        prog="oasis profile", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parsing.add_argument("spec", type=Path, help="sweep spec (YAML), e.g. profiling_jobs/specs/tiny_cpu.yaml")
    parsing.add_argument("--out", type=Path, help="table directory (default: hct/<spec name>); reuse it to resume. "
                                                 "On a remote cluster, a path the head node can write")
    parsing.add_argument("--address", help=f"Ray cluster: GCS host:port, a dashboard URL, or '{LOCAL}' for a new "
                                           "local instance (default: RAY_ADDRESS, else the cluster running here)")
    parsing.add_argument("--python", help="the job's interpreter, with a dashboard URL address (default: python)")
    parsing.add_argument("--no-wait", action="store_true", help="submit the job and return its id")
    parsing.add_argument("--fingerprint", action="store_true",
                         help="profile 1- and 2-layer fingerprints of the spec's models and write estimated rows")
    parsing.add_argument("--embedded-layers", type=int, metavar="N",
                         help="with --fingerprint: the embedded model built N hidden layers deep stands in for it")
    return parsing


def _job(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The job's module and its arguments beyond --spec and --out."""
    if not args.fingerprint:
        return "profiling_jobs.sweep", []
    layers = [] if args.embedded_layers is None else ["--embedded-layers", str(args.embedded_layers)]
    return "profiling_jobs.fingerprint", layers


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.embedded_layers is not None and not args.fingerprint:
        print("error: --embedded-layers: only with --fingerprint", file=sys.stderr)
        return EXIT_BAD_INPUT
    job = _job(args)
    try:
        spec = load_spec(args.spec)
        discovery = find_cluster(args.address)
    except (SpecError, ClusterChoiceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = (args.out or Path("hct") / spec.name).resolve()
    for note in discovery.notes:
        _say(note)
    if discovery.cluster is None:
        _say(f"running sweep '{spec.name}' here, on a local Ray instance that stops with it")
        return _run_here(job, args.spec, out, LOCAL)
    use_cluster_token()
    cluster = discovery.cluster
    if cluster.is_dashboard_url:
        return _submit(job, cluster.address, args.python or "python", args.spec, out, args.no_wait)
    try:
        dashboard_url, python = _ask_cluster(cluster)
    except ConnectionError as error:
        print(f"error: cannot join the cluster at {cluster.describe()}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not dashboard_url:
        _say(f"the cluster at {cluster.describe()} has no dashboard, so it takes no jobs; running the sweep "
             "from here as a driver of that cluster (it stops if this command stops)")
        return _run_here(job, args.spec, out, cluster.address)
    _say(f"submitting sweep '{spec.name}' to the cluster at {cluster.describe()} as a Ray job")
    return _submit(job, dashboard_url, python, args.spec, out, args.no_wait)


def _say(text: str) -> None:
    print(f"[oasis] {text}", flush=True)


def _run_here(job: tuple[str, list[str]], spec: Path, out: Path, address: str) -> int:
    """The job module's own main, in this process; its `ray.init()` reads the address from RAY_ADDRESS."""
    module, extra = job
    os.environ["RAY_ADDRESS"] = address
    status = importlib.import_module(module).main(["--spec", str(spec), "--out", str(out), *extra])
    _report_table(out)
    return status


def _ask_cluster(cluster: ClusterRef) -> tuple[str, str]:
    """The dashboard URL ('' without one) and the head node's Python, where a job's entrypoint runs."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    context = ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        head = next(node for node in ray.nodes() if node["Alive"] and "node:__internal_head__" in node["Resources"])

        def interpreter() -> str:
            return sys.executable

        on_head = NodeAffinitySchedulingStrategy(head["NodeID"], soft=False)
        python = ray.get(ray.remote(num_cpus=0)(interpreter).options(scheduling_strategy=on_head).remote())
        return context.dashboard_url or "", python
    finally:
        ray.shutdown()


def _submit(job: tuple[str, list[str]], dashboard_url: str, python: str, spec: Path, out: Path, no_wait: bool) -> int:
    from ray.job_submission import JobStatus

    if not dashboard_url.startswith(("http://", "https://")):
        dashboard_url = f"http://{dashboard_url}"
    client = job_client(dashboard_url)
    runtime_env = {"working_dir": str(PROJECT_ROOT)} if (PROJECT_ROOT / "pyproject.toml").exists() else {}
    module, extra = job
    entrypoint = shlex.join([python, "-m", module, "--spec", _job_path(spec, runtime_env), "--out", str(out), *extra])
    job_id = submit_when_agent_ready(client, entrypoint=entrypoint, runtime_env=runtime_env,
                                      submission_id=f"oasis-profile-{uuid.uuid4().hex[:8]}")
    _say(f"job {job_id}: {entrypoint}")
    if no_wait:
        _say(f"not following it; the table will be {out / (ROWS_FILE + '.parquet')}")
        return 0
    try:
        asyncio.run(_follow(client, job_id))
    except KeyboardInterrupt:
        client.stop_job(job_id)
        _say(f"stopped job {job_id}; run the same command again to resume (finished trials are kept)")
        return EXIT_FAILED
    status = client.get_job_status(job_id)
    _say(f"job {job_id} {status.value}")
    _report_table(out, written_elsewhere=status == JobStatus.SUCCEEDED)
    return 0 if status == JobStatus.SUCCEEDED else EXIT_FAILED


async def _follow(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def _job_path(spec: Path, runtime_env: dict[str, str]) -> str:
    """Relative to the job's working_dir when the spec is in the checkout, else as given (it must exist there)."""
    resolved = spec.resolve()
    if runtime_env and resolved.is_relative_to(PROJECT_ROOT):
        return str(resolved.relative_to(PROJECT_ROOT))
    return str(resolved)


def _report_table(out: Path, written_elsewhere: bool = False) -> None:
    """`written_elsewhere`: the job succeeded, so a table missing here is on the cluster's head node."""
    table = out / f"{ROWS_FILE}.parquet"
    if table.exists():
        _say(f"table: {table}")
    elif written_elsewhere:
        _say(f"table: {table} (on the cluster's head node)")
    else:
        _say(f"no table was written to {out}")
