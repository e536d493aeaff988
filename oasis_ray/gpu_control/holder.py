"""The replica's side of a GPU-settings lease: take it at start, renew it with the current target, give it back.

The keeper (keeper.py) does the setting and the restoring; a replica only
says what it wants and that it is alive. Every exit path ends in a restore:

- normal stop: Serve calls the replica's destructor, which releases (`release`);
- SIGTERM: the process exits through SystemExit, and the atexit hook releases
  (`release_at_exit`; Ray's workers already turn SIGTERM into SystemExit, and
  `install_exit_release` does so where nothing has);
- a crash (engine death, SIGKILL, OOM): nothing runs in the replica, the
  renewals stop, and the keeper restores after its TTL.

The keeper is reached through `KeeperClient`, so the Ray actor (deployments/
gpu_keeper.py) and an in-process keeper in the unit tests are driven by the
same code. With clock_control `off` the holder does nothing and says nothing.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol

from oasis_ray.device_setting import ClockControl, DeviceSetting
from oasis_ray.device_setting import LeaseStatus
from oasis_ray.gpu_control.keeper import RENEW_PERIOD_S, LeaseRequest

logger = logging.getLogger("ray.serve")

TargetSource = Callable[[], Awaitable[DeviceSetting | None]]
"""The route's current target (the autoscaler's), or None to keep the replica's own setting."""


class KeeperClient(Protocol):
    async def acquire(self, request: LeaseRequest) -> LeaseStatus: ...

    async def renew(self, holder: str, setting: DeviceSetting) -> LeaseStatus | None: ...

    async def release(self, holder: str) -> bool: ...

    def release_blocking(self, holder: str) -> None:
        """For atexit, where no event loop runs: send the release and wait briefly."""
        ...


class LeaseHolder:
    def __init__(self, mode: ClockControl, leases: list[tuple[KeeperClient, LeaseRequest]],
                 target: TargetSource | None = None) -> None:
        """`leases`: one per node the replica holds GPUs on (its own node when it holds none); empty when off."""
        if mode != "off" and not leases:
            raise ValueError("leases: at least one keeper and request unless clock_control is off")
        self._mode = mode
        self._leases = leases
        self._target = target
        self._base = leases[0][1].setting if leases else DeviceSetting()
        self._setting = self._base
        self._released = False
        self.statuses: list[LeaseStatus] = []

    @property
    def active(self) -> bool:
        return self._mode != "off" and not self._released

    async def start(self) -> None:
        """Acquire on every keeper and log what each did (or, in advisory mode, would do)."""
        if not self.active:
            return
        self.statuses = [await keeper.acquire(request) for keeper, request in self._leases]
        for status in self.statuses:
            logger.info("oasis gpu-settings %s", status.line())

    async def renew_once(self) -> None:
        """Renew with the current target; a keeper that lost the lease (restarted) gets it acquired anew."""
        if not self.active:
            return
        wanted = (await self._target()) if self._target else None
        setting = wanted or self._base
        changed = setting != self._setting
        self._setting = setting
        statuses = []
        for keeper, request in self._leases:
            status = await keeper.renew(request.holder, setting)
            if status is None:
                status = await keeper.acquire(request.model_copy(update={"setting": setting}))
                changed = True
            statuses.append(status)
        self.statuses = statuses
        if changed:
            for status in statuses:
                logger.info("oasis gpu-settings %s", status.line())

    async def run(self, stop: asyncio.Event, period_s: float = RENEW_PERIOD_S) -> None:
        """Renew every period until stopped or released; a failed renewal is logged and retried next period."""
        while self.active and not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=period_s)
                return
            except TimeoutError:
                pass
            try:
                await self.renew_once()
            except Exception:
                logger.warning("oasis gpu-settings: lease renewal failed; retrying", exc_info=True)

    async def release(self) -> None:
        if not self.active:
            return
        self._released = True
        for keeper, request in self._leases:
            await keeper.release(request.holder)

    def release_at_exit(self) -> None:
        """The atexit path: no event loop to await on, so each keeper is told synchronously."""
        if not self.active:
            return
        self._released = True
        for keeper, request in self._leases:
            try:
                keeper.release_blocking(request.holder)
            except Exception:
                logger.warning("oasis gpu-settings: release at exit failed; the keeper restores after its TTL",
                               exc_info=True)


def install_exit_release(holder: LeaseHolder) -> None:
    """Release at interpreter exit, and make SIGTERM an exit where the process left it fatal (Ray's workers do not)."""
    atexit.register(holder.release_at_exit)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
