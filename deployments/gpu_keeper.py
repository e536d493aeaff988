"""One GPU-settings keeper per node, a detached Ray actor, so it outlives the replicas whose settings it restores.

The lease logic is oasis_ray.gpu_control.keeper.SettingsKeeper; this actor
only hosts it on the node whose GPUs it sets (NVML sees only local GPUs),
checks for expired leases every second, and is found by name: replicas
create it on first use, the ingress's observer reads its leases for the
status view. It takes no CPU. Restarted by Ray after a crash it starts with
no leases; replicas renewing a lease it no longer knows acquire it anew
(the power limit it then restores is the one it finds, which may be the
crashed keeper's own setting).
"""

from __future__ import annotations

import asyncio
import atexit

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from autoscaling.decision_board import NAMESPACE
from oasis_ray.device_setting import DeviceSetting
from oasis_ray.device_setting import LeaseStatus
from oasis_ray.gpu_control.keeper import LeaseRequest, SettingsKeeper

KEEPER_PREFIX = "oasis-gpu-keeper:"
EXPIRY_CHECK_S = 1.0
# How long a replica's exit waits for its keeper to confirm the release.
RELEASE_TIMEOUT_S = 2.0


@ray.remote(num_cpus=0, max_restarts=-1)
class NodeGpuKeeper:
    def __init__(self) -> None:
        self._keeper = SettingsKeeper()
        self._watcher: asyncio.Task | None = None
        atexit.register(self._keeper.release_all)

    def _watch(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._expire_forever())

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            self._keeper.expire()

    async def acquire(self, request: LeaseRequest) -> LeaseStatus:
        self._watch()
        return self._keeper.acquire(request)

    async def renew(self, holder: str, setting: DeviceSetting) -> LeaseStatus | None:
        self._watch()
        return self._keeper.renew(holder, setting)

    async def release(self, holder: str) -> bool:
        return self._keeper.release(holder)

    async def statuses(self) -> list[LeaseStatus]:
        return self._keeper.statuses()


def keeper_on(node_id: str) -> ray.actor.ActorHandle:
    """The node's keeper, created there on first use."""
    return NodeGpuKeeper.options(
        name=f"{KEEPER_PREFIX}{node_id}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
    ).remote()


def find_keepers() -> list[ray.actor.ActorHandle]:
    """Every node's keeper that exists (a blocking GCS call)."""
    names = [actor["name"] for actor in ray.util.list_named_actors(all_namespaces=True)
             if actor.get("namespace") == NAMESPACE and actor["name"].startswith(KEEPER_PREFIX)]
    return [ray.get_actor(name, namespace=NAMESPACE) for name in names]


class RayKeeperClient:
    """oasis_ray.gpu_control.holder.KeeperClient over a keeper actor."""

    def __init__(self, handle: ray.actor.ActorHandle) -> None:
        self._handle = handle

    async def acquire(self, request: LeaseRequest) -> LeaseStatus:
        return await self._handle.acquire.remote(request)

    async def renew(self, holder: str, setting: DeviceSetting) -> LeaseStatus | None:
        return await self._handle.renew.remote(holder, setting)

    async def release(self, holder: str) -> bool:
        return await self._handle.release.remote(holder)

    def release_blocking(self, holder: str) -> None:
        ray.get(self._handle.release.remote(holder), timeout=RELEASE_TIMEOUT_S)
