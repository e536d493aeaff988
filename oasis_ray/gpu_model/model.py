"""The GPU model as one object: engines from names, their load curves, their power, the board's power cap.

`GpuModel(params)` is what the fit, the fit report and the table builder
share, so a figure in the report and a row in the table come from the same
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oasis_ray.gpu_model.engine import Engine, Query, Steps, closed_loop
from oasis_ray.gpu_model.hardware import FULL, architecture, device, shape
from oasis_ray.gpu_model.params import GpuModelParams
from oasis_ray.gpu_model.power import engine_power, resident_power
from oasis_ray.gpu_model.stacks import stack_facts

CONCURRENCY_GRID = np.arange(1, 1025, dtype=float)
_CAP_ITERATIONS = 12


@dataclass(frozen=True)
class Evaluation:
    """An engine's load curve and power at each level; `power_w` is the board's, the rest of it idle."""

    steps: Steps
    engine_power_w: np.ndarray
    idle_w: float
    clock_fraction: np.ndarray

    @property
    def power_w(self) -> np.ndarray:
        return self.idle_w + self.engine_power_w


class GpuModel:
    def __init__(self, params: GpuModelParams) -> None:
        self.params = params

    def engine(
        self, model_id: str, device_name: str, *, shape_name: str = FULL, stack: str = "vllm-0.6.3",
        clock_mhz: float | None = None, max_num_seqs: int | None = None, chunked_prefill: bool | None = None,
    ) -> Engine:
        facts = stack_facts(stack)
        if stack not in self.params.stacks:
            raise ValueError(f"stack: '{stack}' has no fitted parameters (fitted: {sorted(self.params.stacks)})")
        board = device(device_name)
        return Engine(
            arch=architecture(model_id), board=board, shape=shape(board, shape_name), stack=self.params.stacks[stack],
            facts=facts, chip=self.params.chips[board.chip], clock_mhz=clock_mhz,
            max_num_seqs=facts.default_max_num_seqs if max_num_seqs is None else max_num_seqs,
            chunked_prefill=facts.chunked_prefill if chunked_prefill is None else chunked_prefill,
        )

    def idle_w(self, device_name: str) -> float:
        if device_name not in self.params.board_idle_w:
            raise ValueError(f"device: '{device_name}' has no fitted idle power")
        return self.params.board_idle_w[device_name]

    def engine_idle_power_w(self, engine: Engine) -> float:
        """The board with this engine loaded and no request: idle plus the engine's resident power."""
        chip = self.params.chips[engine.board.chip]
        resident = resident_power(chip, self.params.clock_curve, self.params.engine_fixed_share, engine.shape,
                                  engine.clock_fraction)
        return self.idle_w(engine.board.name) + float(resident)

    def evaluate(self, engine: Engine, query: Query, concurrency, *, kv_limited: bool = True) -> Evaluation:
        """Load curve and power at each concurrency; where the board would pass its power limit, the clock drops."""
        c = np.atleast_1d(np.asarray(concurrency, dtype=float))
        x = np.full(c.shape, engine.clock_fraction)
        steps, power = self._at(engine, query, c, x, kv_limited)
        idle = self.idle_w(engine.board.name)
        over = idle + power > engine.board.power_limit_w
        if over.any():
            low, high = np.full(c.shape, 0.2), x.copy()
            for _ in range(_CAP_ITERATIONS):
                middle = np.where(over, (low + high) / 2, x)
                _, trial = self._at(engine, query, c, middle, kv_limited)
                fits = idle + trial <= engine.board.power_limit_w
                low = np.where(over & fits, middle, low)
                high = np.where(over & ~fits, middle, high)
            x = np.where(over, low, x)
            steps, power = self._at(engine, query, c, x, kv_limited)
        return Evaluation(steps=steps, engine_power_w=power, idle_w=idle, clock_fraction=x)

    def _at(self, engine: Engine, query: Query, c: np.ndarray, x: np.ndarray, kv_limited: bool):
        steps = closed_loop(engine, query, c, clock_fraction=x, kv_limited=kv_limited)
        chip = self.params.chips[engine.board.chip]
        power = engine_power(chip, self.params.clock_curve, self.params.engine_fixed_share, engine.shape, x, steps)
        return steps, power

    def msrr_level(self, engine: Engine, query: Query, slo_p95_e2e_s: float) -> float | None:
        """The (fractional) concurrency at which P95 reaches the SLO; None when one request alone misses it.

        Continuous in the parameters, which the fit needs; past the engine's
        saturation the throughput is flat, so the MSRR is the throughput there.
        """
        grid = self.evaluate(engine, query, CONCURRENCY_GRID)
        p95 = grid.steps.p95_s
        if p95[0] > slo_p95_e2e_s:
            return None
        above = np.flatnonzero(p95 > slo_p95_e2e_s)
        if not above.size:
            return float(CONCURRENCY_GRID[-1])
        i = int(above[0])
        return float(np.interp(slo_p95_e2e_s, p95[i - 1:i + 1], CONCURRENCY_GRID[i - 1:i + 1]))

    def msrr(self, engine: Engine, query: Query, slo_p95_e2e_s: float) -> tuple[int | None, Evaluation]:
        """Index into CONCURRENCY_GRID of the highest throughput whose P95 meets the SLO (None: never), and the grid."""
        grid = self.evaluate(engine, query, CONCURRENCY_GRID)
        meets = grid.steps.p95_s <= slo_p95_e2e_s
        if not meets.any():
            return None, grid
        throughput = np.where(meets, grid.steps.throughput_rps, -np.inf)
        return int(np.argmax(throughput)), grid
