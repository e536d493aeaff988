"""Per-request energy for the ingress: tokens in, node intervals in, each request's joules out once settled.

Glue between the EnergyLedger (which splits a meter's intervals over the
tokens served in them) and the nodes' samplers (NodeIntervalMerger makes
their intervals one meter). A request's tokens are counted when they are
known to the ingress: a JSON answer's input and output tokens when it
completes, a stream's input tokens at its first token and its output tokens
when it ends. So attribution is to the sample period in which a request's
work was seen, not the engine step that did it.

The energy of a request is known only after the interval it ended in closes,
so a caller that wants it in the response (the x-oasis-energy-j header)
awaits `energy_of` with a timeout, and gets None both for "not measured" and
"not settled in time"; the metric still records the figure when it comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from oasis_ray.query_types import QueryType
from oasis_ray.telemetry.energy_ledger import EnergyLedger
from oasis_ray.telemetry.energy_merge import NodeIntervalMerger
from oasis_ray.telemetry.gpu_sampler import EnergyInterval


@dataclass(frozen=True)
class EnergyOwner:
    """Whom a settled figure is reported for: the request's labels and its span's carrier."""

    model: str
    query_type: QueryType
    route: str
    trace_carrier: dict[str, str] = field(default_factory=dict)


class RequestEnergy:
    def __init__(self, nodes: Iterable[str], on_settled: Callable[[EnergyOwner, float | None], None]) -> None:
        self._ledger = EnergyLedger()
        self._merger = NodeIntervalMerger(nodes)
        self._on_settled = on_settled
        self._owners: dict[str, EnergyOwner] = {}
        self._waiters: dict[str, asyncio.Future[float | None]] = {}

    def served(self, request_id: str, tokens: int, t: float) -> None:
        self._ledger.add_tokens(request_id, tokens, t)

    def finish(self, request_id: str, owner: EnergyOwner, *, awaited: bool = False) -> None:
        """No more tokens will come; with `awaited`, the caller will ask `energy_of` for the figure."""
        self._owners[request_id] = owner
        if awaited:
            self._waiters[request_id] = asyncio.get_running_loop().create_future()
        self._ledger.finish(request_id)

    def add_interval(self, node: str, interval: EnergyInterval) -> None:
        self._merger.add(node, interval)
        for t_end, energy_j in self._merger.closes():
            for settled in self._ledger.close_interval(t_end, energy_j):
                owner = self._owners.pop(settled.request_id, None)
                if owner is not None:
                    self._on_settled(owner, settled.energy_j)
                waiter = self._waiters.get(settled.request_id)
                if waiter is not None and not waiter.done():
                    waiter.set_result(settled.energy_j)

    async def energy_of(self, request_id: str, timeout_s: float) -> float | None:
        """The joules of a request finished with `awaited`; None if unmeasured or not settled within `timeout_s`."""
        waiter = self._waiters[request_id]
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiters.pop(request_id, None)

    @property
    def unattributed_j(self) -> float:
        return self._ledger.unattributed_j
