"""Per-request energy from per-interval GPU energy: which requests' tokens fall in each interval, and their shares.

The GPU meters energy per sampling interval, not per request, so the ingress
records when each request's tokens were served and, as each interval's
measured energy arrives, splits it over that interval's tokens with
`attribute_energy`. Every measured joule is either attributed to a request or
kept as `unattributed_j` (the GPU idled or served nothing the ledger saw), so
attributed plus unattributed always equals what the meter measured.

A request's energy is reported only when all of it is known: tokens that fall
in an unmeasured interval (NVML down, counter restart), or arrive for an
interval that has already been split, make its energy None rather than a
smaller figure that would pass for a complete one.

Time is the caller's: token times and interval ends must come from the same
clock (wall time across processes, as GpuSample.timestamp_s is). One ledger
serves one meter: the GPUs whose summed energy is closed into it must be the
GPUs that served the requests registered in it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from oasis_ray.telemetry.energy import attribute_energy


@dataclass(frozen=True)
class SettledEnergy:
    """A finished request whose energy is final: joules, or None when some of its work was not measured."""

    request_id: str
    energy_j: float | None


@dataclass
class _Account:
    energy_j: float = 0.0
    measured: bool = False
    unmeasured: bool = False
    finished: bool = False
    pending: list[tuple[float, int]] = field(default_factory=list)

    def energy(self) -> float | None:
        if self.unmeasured or not self.measured or self.pending:
            return None
        return self.energy_j


class EnergyLedger:
    """Requests register tokens as served, intervals close with measured energy, finished requests settle.

    Close an interval every sample period even when nothing was measured
    (energy None): that is what settles the requests served meanwhile, and so
    what keeps the ledger from growing.
    """

    def __init__(self) -> None:
        self._accounts: dict[str, _Account] = {}
        self._last_close_s: float | None = None
        self.unattributed_j = 0.0
        self.measured_j = 0.0

    def add_tokens(self, request_id: str, tokens: int, t: float) -> None:
        """`tokens` served to the request at time `t` (input tokens at the first output, then each chunk's tokens)."""
        if tokens < 0:
            raise ValueError(f"tokens: request {request_id!r} got a negative count ({tokens})")
        account = self._accounts.setdefault(request_id, _Account())
        if account.finished:
            raise ValueError(f"request_id: {request_id!r} was finished; it cannot be served more tokens")
        if self._last_close_s is not None and t <= self._last_close_s:
            account.unmeasured = True
        else:
            account.pending.append((t, tokens))

    def finish(self, request_id: str) -> None:
        """No more tokens will come; the request settles at the first close that leaves it nothing pending."""
        self._accounts.setdefault(request_id, _Account()).finished = True

    def close_interval(self, t_end: float, energy_j: float | None) -> list[SettledEnergy]:
        """Split the energy measured up to `t_end` (None: unmeasured) over the tokens served by then.

        Returns the finished requests this close settles; they are then
        forgotten, so each is reported exactly once.
        """
        if energy_j is not None and not (math.isfinite(energy_j) and energy_j >= 0):
            raise ValueError(f"energy_j: must be a finite number >= 0 or None, got {energy_j}")
        if self._last_close_s is not None and t_end <= self._last_close_s:
            raise ValueError(f"t_end: intervals must move forward, got {t_end} after {self._last_close_s}")
        self._last_close_s = t_end
        served = self._take_served(t_end)
        if energy_j is not None:
            self.measured_j += energy_j
            self._split(energy_j, served)
        else:
            for request_id in served:
                self._accounts[request_id].unmeasured = True
        return self._settle()

    def energy_for(self, request_id: str) -> float | None:
        """Joules so far if every token registered is in a closed, measured interval; None otherwise.

        Raises KeyError for a request the ledger does not hold (never seen, or already settled).
        """
        return self._accounts[request_id].energy()

    def __len__(self) -> int:
        return len(self._accounts)

    def _take_served(self, t_end: float) -> dict[str, int]:
        served: dict[str, int] = {}
        for request_id, account in self._accounts.items():
            if not account.pending:
                continue
            due = [tokens for t, tokens in account.pending if t <= t_end]
            if due:
                account.pending = [(t, tokens) for t, tokens in account.pending if t > t_end]
                served[request_id] = sum(due)
        return served

    def _split(self, energy_j: float, served: dict[str, int]) -> None:
        if not served:
            self.unattributed_j += energy_j
            return
        for request_id, share_j in attribute_energy(energy_j, served).items():
            account = self._accounts[request_id]
            account.energy_j += share_j
            account.measured = True

    def _settle(self) -> list[SettledEnergy]:
        settled = [
            SettledEnergy(request_id, account.energy())
            for request_id, account in self._accounts.items()
            if account.finished and not account.pending
        ]
        for record in settled:
            del self._accounts[record.request_id]
        return settled
