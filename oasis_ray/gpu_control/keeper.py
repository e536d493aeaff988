"""One node's GPU settings held as leases: applied when a replica asks, restored when it stops or dies.

A replica cannot be trusted to undo its own setting: an engine crash or a
SIGKILL ends the process that set it, and a GPU left at 855 MHz or at a low
power limit would slow whatever the scheduler puts there next. So the setting
belongs to a keeper (one per node, a Ray actor in deployments/gpu_keeper.py
hosts this class), and the replica only holds a lease on it: it renews the
lease every few seconds, carrying the setting it wants now (its route's
target may change), and releases it when it stops. A lease not renewed for
`ttl_s` is taken as its holder's death, and the keeper restores the GPU.

Modes: `apply` sets the GPU through NVML; `advisory` touches nothing and
records what would be set, so logs and the status view can say it. A MIG
slice's clock and power limit are its parent GPU's, shared with every other
slice, so a replica on a slice never changes them; its lease says so.
A GPU is set by one holder at a time; a second holder is refused, naming the first.

No Ray here, and NVML only through the module passed in (pynvml, or the unit
tests' fake), so every exit path is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pynvml
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.device_setting import DeviceSetting, DeviceState, LeaseStatus
from oasis_ray.gpu_control import nvml_settings
from oasis_ray.gpu_control.devices import DeviceTarget, resolve_visible
from oasis_ray.gpu_control.nvml_settings import Undo
from oasis_ray.telemetry.nvml import NvmlReader, NvmlUnavailable

logger = logging.getLogger("ray.serve")

# A holder renews every RENEW_PERIOD_S; a lease unrenewed for LEASE_TTL_S is its holder's death.
RENEW_PERIOD_S = 2.0
LEASE_TTL_S = 15.0



class LeaseRequest(BaseModel):
    """What a replica asks of its node's keeper when it starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holder: str = Field(min_length=1, description="The replica's Ray actor id.")
    app: str
    route: str
    shape: str
    mode: Literal["apply", "advisory"]
    setting: DeviceSetting
    visible_ids: tuple[str, ...] = Field(description="The GPUs Ray gave the replica on this node, as CUDA sees them.")
    no_gpu_reason: str | None = Field(None, description="Why the replica holds no GPU here (a CPU replica).")


@dataclass
class _Lease:
    request: LeaseRequest
    setting: DeviceSetting
    expires_s: float
    status: LeaseStatus
    # GPU uuid -> NVML index, for the GPUs this lease changed.
    changed: dict[str, int] = field(default_factory=dict)


class SettingsKeeper:
    def __init__(self, nvml: ModuleType | None = None, *, ttl_s: float = LEASE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s: must be > 0, got {ttl_s}")
        self._nvml: Any = pynvml if nvml is None else nvml
        self._ttl_s = ttl_s
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        # GPU uuid -> (holder, what to undo on it).
        self._held: dict[str, tuple[str, Undo]] = {}
        self._warned: set[tuple[str, str]] = set()

    def acquire(self, request: LeaseRequest) -> LeaseStatus:
        """Take (or, for a holder that has one, renew) a lease and act on its setting; the status says what happened."""
        if request.holder in self._leases:
            status = self.renew(request.holder, request.setting)
            assert status is not None
            return status
        lease = _Lease(request=request, setting=request.setting, expires_s=self._clock() + self._ttl_s,
                       status=_empty_status(request))
        self._leases[request.holder] = lease
        self._act(lease)
        return lease.status

    def renew(self, holder: str, setting: DeviceSetting) -> LeaseStatus | None:
        """Extend the lease and move to `setting` if it changed; None for an unknown holder, which must acquire."""
        lease = self._leases.get(holder)
        if lease is None:
            return None
        lease.expires_s = self._clock() + self._ttl_s
        if setting != lease.setting:
            lease.setting = setting
            self._act(lease)
        return lease.status

    def release(self, holder: str) -> bool:
        """The holder is stopping: restore its GPUs now. False if it held no lease (already expired or released)."""
        lease = self._leases.pop(holder, None)
        if lease is None:
            return False
        self._restore(lease, "released by its replica")
        return True

    def expire(self) -> list[str]:
        """Restore the GPUs of every lease not renewed within ttl_s (its holder is taken as dead); their holders."""
        now = self._clock()
        gone = [holder for holder, lease in self._leases.items() if lease.expires_s <= now]
        for holder in gone:
            lease = self._leases.pop(holder)
            self._restore(lease, f"not renewed for {self._ttl_s:g} s, so its replica is taken as dead")
        return gone

    def release_all(self) -> None:
        """The keeper itself is stopping: nothing it set may outlive it."""
        for holder in list(self._leases):
            self.release(holder)

    def statuses(self) -> list[LeaseStatus]:
        return [lease.status for lease in self._leases.values()]

    def _act(self, lease: _Lease) -> None:
        request = lease.request
        try:
            with self._session() as reader:
                targets = resolve_visible(list(request.visible_ids), reader.sample_all())
                states = [self._on_device(lease, target) for target in targets]
        except NvmlUnavailable as error:
            states = [DeviceState(gpu=None, state="unavailable", note=self._no_gpu(request, str(error)))]
        except (pynvml.NVMLError, ValueError) as error:
            states = [DeviceState(gpu=None, state="unavailable", note=f"NVML could not resolve the GPUs: {error}")]
        if not states:
            states = [DeviceState(gpu=None, state="unavailable", note=self._no_gpu(request, None))]
        lease.status = lease.status.model_copy(update={"setting": lease.setting, "devices": tuple(states)})
        logger.info("oasis gpu-settings %s", lease.status.line())

    def _on_device(self, lease: _Lease, target: DeviceTarget) -> DeviceState:
        request, setting = lease.request, lease.setting
        if target.is_mig_slice:
            return DeviceState(gpu=target.label(), state="shared",
                               note="a MIG slice: the clock and power limit are the parent GPU's, shared with "
                                    "its other slices, so they are left as they are")
        if request.mode == "advisory":
            return DeviceState(gpu=target.label(), state="advisory", note="clock_control is advisory: nothing set")
        owner = self._held.get(target.uuid)
        if owner is not None and owner[0] != request.holder:
            return DeviceState(gpu=target.label(), state="refused",
                               note=f"the GPU's settings are held by replica {owner[0][:12]}")
        undo = owner[1] if owner else Undo()
        handle = self._nvml.nvmlDeviceGetHandleByIndex(target.index)
        undo, results = nvml_settings.apply(self._nvml, handle, setting, undo)
        if undo.nothing:
            self._held.pop(target.uuid, None)
            lease.changed.pop(target.uuid, None)
        else:
            self._held[target.uuid] = (request.holder, undo)
            lease.changed[target.uuid] = target.index
        refused = [result for result in results if not result.applied]
        for result in refused:
            if (target.uuid, result.knob) not in self._warned:
                self._warned.add((target.uuid, result.knob))
                logger.warning("oasis gpu-settings: cannot set %s=%d on %s: %s; serving on at the GPU's own setting",
                               result.knob, result.value, target.label(), result.note)
        if refused:
            return DeviceState(gpu=target.label(), state="refused", note="; ".join(r.note or "" for r in refused))
        return DeviceState(gpu=target.label(), state="default" if setting.is_default else "set")

    def _restore(self, lease: _Lease, why: str) -> None:
        """Each GPU on its own, so one that cannot be reached does not keep the others at the lease's setting."""
        for uuid, index in lease.changed.items():
            _, undo = self._held.pop(uuid)
            try:
                with self._session():
                    nvml_settings.restore(self._nvml, self._nvml.nvmlDeviceGetHandleByIndex(index), undo)
            except (NvmlUnavailable, pynvml.NVMLError) as error:
                logger.error("oasis gpu-settings: could not restore GPU %d (%s) of route %s (lease %s): %s",
                             index, uuid, lease.request.route, why, error)
                continue
            logger.info("oasis gpu-settings: restored GPU %d (%s) of route %s: lease %s",
                        index, uuid, lease.request.route, why)
        lease.changed.clear()

    @contextlib.contextmanager
    def _session(self) -> Iterator[NvmlReader]:
        with NvmlReader(self._nvml) as reader:
            yield reader

    @staticmethod
    def _no_gpu(request: LeaseRequest, nvml_reason: str | None) -> str:
        parts = [request.no_gpu_reason or ("no GPU" if not request.visible_ids else None),
                 f"NVML: {nvml_reason}" if nvml_reason else None]
        return "; ".join(part for part in parts if part) or "no GPU"


def _empty_status(request: LeaseRequest) -> LeaseStatus:
    return LeaseStatus(holder=request.holder, app=request.app, route=request.route, shape=request.shape,
                       mode=request.mode, setting=request.setting, devices=())
