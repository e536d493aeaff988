"""Several nodes' energy intervals as one stream of ledger closes.

Each node's sampler closes intervals on its own schedule, but the ingress's
EnergyLedger wants one meter: one sequence of (end time, joules). A close is
made at the earliest "latest end" over the nodes, so every joule it carries was
metered by then; each node interval goes into the first close at or after its
end. With one node this is that node's intervals unchanged; with several, a
node's joules can land one close late (at most one sample period), and none is
counted twice or dropped. A close is unmeasured (None) if any interval in it
was: a partial sum would pass for a low figure.
"""

from __future__ import annotations

from collections.abc import Iterable

from oasis_ray.telemetry.energy import measured_total
from oasis_ray.telemetry.gpu_sampler import EnergyInterval


class NodeIntervalMerger:
    def __init__(self, nodes: Iterable[str]) -> None:
        self._pending: dict[str, list[EnergyInterval]] = {node: [] for node in nodes}
        if not self._pending:
            raise ValueError("nodes: at least one sampled node is needed to meter anything")
        self._latest_end: dict[str, float] = {}
        self._last_close_s: float | None = None

    def add(self, node: str, interval: EnergyInterval) -> None:
        if node not in self._pending:
            raise KeyError(f"node: {node!r} is not one of the sampled nodes {sorted(self._pending)}")
        self._pending[node].append(interval)
        self._latest_end[node] = interval.t_end_s

    def closes(self) -> list[tuple[float, float | None]]:
        """The closes now complete, as (end time, joules or None); empty until every node has reported."""
        if len(self._latest_end) < len(self._pending):
            return []
        t_end = min(self._latest_end.values())
        if self._last_close_s is not None and t_end <= self._last_close_s:
            return []
        shares: list[float | None] = []
        for node, intervals in self._pending.items():
            shares.extend(interval.total_j for interval in intervals if interval.t_end_s <= t_end)
            self._pending[node] = [interval for interval in intervals if interval.t_end_s > t_end]
        self._last_close_s = t_end
        return [(t_end, measured_total(shares))]
