"""Energy arithmetic on NVML's total-energy counter: intervals, totals, per-request shares.

Pure functions and a small accumulator, with no NVML import, so the rules that
turn raw counter readings into joules per request can be tested exactly.
The guiding rule: an interval that cannot be measured is counted as lost,
never estimated, so every reported joule was actually metered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

MJ_PER_J = 1000


def measured_total(shares: Iterable[float | None]) -> float | None:
    """The sum of measured shares, or None if any is unknown or there are none: a partial sum would read low."""
    listed = list(shares)
    if not listed or any(share is None for share in listed):
        return None
    return math.fsum(share for share in listed if share is not None)


def counter_delta_mj(previous: int, current: int, *, wrap_at: int = 2**64) -> int | None:
    """Millijoules between two readings of a monotonic counter, or None if the interval is unknowable.

    The counter only goes down for two reasons, which look alike:
    - a wrap: it passed `wrap_at` and restarted from 0, so the true delta is
      `wrap_at - previous + current`;
    - a restart: the driver was reloaded (or the GPU reset) and the counter began
      again from 0 at some unknown moment, so the energy before the restart is gone.
    A wrap is assumed only when the wrapped delta is under half the counter's
    range (serial-number arithmetic, RFC 1982): a reading interval spanning half
    of a 64-bit millijoule counter is implausible, while a reset counter shows
    exactly such a huge apparent drop. A restart returns None rather than
    `current`, which would under-count by an unknown amount.
    """
    for name, value in (("previous", previous), ("current", current)):
        if not 0 <= value < wrap_at:
            raise ValueError(f"{name} counter reading {value} is outside [0, {wrap_at})")
    if current >= previous:
        return current - previous
    wrapped = wrap_at - previous + current
    return wrapped if wrapped < wrap_at // 2 else None


class EnergyMeter:
    """Accumulates measured energy from successive (timestamp, counter) readings.

    A reading of None (NVML failed at that instant) or a counter restart makes
    the intervals touching it lost: they are counted in `lost_intervals` and
    their seconds are left out of `seconds`, so `mean_power_w` is the mean over
    the time actually metered rather than diluted by gaps.
    """

    def __init__(self, *, wrap_at: int = 2**64) -> None:
        self._wrap_at = wrap_at
        self._last: tuple[float, int | None] | None = None
        self.total_j = 0.0
        self.seconds = 0.0
        self.measured_intervals = 0
        self.lost_intervals = 0

    def add(self, timestamp_s: float, counter_mj: int | None) -> float | None:
        """Feed the next reading; returns the joules of the interval it closes (None if lost or first)."""
        last = self._last
        if last is not None and timestamp_s <= last[0]:
            raise ValueError(f"readings must move forward in time: got {timestamp_s} after {last[0]}")
        self._last = (timestamp_s, counter_mj)
        if last is None:
            return None
        last_s, last_mj = last
        delta_mj = None
        if last_mj is not None and counter_mj is not None:
            delta_mj = counter_delta_mj(last_mj, counter_mj, wrap_at=self._wrap_at)
        if delta_mj is None:
            self.lost_intervals += 1
            return None
        energy_j = delta_mj / MJ_PER_J
        self.total_j += energy_j
        self.seconds += timestamp_s - last_s
        self.measured_intervals += 1
        return energy_j

    @property
    def last_timestamp_s(self) -> float | None:
        """The latest reading's time; a reading must come after it."""
        return None if self._last is None else self._last[0]

    @property
    def mean_power_w(self) -> float | None:
        """None until some interval is measured: no data is not 0 W."""
        return self.total_j / self.seconds if self.measured_intervals else None


def attribute_energy(energy_j: float, tokens_by_request: dict[str, int]) -> dict[str, float]:
    """Split one interval's energy across the requests served in it, in proportion to their tokens.

    Tokens are the work a batch shares, so they are the fair key for splitting a
    batch's energy. The shares must add back to the measured total, or per-request
    sums would drift from the meter; float rounding is therefore given to the
    largest share, where it is relatively smallest, so that `math.fsum` of the
    shares is `energy_j` to within one ulp (usually exactly). Zero tokens
    everywhere (requests admitted but not yet stepped) splits equally rather than
    dropping energy that was really spent.
    """
    if not math.isfinite(energy_j) or energy_j < 0:
        raise ValueError(f"energy_j must be a finite number >= 0, got {energy_j}")
    for request_id, tokens in tokens_by_request.items():
        if tokens < 0:
            raise ValueError(f"request {request_id!r} has negative tokens ({tokens})")
    if not tokens_by_request:
        return {}
    total_tokens = sum(tokens_by_request.values())
    if total_tokens == 0:
        weights = {request_id: 1 for request_id in tokens_by_request}
        total_tokens = len(weights)
    else:
        weights = tokens_by_request
    shares = {request_id: energy_j * weight / total_tokens for request_id, weight in weights.items()}
    largest = max(shares, key=shares.__getitem__)
    shares[largest] += math.fsum([energy_j, *(-share for share in shares.values())])
    return shares
