"""Ray's job client, for a cluster that may have just started.

A fresh cluster answers on its dashboard a moment after its address is
known, and takes jobs only once its job agent registers, which on a loaded
machine can take a while; both are waited for here, within a limit.
"""

from __future__ import annotations

import time

from ray.job_submission import JobSubmissionClient

AGENT_WAIT_S = 120.0
AGENT_POLL_S = 2.0


def job_client(dashboard_url: str) -> JobSubmissionClient:
    """A job client once the dashboard answers."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return JobSubmissionClient(dashboard_url)
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(AGENT_POLL_S)


def submit_when_agent_ready(client: JobSubmissionClient, **job: object) -> str:
    """Submit once the job agent has registered; any other refusal is raised at once."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(AGENT_POLL_S)
