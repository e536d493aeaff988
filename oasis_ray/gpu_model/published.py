"""Every published serving figure the GPU model is fitted to or checked against, as typed records.

Two sources, each read here and nowhere else:

- the OASIS paper's tables (seed 000_6c81fe3db91cf355.txt), transcribed in
  `data/oasis_figures.json` with each table's stated conditions and, where
  the paper is silent, the assumption made and why;
- ML.ENERGY's measurements of vLLM on A100 and H100
  (`data/reference/*.csv`, copied from the project's reference folder with
  their licence and notice; J.-W. Chung et al., NeurIPS D&B 2025).

Each record is one number: its source (file and table, or file, row and the
source repository's path), the quantity and unit, the conditions as a
`scenario` the model can evaluate, the assumptions behind any condition the
source does not state, and, when it is kept out of the fit's target set,
the data-based reason.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.gpu_model.hardware import DATA_DIR

OASIS_FILE = DATA_DIR / "oasis_figures.json"
REFERENCE_DIR = DATA_DIR / "reference"
SEED = "seed 000_6c81fe3db91cf355.txt"

UNITS = {
    "throughput_rps": "req/s", "msrr_rps": "req/s", "p95_e2e_s": "s", "power_w": "W", "total_power_w": "W",
    "mean_power_w": "W", "output_tokens_per_s": "tok/s", "energy_mj_per_token": "mJ/tok",
    "energy_j_per_token": "J/tok", "energy_j_per_request": "J/req", "p99_latency_ms": "ms", "tpot_s": "s",
    "itl_p50_ms": "ms", "itl_p90_ms": "ms", "itl_p95_ms": "ms", "itl_p99_ms": "ms", "achieved_rps": "req/s",
    "latency_mean_s": "s", "completed_requests": "req", "ttft_mean_ms": "ms", "ttft_p99_ms": "ms",
    "e2e_mean_s": "s", "e2e_p99_s": "s", "energy_wh": "Wh", "energy_wh_per_request": "Wh/req",
    "daily_cost_usd": "USD/day", "daily_co2_kg": "kg/day",
}


class Figure(BaseModel):
    """One published number and the conditions it was measured under."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    figure_id: str
    case_id: str = Field(description="Figures of one case share one model evaluation (same scenario).")
    source: str
    quantity: str
    value: float
    unit: str
    scenario: dict[str, Any]
    assumptions: tuple[str, ...]
    excluded: str | None = Field(description="Why the figure is outside the fit's target set; None: in it.")
    held_out: str | None = Field(None, description="In the target set but not fitted: an out-of-sample check.")

    @property
    def conditions(self) -> str:
        keys = ("model", "device", "shape", "stack", "clock_mhz", "concurrency", "batch", "rate_rps", "workload",
                "input_tokens", "output_tokens", "tenant")
        scenario = dict(self.scenario)
        if scenario["kind"] in ("closed_loop", "msrr", "boards", "open_loop", "light_load"):
            scenario.setdefault("clock_mhz", "default")
            scenario.setdefault("batch", "max_num_seqs 256 (vLLM default, assumed)")
        parts = [f"{key}={scenario[key]}" for key in keys if scenario.get(key) is not None]
        return f"{scenario['kind']}: " + " ".join(parts)


@functools.cache
def published_figures() -> tuple[Figure, ...]:
    return (*_oasis_figures(), *_mlenergy_figures())


def figures_digest() -> str:
    """SHA-256 of the published figures' values and conditions: a fit names the data it saw."""
    payload = json.dumps([f.model_dump() for f in published_figures()], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _oasis_figures() -> list[Figure]:
    raw = json.loads(OASIS_FILE.read_text())
    figures: list[Figure] = []
    for group in raw["groups"]:
        excluded_group = group.get("excluded", {})
        for index, row in enumerate(group["figures"]):
            scenario = {**group["scenario"], **row.get("at", {})}
            excluded_row = row.get("excluded", {})
            held_out = row.get("held_out", {})
            case_id = f"oasis:{group['id']}:{index}"
            for quantity, value in row.items():
                if quantity in ("at", "excluded", "held_out"):
                    continue
                reason = (excluded_row.get(quantity) or excluded_row.get("*") or excluded_group.get(quantity)
                          or excluded_group.get("*"))
                figures.append(Figure(
                    figure_id=f"{case_id}:{quantity}", case_id=case_id,
                    source=f"{SEED}, {group['source']}", quantity=quantity, value=float(value),
                    unit=UNITS[quantity], scenario=scenario, assumptions=tuple(group["assumptions"]),
                    excluded=reason, held_out=held_out.get(quantity),
                ))
    return figures


_MODELS = {
    "meta-llama/Meta-Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b",
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b-v0.3",
    "mistralai/Mistral-7B-Instruct-v0.2": "mistral-7b-v0.2",
    "meta-llama/Llama-2-7b-chat-hf": "llama-2-7b",
    "Qwen/Qwen3-8B": "qwen3-8b",
}
_DEVICES = {"NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB", "NVIDIA H100 80GB HBM3": "H100-SXM", "H100": "H100-SXM"}
_H100_NOTE = (
    "GPU: H100-SXM. The source names 'H100' (V3) or 'H100 80GB HBM3' (V2) without the form factor; HBM3 and draws up "
    "to 690 W (V3) fit only the SXM part (the PCIe and NVL boards have HBM2e/HBM3 at 350-400 W limits)"
)
_SHAREGPT_NOTE = (
    "prompt length: not in the file; the rows share the 500-prompt ShareGPT set, so one mean prompt length is fitted "
    "for all of them (parameter sharegpt_input_tokens)"
)
_LITTLE_TOLERANCE = 0.25
_V3_SOURCES = {
    "mlenergy_v3_llama-3.1-8b-instruct_lm-arena-chat.csv":
        "ml-energy/leaderboard@0cd52da public/data/models/meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json",
    "mlenergy_v3_qwen3-8b_gpqa.csv": "ml-energy/leaderboard@0cd52da public/data/models/Qwen__Qwen3-8B__gpqa.json",
}
_NO_B200 = "B200 is outside the device catalogue (optional in issue 10)"
# Mean output tokens of the v0.5.4 rows of the same family, for the v0.4.2 file, which gives no token counts.
_V042_OUTPUT = {"llama-3-8b": 483.0, "mistral-7b-v0.2": 424.0, "llama-2-7b": 483.0}


def _rows(name: str) -> list[dict[str, str]]:
    with open(REFERENCE_DIR / name, newline="") as handle:
        return list(csv.DictReader(handle))


def _littles_law(row: dict[str, str]) -> str | None:
    """A steady state's running batch is its token rate x its time per token; say so where a row contradicts it."""
    batch = float(row["avg_batch_size_reqs"])
    implied = float(row["output_token_throughput_tok_per_s"]) * float(row["avg_tpot_s"])
    if abs(implied / batch - 1) <= _LITTLE_TOLERANCE:
        return None
    return (f"by Little's law throughput x TPOT is the running batch, but here it is {implied:.0f} against the "
            f"reported {batch:.0f} ({100 * (implied / batch - 1):+.0f}%): the mean TPOT and the throughput cannot "
            "describe the same steady state (the throughput is kept)")


def _mlenergy_figures() -> list[Figure]:
    figures: list[Figure] = []

    def add(file: str, index: int, row: dict[str, str], scenario: dict[str, Any], assumptions: list[str],
            values: dict[str, tuple[str, str | None]], excluded_all: str | None = None) -> None:
        where = row.get("source_file") or _V3_SOURCES[file]
        case_id = f"mlenergy:{file}:{index}"
        for quantity, (column, reason) in values.items():
            figures.append(Figure(
                figure_id=f"{case_id}:{quantity}", case_id=case_id,
                source=f"reference {file}, row {index + 1} ({where}; ML.ENERGY, Chung et al. 2025)",
                quantity=quantity, value=float(row[column]), unit=UNITS[quantity], scenario=scenario,
                assumptions=tuple(assumptions), excluded=excluded_all or reason,
            ))

    file = "mlenergy_v2_vllm054_maxbs_sweep_a100-40gb_h100.csv"
    for index, row in enumerate(_rows(file)):
        device = _DEVICES[row["gpu_model"]]
        scenario = {
            "kind": "saturated", "model": _MODELS[row["model_id"]], "device": device, "stack": "vllm-0.5.4",
            "batch": float(row["avg_batch_size_reqs"]), "workload": "ShareGPT chat (first turns)",
            "input_tokens": "fit:sharegpt_input_tokens",
            "output_tokens": float(row["avg_output_tokens"]),
        }
        assumptions = [
            "load: all requests sent at once, so the engine runs at its reported average batch with a queue behind it",
            _SHAREGPT_NOTE, "scheduling: standard (not chunked), assumed for vLLM 0.5.4",
        ] + ([_H100_NOTE] if device == "H100-SXM" else [])
        add(file, index, row, scenario, assumptions, {
            "output_tokens_per_s": ("output_token_throughput_tok_per_s", None),
            "power_w": ("derived_avg_power_watts", None),
            "energy_j_per_token": ("derived_energy_per_output_token_joules", None),
            "tpot_s": ("avg_tpot_s", _littles_law(row)),
            "energy_j_per_request": ("energy_per_request_joules", "J/token x the row's mean output length"),
        })

    for file, task, input_param in (
        ("mlenergy_v3_llama-3.1-8b-instruct_lm-arena-chat.csv", "lm-arena-chat", "lm_arena_input_tokens"),
        ("mlenergy_v3_qwen3-8b_gpqa.csv", "gpqa", "gpqa_input_tokens"),
    ):
        for index, row in enumerate(_rows(file)):
            b200 = row["gpu_model"] == "B200"
            scenario = {
                "kind": "saturated", "model": _MODELS[row["model_id"]],
                "device": "B200" if b200 else _DEVICES[row["gpu_model"]], "stack": "vllm-0.11.1",
                "batch": float(row["avg_batch_size"]), "workload": task, "input_tokens": f"fit:{input_param}",
                "output_tokens": float(row["avg_output_len"]),
            }
            assumptions = [
                "load: a fixed request set at max_num_seqs, steady state at the reported average batch",
                f"prompt length: not in the file; one mean prompt length per task is fitted ({input_param})",
                _H100_NOTE,
            ]
            distribution = "the model gives the decode step's time, not its distribution"
            add(file, index, row, scenario, assumptions, {
                "output_tokens_per_s": ("output_throughput_tokens_per_sec", None),
                "power_w": ("avg_power_watts", None),
                "energy_j_per_token": ("energy_per_token_joules", None),
                "itl_p50_ms": ("median_itl_ms", None),
                "itl_p90_ms": ("p90_itl_ms", distribution),
                "itl_p95_ms": ("p95_itl_ms", distribution),
                "itl_p99_ms": ("p99_itl_ms", distribution),
                "energy_j_per_request": ("energy_per_request_joules", "J/token x the row's mean output length"),
            }, excluded_all=_NO_B200 if b200 else None)

    file = "mlenergy_v2_vllm042_a100-40gb_chat_rate_sweep.csv"
    for index, row in enumerate(_rows(file)):
        model = _MODELS[row["model_id"]]
        scenario = {
            "kind": "open_loop", "model": model, "device": _DEVICES[row["gpu_model"]], "stack": "vllm-0.4.2",
            "rate_rps": float(row["request_rate_req_per_s"]), "requests": 500,
            "workload": "ShareGPT chat (first turns)",
            "input_tokens": "fit:sharegpt_input_tokens", "output_tokens": _V042_OUTPUT[model],
        }
        assumptions = [
            "load: Poisson arrivals at the offered rate; 500 requests (the ShareGPT_V3_filtered_500 prompt set), so "
            "the achieved rate counts the last requests' tail and, past saturation, a growing queue",
            _SHAREGPT_NOTE,
            f"output length: the file has no token counts; assumed {_V042_OUTPUT[model]:g} tokens, the mean of the "
            "v0.5.4 rows for the same prompts (Llama-3.1 for the Llama models, Mistral v0.3 for Mistral v0.2)",
            "scheduling: standard, vLLM 0.4.2's only mode by default; max_num_seqs 256",
        ]
        add(file, index, row, scenario, assumptions, {
            "achieved_rps": ("achieved_requests_per_s", None),
            "latency_mean_s": ("latency_per_request_s", None),
            "power_w": ("derived_avg_power_watts", None),
            "energy_j_per_request": ("energy_per_request_joules", "power / achieved rate (both in the target set)"),
        })
    return figures


def in_target(figure: Figure) -> bool:
    return figure.excluded is None


def fitted(figure: Figure) -> bool:
    return figure.excluded is None and figure.held_out is None
