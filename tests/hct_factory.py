"""Small, clearly synthetic cost tables for tests of the code that reads them.

The figures are chosen by the test, not measured; tests that need a measured
table run the profiling job instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from oasis_ray.profiling.hct import HCT_SCHEMA_VERSION, HardwareCostTable, HctMetadata, HctRow, write_hct
from oasis_ray.profiling.sweep_spec import LoadSettings, SearchSettings, SloSpec

NAN = math.nan


def hct_row(*, model_id: str, hardware_kind: str, query_type: str, msrr_req_s: float, **overrides: Any) -> HctRow:
    mig_profile = overrides.pop("mig_profile", None)
    fields: dict[str, Any] = {
        "trial_id": f"{model_id}-{hardware_kind}-{mig_profile}-{query_type}-{overrides.get('max_num_seqs', 4)}",
        "run_id": "synthetic", "provenance": "derived", "provenance_note": "synthetic test figures",
        "status": "ok", "error": None, "model_id": model_id, "model_source": "synthetic",
        "hardware_kind": hardware_kind, "hardware": mig_profile or hardware_kind, "accelerator_type": None,
        "mig_profile": mig_profile, "num_cpus": 1.0, "device_name": None, "driver_version": None,
        "clock_mhz": None, "clock_locked": False, "clock_note": None, "max_num_seqs": 4, "variant": "standard",
        "query_type": query_type, "input_tokens": 100, "output_tokens": 10, "slo_p95_e2e_s": 5.0,
        "slo_feasible": msrr_req_s > 0, "msrr_req_s": msrr_req_s, "msrr_output_tokens_per_s": msrr_req_s * 10,
        "msrr_concurrency": 4 if msrr_req_s > 0 else None, "msrr_capped": False,
        "e2e_p50_s": 1.0, "e2e_p95_s": 2.0 if msrr_req_s > 0 else 9.0, "e2e_p99_s": 3.0,
        "ttft_p50_s": 0.1, "ttft_p95_s": 0.2, "ttft_p99_s": 0.3, "tpot_p50_s": 0.01, "tpot_p95_s": 0.02,
        "tpot_p99_s": 0.03, "power_available": False, "power_note": "synthetic", "mean_power_w": NAN,
        "energy_per_token_j": NAN, "sm_clock_mhz": NAN, "engine_idle_power_w": NAN,
        "engine_idle_power_note": "synthetic", "search_mode": "bisection", "load_points": 5,
        "search_wall_s": 1.0, "engine_start_s": 1.0, "started_at": "2026-11-21T00:00:00Z",
        "finished_at": "2026-11-21T00:00:01Z",
    }
    fields.update(overrides)
    return HctRow(**fields)


def write_table(directory: Path, rows: list[HctRow]) -> Path:
    metadata = HctMetadata(
        schema_version=HCT_SCHEMA_VERSION, spec_name="synthetic", spec_hash="0" * 12,
        created_at="2026-11-21T00:00:00Z", sweep_mode="grid", slo=SloSpec(p95_e2e_s=5.0), load=LoadSettings(),
        search=SearchSettings(), trials=len(rows), failed_trials=0, device_names=[], driver_versions=[],
        vllm_version="synthetic", ray_version="synthetic", oasis_ray_version="synthetic", python_version="3.11",
    )
    return write_hct(HardwareCostTable.from_models(rows, [], metadata), directory)
