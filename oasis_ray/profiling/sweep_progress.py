"""The progress line a sweep prints to its job log after every event and at least every 30 s while waiting.

The ETA is the remaining trial count over this run's observed trial rate.
A rate rather than a mean trial duration, because trials overlap across
devices: the rate already reflects how many run at once. Trials skipped as
finished by an earlier run count as done but not toward the rate.

An engine configuration that Ray has not placed yet is shown with what it
waits for and what the cluster has free, in Ray's resource names, so a sweep
stuck behind a busy cluster says so instead of looking slow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Ray turns an actor's accelerator_type option into this resource, asked for in this tiny amount.
ACCELERATOR_TYPE_PREFIX = "accelerator_type:"
ACCELERATOR_TYPE_DEMAND = 0.001


@dataclass
class SweepProgress:
    total: int
    skipped: int
    started_s: float
    finished: int = 0
    failed: int = 0
    running: list[str] = field(default_factory=list)

    def record(self, *, ok: bool) -> None:
        self.finished += 1
        self.failed += 0 if ok else 1

    def eta_s(self, now_s: float) -> float | None:
        """None until this run has finished a trial: no rate is known yet."""
        elapsed = now_s - self.started_s
        if self.finished == 0 or elapsed <= 0:
            return None
        remaining = self.total - self.skipped - self.finished
        return remaining * elapsed / self.finished

    def line(self, now_s: float) -> str:
        done = self.skipped + self.finished
        eta = self.eta_s(now_s)
        running = "; ".join(self.running) if self.running else "none"
        return (
            f"[sweep] {done}/{self.total} trials done ({self.skipped} from earlier runs, {self.failed} failed) | "
            f"elapsed {_duration(now_s - self.started_s)} | "
            f"ETA {_duration(eta) if eta is not None else 'unknown until a trial finishes'} | running: {running}"
        )


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def resource_demand(actor_options: Mapping[str, Any]) -> dict[str, float]:
    """What Ray waits for before placing an actor with these options, named as ray.available_resources() names it."""
    demand: dict[str, float] = {}
    if actor_options.get("num_cpus"):
        demand["CPU"] = float(actor_options["num_cpus"])
    if actor_options.get("num_gpus"):
        demand["GPU"] = float(actor_options["num_gpus"])
    if actor_options.get("accelerator_type"):
        demand[ACCELERATOR_TYPE_PREFIX + actor_options["accelerator_type"]] = ACCELERATOR_TYPE_DEMAND
    demand.update({name: float(amount) for name, amount in actor_options.get("resources", {}).items() if amount})
    return demand


def waiting_for(demand: Mapping[str, float], free: Mapping[str, float], total: Mapping[str, float]) -> str:
    """e.g. "CPU 1 (cluster free: CPU 0.1 of 2)"; a resource no node offers reads "of 0", the usual cause of a stall."""
    asked = ", ".join(f"{name} {_amount(amount)}" for name, amount in demand.items())
    available = ", ".join(
        f"{name} {_amount(free.get(name, 0.0))} of {_amount(total.get(name, 0.0))}" for name in demand
    )
    return f"{asked} (cluster free: {available})"


def _amount(value: float) -> str:
    """Ray's fractional bookkeeping leaves figures like 0.09999999999999987."""
    return f"{round(value, 3):g}"
