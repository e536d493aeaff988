"""The model's value for each published figure: the figure's scenario, run through GpuModel.

One function per scenario kind; each returns every quantity its case can
answer, so the figures of one case share one evaluation. A quantity the
model does not produce is simply absent, and the report prints it as
unmodelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from oasis_ray.gpu_model.engine import Engine, Query
from oasis_ray.gpu_model.hardware import FULL
from oasis_ray.gpu_model.model import GpuModel
from oasis_ray.gpu_model.published import Figure

# The paper's profiling lengths; SISO is not profiled there, 50/50 is assumed (oasis_figures.json, T8).
PAPER_LENGTHS = {"SISO": (50.0, 50.0), "LISO": (1000.0, 50.0), "SILO": (50.0, 1000.0), "LILO": (1000.0, 1000.0)}
_OPEN_LOOP_GRID = np.geomspace(0.01, 256.0, 400)


def model_values(model: GpuModel, figures: list[Figure]) -> dict[str, float]:
    """figure_id -> model value, for every figure the model can evaluate."""
    by_case: dict[str, list[Figure]] = {}
    for figure in figures:
        by_case.setdefault(figure.case_id, []).append(figure)
    values: dict[str, float] = {}
    for case in by_case.values():
        scenario = _resolved(model, case[0].scenario)
        kind = scenario["kind"]
        if kind not in _KINDS or scenario.get("device") not in model.params.board_idle_w:
            continue
        answers = _KINDS[kind](model, scenario)
        for figure in case:
            if figure.quantity in answers and np.isfinite(answers[figure.quantity]):
                values[figure.figure_id] = float(answers[figure.quantity])
    return values


def _resolved(model: GpuModel, scenario: dict[str, Any]) -> dict[str, Any]:
    """Replace `fit:<name>` conditions by the fitted workload parameter of that name."""
    workloads = model.params.workloads
    return {key: workloads[value[4:]] if isinstance(value, str) and value.startswith("fit:") else value
            for key, value in scenario.items()}


def _engine(gpu: GpuModel, scenario: dict[str, Any], **overrides: Any):
    return gpu.engine(
        overrides.get("model", scenario.get("model")), scenario["device"],
        shape_name=overrides.get("shape", scenario.get("shape", FULL)), stack=scenario["stack"],
        clock_mhz=scenario.get("clock_mhz"), max_num_seqs=overrides.get("max_num_seqs"),
    )


def _query(scenario: dict[str, Any]) -> Query:
    return Query(float(scenario["input_tokens"]), float(scenario["output_tokens"]))


def _closed_loop(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    query = _query(scenario)
    result = model.evaluate(_engine(model, scenario), query, [float(scenario["concurrency"])])
    throughput = float(result.steps.throughput_rps[0])
    power = float(result.power_w[0])
    return {
        "throughput_rps": throughput, "p95_e2e_s": float(result.steps.p95_s[0]), "power_w": power,
        "output_tokens_per_s": throughput * query.output_tokens,
        "energy_mj_per_token": 1000 * power / (throughput * query.output_tokens),
    }


def _msrr(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    query = _query(scenario)
    engine = _engine(model, scenario)
    level = model.msrr_level(engine, query, float(scenario["slo_p95_e2e_s"]))
    if level is None:
        return {"msrr_rps": 0.0, "output_tokens_per_s": 0.0}
    at = model.evaluate(engine, query, [level])
    throughput = float(at.steps.throughput_rps[0])
    power = float(at.power_w[0])
    return {
        "msrr_rps": throughput, "output_tokens_per_s": throughput * query.output_tokens, "power_w": power,
        "energy_mj_per_token": 1000 * power / (throughput * query.output_tokens),
    }


def _boards(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    query = _query(scenario)
    results = [
        model.evaluate(_engine(model, scenario, model=tenant["model"], shape=tenant["shape"]), query,
                       [float(scenario["concurrency"])])
        for tenant in scenario["tenants"]
    ]
    idle = model.idle_w(scenario["device"])
    boards = 1 if scenario.get("one_board") else len(results)
    answers = {"total_power_w": boards * idle + sum(float(r.engine_power_w[0]) for r in results)}
    if "tenant" in scenario:
        mine = results[int(scenario["tenant"])]
        answers |= {"throughput_rps": float(mine.steps.throughput_rps[0]), "p95_e2e_s": float(mine.steps.p95_s[0])}
    return answers


def _saturated(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    query = _query(scenario)
    batch = float(scenario["batch"])
    engine = _engine(model, scenario, max_num_seqs=max(1, int(np.ceil(batch))))
    result = model.evaluate(engine, query, [batch], kv_limited=False)
    steps = result.steps
    tokens_per_s = float(steps.throughput_rps[0]) * query.output_tokens
    power = float(result.power_w[0])
    tpot = float((steps.latency_mean_s[0] - steps.ttft_s[0]) / max(query.output_tokens - 1, 1))
    return {
        "output_tokens_per_s": tokens_per_s, "power_w": power, "energy_j_per_token": power / tokens_per_s,
        "tpot_s": tpot, "itl_p50_ms": 1000 * float(steps.decode_step_s[0]),
    }


def _open_loop(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    """Poisson arrivals at `rate_rps` for `requests` requests: the level whose throughput equals the rate."""
    query = _query(scenario)
    engine = _engine(model, scenario)
    rate, requests = float(scenario["rate_rps"]), float(scenario["requests"])
    grid = model.evaluate(engine, query, np.minimum(_OPEN_LOOP_GRID, engine.max_num_seqs))
    throughput = grid.steps.throughput_rps
    peak = int(np.argmax(throughput))
    capacity = float(throughput[peak])
    if rate < capacity:
        level = float(np.interp(rate, throughput[:peak + 1], grid.steps.concurrency[:peak + 1]))
        latency = level / rate
        achieved = requests / (requests / rate + latency)
    else:
        level = float(grid.steps.concurrency[peak])
        serving = float(grid.steps.latency_mean_s[peak])
        latency = serving + requests / 2 * (1 / capacity - 1 / rate)
        achieved = requests / (requests / capacity + serving)
    power = float(model.evaluate(engine, query, [level]).power_w[0])
    return {"achieved_rps": achieved, "latency_mean_s": latency, "power_w": power}


def light_load_power(model: GpuModel, engine: Engine, requests_per_hour: float, mix: dict[str, float]) -> float:
    """A trace far below capacity: the engine idles between requests, each served alone (concurrency 1)."""
    idle_engine = model.engine_idle_power_w(engine)
    rate = requests_per_hour / 3600
    power = idle_engine
    for query_type, share in mix.items():
        one = model.evaluate(engine, Query(*PAPER_LENGTHS[query_type]), [1.0])
        busy = rate * share * float(one.steps.latency_mean_s[0])
        power += busy * (float(one.power_w[0]) - idle_engine)
    return power


def _light_load(model: GpuModel, scenario: dict[str, Any]) -> dict[str, float]:
    power = light_load_power(model, _engine(model, scenario), float(scenario["requests_per_hour"]), scenario["mix"])
    return {"mean_power_w": power}


_KINDS: dict[str, Callable[[GpuModel, dict[str, Any]], dict[str, float]]] = {
    "closed_loop": _closed_loop, "msrr": _msrr, "boards": _boards, "saturated": _saturated,
    "open_loop": _open_loop, "light_load": _light_load,
}
