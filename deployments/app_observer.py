"""The ingress's background loop: what the GPUs, the autoscaler and Serve say, turned into metrics and status.

Every sample period it reads new publications from the node samplers (GPU
gauges, energy intervals for per-request attribution, the status view's GPU
lines), new decisions from the app's decision board (the scaling metric and
the status view's last decisions), and the running replicas per route and
shape (the replicas gauge); every few seconds, the GPU-settings leases the
node keepers hold for this app's replicas (the status view's GPU settings).
A reader that fails is logged and retried next
period; a sampler that cannot be read counts as a lost interval, so requests
served meanwhile settle as unmeasured instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from autoscaling.decision_board import find_board
from deployments.gpu_keeper import find_keepers
from deployments.gpu_sampling import start_node_samplers
from oasis_ray.device_setting import LeaseStatus
from deployments.running_replicas import RunningReplicas
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.telemetry.gpu_sampler import EnergyInterval, unavailable
from oasis_ray.telemetry.gpu_window import GpuWindow
from oasis_ray.telemetry.instruments import DisabledTelemetry, Telemetry
from oasis_ray.telemetry.request_energy import EnergyOwner, RequestEnergy

logger = logging.getLogger("ray.serve")

# Decisions the status view shows.
RECENT_DECISIONS = 10
# GPU settings change at replica starts and clock decisions only; their list is read this often.
KEEPER_READ_PERIOD_S = 3.0


class AppObserver:
    def __init__(
        self,
        app_name: str,
        telemetry: Telemetry | DisabledTelemetry,
        running: RunningReplicas,
        period_s: float,
        window_s: float,
    ) -> None:
        self._app_name = app_name
        self._telemetry = telemetry
        self._running = running
        self._period_s = period_s
        self._samplers = start_node_samplers(period_s)
        self._sampler_sequence = dict.fromkeys(self._samplers, 0)
        self.energy = RequestEnergy(self._samplers, self._report_energy)
        self.gpus = GpuWindow(window_s)
        self.decisions: deque[ScalingRecord] = deque(maxlen=RECENT_DECISIONS)
        self._board = None
        self._board_sequence = 0
        self.gpu_settings: list[LeaseStatus] = []
        self._keepers_read_at = float("-inf")
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _report_energy(self, owner: EnergyOwner, energy_j: float | None) -> None:
        self._telemetry.record_request_energy(
            owner.model, owner.query_type, owner.route, energy_j, parent=self._telemetry.extract(owner.trace_carrier)
        )

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            for step in (self._read_samplers, self._read_board, self._export_replicas, self._read_keepers):
                try:
                    await step()
                except Exception:
                    logger.warning("oasis ingress: %s failed; retrying next period", step.__name__, exc_info=True)
            await asyncio.sleep(max(0.0, self._period_s - (time.monotonic() - started)))

    async def _read_samplers(self) -> None:
        for node, sampler in self._samplers.items():
            try:
                publications = await asyncio.wait_for(sampler.since.remote(self._sampler_sequence[node]),
                                                      timeout=self._period_s * 5)
            except Exception as error:
                logger.warning("oasis ingress: GPU sampler on node %s unreadable: %r", node, error)
                self._telemetry.update_gpu(node, unavailable(f"the node's sampler cannot be read ({error!r})"))
                self.energy.add_interval(node, EnergyInterval(None, time.time(), {}))
                continue
            for sequence, reading, interval in publications:
                self._sampler_sequence[node] = sequence
                self._telemetry.update_gpu(node, reading)
                self.gpus.add(node, reading, interval)
                self.energy.add_interval(node, interval)

    async def _read_board(self) -> None:
        if self._board is None:
            self._board = await asyncio.to_thread(find_board, self._app_name)
            if self._board is None:
                return
        try:
            posted = await self._board.since.remote(self._board_sequence)
        except Exception:
            self._board = None
            raise
        for sequence, record in posted:
            self._board_sequence = sequence
            self._telemetry.record_scaling(record)
            self.decisions.append(record)

    async def _read_keepers(self) -> None:
        if time.monotonic() - self._keepers_read_at < KEEPER_READ_PERIOD_S:
            return
        self._keepers_read_at = time.monotonic()
        keepers = await asyncio.to_thread(find_keepers)
        leases = [status for keeper in keepers
                  for status in await asyncio.wait_for(keeper.statuses.remote(), timeout=self._period_s * 5)]
        self.gpu_settings = [status for status in leases if status.app == self._app_name]

    async def _export_replicas(self) -> None:
        for route, shapes in self._running.all_counts().items():
            for shape, count in shapes.items():
                self._telemetry.set_replicas(route, shape, count)
