"""Ray's job client, for a cluster that may have just started.

A fresh cluster answers on its dashboard a moment after its address is
known, and takes jobs only once its job agent registers, which on a loaded
machine can take a while; both are waited for here, within a limit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ray.job_submission import JobSubmissionClient

AGENT_WAIT_S = 120.0
AGENT_POLL_S = 2.0


# Ray's job client takes these over the address it is given (ray.dashboard.utils.get_address_for_submission_client).
_ADDRESS_OVERRIDES = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def job_client(dashboard_url: str) -> JobSubmissionClient:
    """A job client of this dashboard once it answers, whatever cluster RAY_ADDRESS names."""
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            with _address_overrides_set_aside():
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


@contextmanager
def _address_overrides_set_aside() -> Iterator[None]:
    """The client resolves its address once, at construction; the environment is put back after."""
    saved = {name: os.environ.pop(name) for name in _ADDRESS_OVERRIDES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)
