"""The power-over-time figure of a what-if simulation, after the OASIS paper's Figure 1.

Power per policy over the trace, averaged per `average_s` so second-scale
noise does not hide the shape, with the GPUs each policy held below it (whole and partitioned alike):
the difference between the lines is where the energy goes. Built as a
matplotlib Figure without pyplot, so it can be drawn anywhere (CLI, notebook,
test) and written by the caller.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from oasis_ray.planning.simulator import SimRun

SECONDS_PER_MINUTE = 60.0


def power_over_time_figure(runs: list[SimRun], title: str, average_s: float = SECONDS_PER_MINUTE) -> Figure:
    fig = Figure(figsize=(11, 6.5), layout="constrained")
    power_axes, device_axes = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    for run in runs:
        minutes, power = _averaged(run.power_w, run.bin_s, average_s)
        _, devices = _averaged(run.gpus_held, run.bin_s, average_s)
        result = run.result
        label = (f"{result.policy}: {result.energy_wh:,.0f} Wh, SLO {result.slo_attainment_requests:.1%} of requests, "
                 f"{result.slo_attainment_windows:.0%} of {result.slo_window_s:g} s windows")
        power_axes.plot(minutes, power, label=label, linewidth=1.2)
        device_axes.plot(minutes, devices, label=result.policy, linewidth=1.2)
    power_axes.set_title(title)
    power_axes.set_ylabel(f"power (W, {average_s:g} s mean)")
    power_axes.grid(alpha=0.3)
    power_axes.legend(fontsize=8, loc="upper right")
    device_axes.set_ylabel("GPUs held")
    device_axes.set_xlabel("time since the first request (minutes)")
    device_axes.grid(alpha=0.3)
    return fig


def _averaged(per_bin: np.ndarray, bin_s: float, average_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Means over consecutive groups of bins; the last group may be shorter. Unknown (NaN) power stays NaN."""
    group = max(1, round(average_s / bin_s))
    groups = math.ceil(len(per_bin) / group)
    padded = np.zeros(groups * group)
    padded[: len(per_bin)] = per_bin
    sizes = np.full(groups, group)
    sizes[-1] = len(per_bin) - (groups - 1) * group
    means = padded.reshape(groups, group).sum(axis=1) / sizes
    return np.arange(groups) * group * bin_s / SECONDS_PER_MINUTE, means
