"""A fresh, private Ray cluster for a test session or module, whatever else runs on the machine.

`ray.init()` would attach to a cluster another suite (or a user) runs on the
same machine, or to a stale address file left in /tmp/ray, and `ray.init`
cannot start a second one cleanly: every node's dashboard agent binds port
52365 unless told otherwise, and only `ray start` (or Ray's private Node API)
takes `--dashboard-agent-listen-port`. So the cluster is started with
`ray start --head --block` in a child process, with its own temp dir and a
free port for everything that has a fixed default (GCS 6379, dashboard 8265,
dashboard agent 52365, Ray client 10001). Tests connect to it by explicit
address, which never reads RAY_ADDRESS or the machine's address file.
Terminating the child stops every process of this cluster and no other;
`ray stop` would stop them all.

More nodes join with `worker_node` (`ray start --address=<gcs> --block`, its
own ports, CPUs and custom resources), each in a process group of its own,
so a test can stop exactly that node, gracefully or as a lost machine.

Authentication is Ray's default for a new local cluster: token mode with the
machine's token (~/.ray/auth_token, generated here if missing; `ray start`
turns token mode on when it finds one), so a client that finds the token the
way a user's does (the `oasis` command) is tested for real.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Ray's token variables; tests that check token discovery run their commands without them.
RAY_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
# Only a guard against a hung start blocking the suite; no assertion depends on speed.
START_LIMIT_S = 300.0
STOP_LIMIT_S = 60.0
# SIGTERM lets Ray stop a node; what is still running this long after is SIGKILLed. A raylet that hosted Serve
# replicas waits some 30 s on its agents before it exits, and nothing of a test cluster needs keeping.
GRACEFUL_STOP_S = 5.0
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class LocalCluster:
    address: str
    """GCS address, for ray.init(address=...) and `ray start --address` of more nodes."""
    dashboard_url: str | None
    """None when started without a dashboard (then no jobs can be submitted)."""
    temp_dir: Path

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a command that should reach this cluster and nothing else, as a user's would."""
        env = {key: value for key, value in (base or os.environ).items() if key not in RAY_AUTH_ENV}
        env["RAY_ADDRESS"] = self.address
        return env


def ensure_machine_token() -> None:
    """The token a new local cluster uses; `ray get-auth-token --generate` keeps an existing one."""
    ray_cli = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray_cli), "get-auth-token", "--generate"], check=True, capture_output=True)


def connect(cluster: LocalCluster, **init_kwargs: Any) -> None:
    """Connect this process as a driver, with token mode on as the `oasis` command turns it on."""
    import ray

    from oasis_cli.cluster_auth import use_cluster_token

    use_cluster_token()
    ray.init(address=cluster.address, **init_kwargs)


@contextmanager
def local_cluster(
    *, resources: dict[str, float] | None = None, num_cpus: float | None = None, dashboard: bool = False
) -> Iterator[LocalCluster]:
    """Start the head node, yield once it accepts drivers, stop it (and only it) on exit."""
    ensure_machine_token()
    temp_dir = Path(tempfile.mkdtemp(prefix="oasis-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    gcs_port, dashboard_port = free_port(), free_port()
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={gcs_port}", f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
        f"--include-dashboard={'true' if dashboard else 'false'}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if resources:
        command.append(f"--resources={json.dumps(resources)}")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    log = temp_dir / "ray_start.log"
    with log.open("w") as log_file:
        head = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, preexec_fn=_stop_with_parent
        )
    keep_logs = True
    try:
        cluster = LocalCluster(
            address=f"127.0.0.1:{gcs_port}",
            dashboard_url=f"http://127.0.0.1:{dashboard_port}" if dashboard else None,
            temp_dir=temp_dir,
        )
        _wait_until_started(head, cluster, log)
        yield cluster
    except BaseException:
        keep_logs = True
        raise
    else:
        keep_logs = False
    finally:
        _stop_node(head, signal_group=False)
        if keep_logs:
            print(f"kept the failed test cluster's logs in {temp_dir}/session_latest/logs", file=sys.stderr)
        else:
            shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass(frozen=True)
class WorkerNode:
    """One worker node of a LocalCluster: its `ray start --block` process, leader of its own process group."""

    name: str
    node_id: str
    """Ray's node id (hex), as `ray.nodes()`, the state API and `get_runtime_context().get_node_id()` give it."""
    process: subprocess.Popen
    log: Path

    def stop(self, *, lose: bool = False) -> None:
        """Stop this node and no other (`_stop_node`); `lose` SIGKILLs it at once, as a machine lost."""
        _stop_node(self.process, signal_group=True, lose=lose)


@contextmanager
def worker_node(
    cluster: LocalCluster, *, name: str, num_cpus: int, resources: dict[str, float] | None = None,
    object_store_mb: int = 256,
) -> Iterator[WorkerNode]:
    """Add a node to `cluster`, yield once Ray lists it alive, stop it (if the test has not) on exit.

    Needs this process connected to the cluster (`connect`): the node's id is read from Ray.
    Every port with a fixed default gets a free one (the dashboard agent's 52365 would clash
    with the head's); the object store is kept small, as several nodes share one machine's memory.
    """
    import ray

    command = [
        str(Path(sys.executable).with_name("ray")), "start", f"--address={cluster.address}", "--block",
        "--node-ip-address=127.0.0.1", f"--node-name={name}", f"--temp-dir={cluster.temp_dir}",
        f"--num-cpus={num_cpus}", f"--dashboard-agent-listen-port={free_port()}",
        f"--object-store-memory={object_store_mb * 1024 * 1024}", "--disable-usage-stats",
    ]
    if resources:
        command.append(f"--resources={json.dumps(resources)}")
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    log = cluster.temp_dir / f"ray_start_{name}.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, preexec_fn=_stop_with_parent,
            start_new_session=True,
        )
    node: WorkerNode | None = None
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while node is None:
            alive = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n.get("NodeName") == name]
            if alive:
                node = WorkerNode(name=name, node_id=alive[0], process=process, log=log)
            elif process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"worker node {name} did not join (exit {process.poll()}):\n{log.read_text()[-4000:]}")
            else:
                time.sleep(0.5)
        yield node
    finally:
        if node is not None:
            node.stop()
        elif process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _stop_node(process: subprocess.Popen, *, signal_group: bool, lose: bool = False) -> None:
    """Stop one node's `ray start --block` and every process under it (raylet, agents, workers, engines), some of
    which may have left its process group; nothing of another node descends from it.

    SIGTERM first (`lose`: SIGKILL at once, as a machine lost), then SIGKILL for what is left after
    GRACEFUL_STOP_S. `signal_group`: the node leads a process group of its own (worker nodes; the head shares
    the test process's).
    """
    import psutil

    if process.poll() is not None:
        return
    descendants = psutil.Process(process.pid).children(recursive=True)
    sig = signal.SIGKILL if lose else signal.SIGTERM
    with contextlib.suppress(ProcessLookupError):
        if signal_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
    _, alive = psutil.wait_procs([psutil.Process(process.pid), *descendants], timeout=0 if lose else GRACEFUL_STOP_S)
    for left in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            left.kill()
    psutil.wait_procs(alive, timeout=STOP_LIMIT_S)
    process.wait(timeout=STOP_LIMIT_S)


def _stop_with_parent() -> None:
    """A test process killed outright must not leave its cluster running: the head gets SIGTERM (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_started(head: subprocess.Popen, cluster: LocalCluster, log: Path) -> None:
    """`ray start` writes the address file (in its own temp dir) once the head is up; the dashboard may come later."""
    address_file = cluster.temp_dir / "ray_current_cluster"
    deadline = time.monotonic() + START_LIMIT_S
    while not (address_file.exists() and _dashboard_answers(cluster.dashboard_url)):
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            raise RuntimeError(f"the test's Ray cluster did not start (exit {head.poll()}):\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _dashboard_answers(url: str | None) -> bool:
    """Any HTTP answer counts (with token auth, /api/version may refuse an anonymous caller)."""
    if url is None:
        return True
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
