"""Board power: the board's idle, plus each engine's resident and dynamic power.

P_board = idle(board) + sum over engines on the board of
    resident x phi(f) x (e + (1 - e) x compute_share)
  + busy x [phi(f) x compute_share x (active x gpu_active + compute x flop_util)
            + bandwidth_share x memory x mem_util]

- idle: the board with no engine loaded (MIG on or off): the pool's idle.
- resident: an engine loaded and its clocks up, nothing executing. A share
  `e` of it does not shrink with the slice (fitted: it is what makes a
  board with two busy slices draw more than one busy whole GPU, OASIS
  Tables 6-7), the rest scales with the slice's compute share.
- active / compute / memory: while kernels run (the busy time), in
  proportion to the share of the step the GPU executes, the share of the
  slice's peak FLOP rate used, and the share of its bandwidth used.
- phi(f) = (f/f_max) x V(f)^2 with V at a floor below a knee clock and 1
  above a saturation clock (ClockCurve): dynamic CMOS power.

A board holding several slices draws idle + sum over slices of (slice power
- idle), which is what `board_power` adds up.
"""

from __future__ import annotations

import numpy as np

from oasis_ray.gpu_model.engine import Steps
from oasis_ray.gpu_model.hardware import Shape
from oasis_ray.gpu_model.params import Chip, ClockCurve


def clock_factor(x: np.ndarray | float, curve: ClockCurve) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    knee, saturation, floor = curve.knee, max(curve.saturation, curve.knee + 1e-6), curve.voltage_floor
    ramp = floor + (1.0 - floor) * (x - knee) / (saturation - knee)
    voltage = np.where(x <= knee, floor, np.where(x >= saturation, 1.0, ramp))
    return x * voltage * voltage


def resident_power(chip: Chip, curve: ClockCurve, fixed_share: float, shape: Shape, x) -> np.ndarray:
    """An engine's draw over the board's idle with no request in it."""
    share = fixed_share + (1.0 - fixed_share) * shape.compute_share
    return chip.resident_w * clock_factor(x, curve) * share


def engine_power(
    chip: Chip, curve: ClockCurve, fixed_share: float, shape: Shape, x, steps: Steps, busy=None
) -> np.ndarray:
    """An engine's draw over the board's idle at the load `steps` describes."""
    busy = steps.busy if busy is None else busy
    phi = clock_factor(x, curve)
    dynamic = (phi * shape.compute_share * (chip.active_w * steps.gpu_active + chip.compute_w * steps.flop_util)
               + shape.bandwidth_share * chip.memory_w * steps.mem_util)
    return resident_power(chip, curve, fixed_share, shape, x) + busy * dynamic
