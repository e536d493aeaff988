"""The status view's GPU lines: each GPU's latest power and its metered energy over the recent window.

Fed the same (reading, interval) pairs the samplers publish. A GPU's window
energy is the sum of its interval deltas that lie inside the window, and None
(shown as "unavailable") when any of them was lost or none was metered yet:
never a partial sum that would read as a quiet GPU.
"""

from __future__ import annotations

from collections import deque

from oasis_ray.telemetry.energy import measured_total
from oasis_ray.telemetry.gpu_sampler import EnergyInterval, GpuReading
from oasis_ray.telemetry.nvml import GpuSample
from oasis_ray.telemetry.status_view import GpuStatus


class GpuWindow:
    def __init__(self, window_s: float) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s: must be > 0, got {window_s}")
        self._window_s = window_s
        self._latest: dict[str, list[GpuSample]] = {}
        self._intervals: dict[str, deque[EnergyInterval]] = {}

    def add(self, node: str, reading: GpuReading, interval: EnergyInterval) -> None:
        self._latest[node] = reading if isinstance(reading, list) else []
        self._intervals.setdefault(node, deque()).append(interval)

    def statuses(self, now_s: float) -> list[GpuStatus]:
        horizon = now_s - self._window_s
        statuses = []
        for node, samples in sorted(self._latest.items()):
            intervals = self._intervals[node]
            while intervals and intervals[0].t_end_s < horizon:
                intervals.popleft()
            inside = [i for i in intervals if i.t_start_s is not None and i.t_start_s >= horizon]
            for sample in samples:
                statuses.append(GpuStatus(
                    node=node, index=sample.index, name=sample.name, power_w=sample.power_w,
                    energy_j=measured_total(i.energy_j_by_gpu.get(sample.uuid) for i in inside),
                ))
        return statuses
