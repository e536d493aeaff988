"""The test cluster is the suite's own, whatever else runs on the machine.

The session's cluster plays the part of another cluster on this machine: a
child process gets RAY_ADDRESS and a Ray address file (in its own RAY_TMPDIR)
pointing at it, and no RAY_AUTH_* variables, then starts a cluster the way
the session fixture does, connects, and submits a job. If the helper attached
to whatever cluster the environment names, the child would see the session's
resources; if it left the dashboard agent on its fixed port, the job could not
be submitted while the session's cluster runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ray

from tests.conftest import MIG_STANDIN_RESOURCE
from tests.local_cluster import LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE_RESOURCE = "isolation-probe"
PROBE = f"""
import json, sys, time
import ray
from ray.job_submission import JobStatus
from oasis_cli.jobs import job_client, submit_when_agent_ready
from tests.local_cluster import connect, local_cluster

with local_cluster(num_cpus=1, resources={{"{PROBE_RESOURCE}": 1}}, dashboard=True) as cluster:
    connect(cluster, log_to_driver=False)
    seen = sorted(ray.cluster_resources())
    ray.shutdown()
    client = job_client(cluster.dashboard_url)
    job = submit_when_agent_ready(
        client,
        entrypoint=f"{{sys.executable}} -c 'import ray; ray.init(); print(sorted(ray.cluster_resources()))'",
    )
    while (status := client.get_job_status(job)) not in {{JobStatus.SUCCEEDED, JobStatus.FAILED}}:
        time.sleep(1)
    print(json.dumps({{"driver_saw": seen, "job": status.value, "job_log": client.get_job_logs(job)}}))
"""


def test_the_helper_starts_its_own_cluster_beside_a_running_one(ray_cluster: LocalCluster, tmp_path: Path) -> None:
    stale = tmp_path / "ray"
    stale.mkdir()
    (stale / "ray_current_cluster").write_text(ray_cluster.address)
    env = ray_cluster.client_env()  # RAY_ADDRESS names the session's cluster, no token variables
    env["RAY_TMPDIR"] = str(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert PROBE_RESOURCE in result["driver_saw"] and MIG_STANDIN_RESOURCE not in result["driver_saw"]
    assert result["job"] == "SUCCEEDED", result["job_log"][-4000:]
    assert f"'{PROBE_RESOURCE}'" in result["job_log"]
    assert PROBE_RESOURCE not in ray.cluster_resources()
