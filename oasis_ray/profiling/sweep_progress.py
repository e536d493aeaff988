"""The progress line a sweep prints to its job log after every trial.

The ETA is the remaining trial count over this run's observed trial rate.
A rate rather than a mean trial duration, because trials overlap across
devices: the rate already reflects how many run at once. Trials skipped as
finished by an earlier run count as done but not toward the rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
