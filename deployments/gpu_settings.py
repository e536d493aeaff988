"""A route replica's GPU setting: taken before its engine starts, followed while it serves, given back when it stops.

Ray Serve LLM calls an LLMConfig's callback in the replica's process before
the engine starts (`on_before_node_init`); that is where the lease is taken.
Which GPUs are the replica's own is asked of Ray in its own placement group:
a zero-CPU task in each GPU bundle reports its node and the GPU ids Ray gave
it, which the node's keeper maps to NVML devices by UUID
(oasis_ray.gpu_control.devices). The lease is renewed every few seconds with
the route's current target (the autoscaler publishes one on the app's
decision board when it changes a clock), and released in the server's
destructor, which Serve calls when it stops the replica; SIGTERM and crashes
are covered by the holder's exit hook and the keeper's TTL
(oasis_ray.gpu_control.holder).

A failure to take the lease never stops the replica: it is logged and the
engine starts at the GPU's own setting.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.llm._internal.common.callbacks.base import CallbackBase
from ray.serve.llm import LLMServer
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from autoscaling.decision_board import find_board
from deployments.gpu_keeper import RayKeeperClient, keeper_on
from oasis_ray.device_setting import ClockControl, DeviceSetting
from oasis_ray.gpu_control.holder import KeeperClient, LeaseHolder, install_exit_release
from oasis_ray.gpu_control.keeper import LeaseRequest

logger = logging.getLogger("ray.serve")

# The holders of this process (one replica per process), which the server's destructor releases, and their
# renewal tasks (held so they are not collected). Kept here, not on the callback: Ray Serve LLM pickles the
# LLMConfig, and the callback with it, after the callback ran.
_HOLDERS: list[LeaseHolder] = []
_RENEWALS: list[asyncio.Task] = []


class ReplicaSettings(BaseModel):
    """What a shape's replicas are told at build time; only the whole-unit shape follows the autoscaler's target
    (`follows_targets`), since a MIG slice never changes its parent's setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: ClockControl
    route: str
    shape: str
    setting: DeviceSetting
    follows_targets: bool


def _visible_gpus() -> tuple[str, list[str]]:
    return ray.get_runtime_context().get_node_id(), [str(gpu) for gpu in ray.get_gpu_ids()]


async def _gpus_by_node(placement_group: Any) -> dict[str, list[str]]:
    """The GPU ids Ray gave each GPU bundle of the replica's placement group, by node."""
    if placement_group is None:
        return {}
    probe = ray.remote(_visible_gpus)
    by_node: dict[str, list[str]] = {}
    for index, bundle in enumerate(placement_group.bundle_specs):
        if bundle.get("GPU", 0) <= 0:
            continue
        strategy = PlacementGroupSchedulingStrategy(placement_group, placement_group_bundle_index=index)
        node, ids = await probe.options(num_cpus=0, num_gpus=0.001, scheduling_strategy=strategy).remote()
        by_node.setdefault(node, []).extend(ids)
    return by_node


class GpuSettingsCallback(CallbackBase):
    """Ray Serve LLM's start hook, so the lease is taken before the engine starts and no request runs unset."""

    def __init__(self, llm_config: Any, raise_error_on_callback: bool = True,
                 ctx_kwargs: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(llm_config, raise_error_on_callback, ctx_kwargs, **kwargs)
        self.settings = ReplicaSettings.model_validate(settings)

    async def on_before_node_init(self) -> None:
        if self.settings.mode == "off":
            return
        try:
            holder = LeaseHolder(self.settings.mode, await self._leases(), RouteTarget(self.settings).current)
            await holder.start()
        except Exception:
            logger.warning("oasis gpu-settings: could not take the GPU-settings lease for route %s; the engine "
                           "starts at the GPU's own setting", self.settings.route, exc_info=True)
            return
        _HOLDERS.append(holder)
        install_exit_release(holder)
        _RENEWALS.append(asyncio.get_running_loop().create_task(holder.run(asyncio.Event())))

    async def _leases(self) -> list[tuple[KeeperClient, LeaseRequest]]:
        settings = self.settings
        by_node = await _gpus_by_node(self.ctx.placement_group)
        no_gpu = None
        if not by_node:
            by_node = {ray.get_runtime_context().get_node_id(): []}
            no_gpu = f"the replica holds no GPU (shape {settings.shape})"
        mode = "apply" if settings.mode == "apply" else "advisory"
        common = {"holder": ray.get_runtime_context().get_actor_id(), "app": serve.get_replica_context().app_name,
                  "route": settings.route, "shape": settings.shape, "mode": mode, "setting": settings.setting,
                  "no_gpu_reason": no_gpu}
        return [(RayKeeperClient(keeper_on(node)), LeaseRequest(visible_ids=tuple(ids), **common))
                for node, ids in by_node.items()]


class RouteTarget:
    """The autoscaler's current setting for a route, read off the app's decision board."""

    def __init__(self, settings: ReplicaSettings) -> None:
        self._settings = settings
        self._board: Any = None

    async def current(self) -> DeviceSetting | None:
        """For whole-GPU replicas only; None (keep the start setting) until the policy has chosen one."""
        if not self._settings.follows_targets:
            return None
        if self._board is None:
            self._board = await asyncio.to_thread(find_board, serve.get_replica_context().app_name)
            if self._board is None:
                return None
        try:
            return await self._board.setting.remote(self._settings.route)
        except Exception:
            self._board = None
            raise


async def release_process_settings() -> None:
    """Give back every lease this process holds; the keeper restores the GPUs at once."""
    while _HOLDERS:
        holder = _HOLDERS.pop()
        try:
            await holder.release()
        except Exception:
            logger.warning("oasis gpu-settings: release failed; the keeper restores after its TTL", exc_info=True)


class OasisLLMServer(LLMServer):
    """Ray Serve LLM's server, plus giving the GPU setting back when Serve stops the replica."""

    async def __del__(self) -> None:
        try:
            await super().__del__()
        finally:
            await release_process_settings()
