"""Fitting the GPU model's parameters to the published figures: bounded least squares on log errors.

Every figure in the target set that is not held out contributes
log(model / published); the parameters move inside bounds (each one maps to
an unbounded variable through a logistic), and a Levenberg-Marquardt loop
with a finite-difference Jacobian minimises the sum of squares, then the
same with a penalty on any figure's error past 20% (the target caps the
worst figure at 25%). Pure numpy, about a minute. Parameters that no
fitted figure depends on (a stack's latency spread where the stack
publishes no percentile) take the vLLM 0.6.3 value and say so in the
provenance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from oasis_ray.gpu_model.evaluate import model_values
from oasis_ray.gpu_model.model import GpuModel
from oasis_ray.gpu_model.params import PARAMS_SCHEMA_VERSION, GpuModelParams, Provenance
from oasis_ray.gpu_model.published import Figure, figures_digest, fitted, published_figures

MODEL_VERSION = "gpu_model v1"
FIT_COMMAND = "python -m oasis_ray.gpu_model fit"
_STACKS = ("vllm-0.4.2", "vllm-0.5.4", "vllm-0.6.3", "vllm-0.11.1")
_SPREAD_STACK = "vllm-0.6.3"
_A100, _H100 = "A100-SXM4-80GB", "H100-SXM"
_TREND = (("oasis:T3:0:power_w", "oasis:T3:2:power_w"),
          ("oasis:T3:0:output_tokens_per_s", "oasis:T3:2:output_tokens_per_s"),
          ("oasis:T8:0:mean_power_w", "oasis:T8:1:mean_power_w"))
_TREND_WEIGHT = 3.0
# Issue 10's cap on any one figure's error is 25%; least squares alone lets a few figures sit past it while the
# bulk fits. The last stage adds, per figure, a penalty on its error beyond _HINGE_ERROR, at _HINGE_WEIGHT.
_HINGE_ERROR = 0.20
_HINGE_WEIGHT = 5.0


@dataclass(frozen=True)
class Bound:
    path: tuple[str, ...]
    low: float
    high: float
    start: float


def _bounds() -> list[Bound]:
    bounds: list[Bound] = []
    for stack in _STACKS:
        bounds += [
            Bound(("stacks", stack, "flop_efficiency"), 0.05, 0.95, 0.45),
            Bound(("stacks", stack, "bandwidth_efficiency"), 0.3, 0.98, 0.8),
            Bound(("stacks", stack, "kv_bandwidth_efficiency"), 0.1, 0.98, 0.6),
            Bound(("stacks", stack, "host_step_s"), 0.0, 0.05, 0.003),
            Bound(("stacks", stack, "host_seq_s"), 0.0, 0.002, 0.0002),
            Bound(("stacks", stack, "gpu_step_s"), 0.0, 0.02, 0.001),
        ]
    bounds.append(Bound(("stacks", _SPREAD_STACK, "latency_sigma"), 0.0, 0.5, 0.05))
    for chip in ("GA100", "GH100"):
        bounds += [Bound(("chips", chip, "resident_w"), 0.0, 400.0, 60.0)] if chip == "GA100" else []
        bounds += [
            Bound(("chips", chip, "active_w"), 0.0, 500.0, 100.0),
            Bound(("chips", chip, "compute_w"), 0.0, 700.0, 100.0),
            Bound(("chips", chip, "memory_w"), 0.0, 400.0, 50.0),
            Bound(("chips", chip, "bandwidth_knee"), 0.2, 1.0, 0.7),
        ]
    bounds += [
        Bound(("clock_curve", "voltage_floor"), 0.4, 1.0, 0.7),
        Bound(("clock_curve", "knee"), 0.3, 0.9, 0.7),
        Bound(("clock_curve", "saturation_gap"), 0.01, 1.0, 0.5),
        Bound(("engine_fixed_share",), 0.0, 1.0, 0.3),
        Bound(("board_idle_w", "A100-SXM4-80GB"), 20.0, 150.0, 60.0),
        Bound(("board_idle_w", "A100-SXM4-40GB"), 20.0, 150.0, 55.0),
        Bound(("board_idle_w", "H100-SXM"), 30.0, 200.0, 80.0),
        Bound(("board_idle_w", "A100X-80GB"), 20.0, 250.0, 100.0),
        Bound(("workloads", "table3_concurrency"), 1.0, 128.0, 10.0),
        Bound(("workloads", "table5_concurrency_a100"), 1.0, 256.0, 16.0),
        Bound(("workloads", "table5_concurrency_h100"), 1.0, 256.0, 16.0),
        Bound(("workloads", "sharegpt_input_tokens"), 20.0, 2000.0, 200.0),
        Bound(("workloads", "lm_arena_input_tokens"), 20.0, 4000.0, 500.0),
        Bound(("workloads", "gpqa_input_tokens"), 20.0, 4000.0, 200.0),
    ]
    return bounds


def _to_values(bounds: list[Bound], z: np.ndarray) -> np.ndarray:
    return np.array([b.low + (b.high - b.low) * 0.5 * (1.0 + math.tanh(v / 2)) for b, v in zip(bounds, z)])


def _to_z(bounds: list[Bound], values: list[float]) -> np.ndarray:
    out = []
    for b, v in zip(bounds, values):
        share = min(max((v - b.low) / (b.high - b.low), 1e-6), 1 - 1e-6)
        out.append(math.log(share / (1 - share)))
    return np.array(out)


def assemble(bounds: list[Bound], values: np.ndarray, provenance: Provenance) -> GpuModelParams:
    """Parameters from a flat vector in `bounds` order."""
    tree: dict[str, Any] = {}
    for bound, value in zip(bounds, values):
        node = tree
        for key in bound.path[:-1]:
            node = node.setdefault(key, {})
        node[bound.path[-1]] = float(value)
    # No published figure shows an H100 engine at light load, so its resident power is not identified: it is
    # taken in the A100's proportion to the board's idle power.
    tree["chips"]["GH100"]["resident_w"] = (tree["chips"]["GA100"]["resident_w"] / tree["board_idle_w"][_A100]
                                            * tree["board_idle_w"][_H100])
    spread = tree["stacks"][_SPREAD_STACK]["latency_sigma"]
    for stack in _STACKS:
        tree["stacks"][stack].setdefault("latency_sigma", spread)
    curve = tree["clock_curve"]
    gap = curve.pop("saturation_gap")
    curve["saturation"] = curve["knee"] + (1.0 - curve["knee"]) * gap
    return GpuModelParams(
        schema_version=PARAMS_SCHEMA_VERSION, model_version=MODEL_VERSION, provenance=provenance,
        stacks=tree["stacks"], chips=tree["chips"], clock_curve=curve,
        engine_fixed_share=tree["engine_fixed_share"], board_idle_w=tree["board_idle_w"],
        workloads=tree["workloads"],
    )


_PLACEHOLDER = Provenance(fitted_by="(fitting)", figures_used=0, parameters_fitted=0, objective=math.nan,
                          figures_sha256="", note="")


def residuals(params: GpuModelParams, figures: list[Figure], hinge: bool = False) -> np.ndarray:
    """log(model / published) per figure (a figure the model cannot evaluate counts as a factor-e miss), then
    Table 3's 1320 -> 855 MHz ratios and Table 8's MIG / full-GPU power ratio, weighted: issue 10 makes that
    trend and that saving targets of their own, and a saving is the difference of two figures, so errors of a
    few percent on each, in opposite directions, leave it points off (they left Table 8's -12.4% at -19.6%).
    With `hinge`, each figure's error beyond _HINGE_ERROR is added again, weighted."""
    values = model_values(GpuModel(params), figures)
    by_id = {figure.figure_id: figure for figure in figures}
    out = []
    for figure in figures:
        model = values.get(figure.figure_id)
        out.append(math.log(model / figure.value) if model is not None and model > 0 else 1.0)
    for high, low in _TREND:
        model_high, model_low = values.get(high), values.get(low)
        if model_high and model_low and high in by_id and low in by_id:
            published = by_id[low].value / by_id[high].value
            out.append(_TREND_WEIGHT * math.log((model_low / model_high) / published))
    if hinge:
        errors = np.abs(np.exp(np.asarray(out[:len(figures)])) - 1.0)
        out.extend(_HINGE_WEIGHT * np.maximum(errors - _HINGE_ERROR, 0.0))
    return np.asarray(out)


def levenberg_marquardt(
    function: Callable[[np.ndarray], np.ndarray], start: np.ndarray, *, iterations: int = 80, step: float = 1e-3,
    tolerance: float = 1e-4,
    progress: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    z = start.copy()
    r = function(z)
    cost = float(r @ r)
    damping = 1e-2
    for iteration in range(iterations):
        jacobian = np.empty((len(r), len(z)))
        for j in range(len(z)):
            shifted = z.copy()
            shifted[j] += step
            jacobian[:, j] = (function(shifted) - r) / step
        gradient = jacobian.T @ r
        normal = jacobian.T @ jacobian
        before = cost
        for _ in range(16):
            trial = z - np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-9), gradient)
            trial_r = function(trial)
            trial_cost = float(trial_r @ trial_r)
            if trial_cost < cost:
                z, r, cost = trial, trial_r, trial_cost
                damping = max(damping / 3, 1e-7)
                break
            damping *= 4
        if progress is not None:
            progress(iteration, cost)
        if before - cost < tolerance * before:
            break
    return z


_POWER_QUANTITIES = {"power_w", "total_power_w", "mean_power_w", "energy_mj_per_token", "energy_j_per_token"}
_POWER_PARAMETERS = {"chips", "clock_curve", "engine_fixed_share", "board_idle_w"}


def _is_power_bound(bound: Bound) -> bool:
    return bound.path[0] in _POWER_PARAMETERS and bound.path[-1] != "bandwidth_knee"


def fit(progress: Callable[[int, float], None] | None = None) -> GpuModelParams:
    """Fit every parameter to the fitted figures, from the bounds' starting points.

    In four stages, because the joint problem has poor local minima: the
    performance parameters on the latency and throughput figures alone, then
    the power parameters on the power figures with performance fixed, then
    everything together from there; last, everything together again with a
    penalty on each figure's error beyond _HINGE_ERROR, since the target caps
    the worst figure and plain least squares trades a few figures past the
    cap for a smaller sum (it left three ML.ENERGY TPOTs at 26-29%).
    """
    bounds = _bounds()
    figures = [figure for figure in published_figures() if fitted(figure)]
    performance = [figure for figure in figures if figure.quantity not in _POWER_QUANTITIES]
    z = _to_z(bounds, [b.start for b in bounds])

    def stage(subset: list[Figure], free: np.ndarray, z: np.ndarray, hinge: bool = False) -> np.ndarray:
        def function(free_z: np.ndarray) -> np.ndarray:
            full = z.copy()
            full[free] = free_z
            return residuals(assemble(bounds, _to_values(bounds, full), _PLACEHOLDER), subset, hinge)

        out = z.copy()
        out[free] = levenberg_marquardt(function, z[free], progress=progress)
        return out

    power = np.array([_is_power_bound(b) for b in bounds])
    z = stage(performance, ~power, z)
    z = stage(figures, power, z)
    z = stage(figures, np.ones(len(bounds), dtype=bool), z)
    z = stage(figures, np.ones(len(bounds), dtype=bool), z, hinge=True)
    final = residuals(assemble(bounds, _to_values(bounds, z), _PLACEHOLDER), figures)
    provenance = Provenance(
        fitted_by=FIT_COMMAND, figures_used=len(figures), parameters_fitted=len(bounds),
        objective=float(final @ final), figures_sha256=figures_digest(),
        note=("bounded Levenberg-Marquardt on log(model/published) over the target set's fitted figures "
              "(OASIS Tables 1-7 and Table 8's full-GPU power; ML.ENERGY v0.4.2, v0.5.4 and v0.11.1 rows), plus "
              f"Table 3's 1320 -> 855 MHz power and throughput ratios and Table 8's MIG / full-GPU power ratio at "
              f"weight {_TREND_WEIGHT:g}; "
              "from the bounds' starting points, performance first, then power, then jointly, then jointly with "
              f"each figure's error beyond {_HINGE_ERROR:.0%} penalised at weight {_HINGE_WEIGHT:g} (issue 10 caps "
              "any one figure's error at 25%); "
              "latency_sigma is fitted on vLLM 0.6.3 (the only stack publishing P95) and copied to the others; "
              "GH100 resident_w is not fitted (no H100 figure at light load): it is GA100's resident_w in "
              "proportion to the boards' idle power"),
    )
    return assemble(bounds, _to_values(bounds, z), provenance)
