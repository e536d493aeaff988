"""Which shape deployments of each route have running replicas, as the ingress needs to spread requests.

Serve's handles do not expose their replica sets, so the ingress reads the
controller's status at most once a second, off the request path: a request
uses the last counts and, if they are stale, schedules a refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ray import serve
from ray.serve.handle import DeploymentHandle

logger = logging.getLogger("ray.serve")

REFRESH_PERIOD_S = 1.0


class RunningReplicas:
    def __init__(self, shape_handles: dict[str, dict[str, DeploymentHandle]]):
        self._names = {
            (handle.app_name, handle.deployment_name): (key, shape)
            for key, shapes in shape_handles.items()
            for shape, handle in shapes.items()
        }
        self._counts: dict[str, dict[str, int]] = {}
        self._refreshed_at = float("-inf")
        self._refreshing: asyncio.Task | None = None

    def counts(self, route_key: str) -> dict[str, int]:
        return self._counts.get(route_key, {})

    def all_counts(self) -> dict[str, dict[str, int]]:
        """Every route's shapes, zeros included (after the first refresh), keyed by route key."""
        return self._counts

    def refresh_soon(self) -> None:
        stale = time.monotonic() - self._refreshed_at > REFRESH_PERIOD_S
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        self._refreshed_at = time.monotonic()
        try:
            status = await asyncio.to_thread(serve.status)
        except Exception:
            logger.warning("oasis ingress: could not read Serve status; keeping the last replica counts", exc_info=True)
            return
        counts: dict[str, dict[str, int]] = {}
        for (app, deployment), (key, shape) in self._names.items():
            app_status = status.applications.get(app)
            deployment_status = app_status.deployments.get(deployment) if app_status else None
            running = deployment_status.replica_states.get("RUNNING", 0) if deployment_status else 0
            counts.setdefault(key, {})[shape] = running
        self._counts = counts
