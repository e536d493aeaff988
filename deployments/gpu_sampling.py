"""One NVML sampler per node, as a Ray actor the ingress starts and reads.

The ingress can run on any node, but NVML only sees the GPUs of its own, so
the sampler runs where the GPUs are: one zero-CPU actor pinned to each node
that has Ray GPUs. On a cluster with none it still runs one, on the
ingress's node, so that power and energy read "unavailable" with NVML's own
reason rather than with no reason at all. The actors belong to the ingress
replica that started them and die with it.
"""

from __future__ import annotations

import asyncio
from collections import deque

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from oasis_ray.telemetry.gpu_sampler import EnergyInterval, GpuReading, GpuSampler

# Publications kept for a reader that falls behind: minutes at the default 1 s period.
HISTORY = 600

Publication = tuple[int, GpuReading, EnergyInterval]


@ray.remote(num_cpus=0, max_restarts=3)
class NodeGpuSampler:
    def __init__(self, period_s: float) -> None:
        self._sampler = GpuSampler(period_s=period_s)
        self._published: deque[Publication] = deque(maxlen=HISTORY)
        self._sequence = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _publish(self, reading: GpuReading, interval: EnergyInterval) -> None:
        self._sequence += 1
        self._published.append((self._sequence, reading, interval))

    async def since(self, sequence: int) -> list[Publication]:
        """Publications after `sequence`, oldest first; the first call starts sampling.

        A reader ahead of this actor's count has outlived a restart of it, and gets everything kept.
        """
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sampler.run(self._publish, self._stop))
        if sequence > self._sequence:
            sequence = 0
        return [p for p in self._published if p[0] > sequence]


def gpu_node_ids() -> list[str]:
    return [node["NodeID"] for node in ray.nodes() if node.get("Alive") and node["Resources"].get("GPU", 0) > 0]


def start_node_samplers(period_s: float) -> dict[str, ray.actor.ActorHandle]:
    """Samplers by node id: every GPU node's, or the caller's own node's when the cluster has no GPU."""
    nodes = gpu_node_ids() or [ray.get_runtime_context().get_node_id()]
    return {
        node: NodeGpuSampler.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(period_s)
        for node in nodes
    }
