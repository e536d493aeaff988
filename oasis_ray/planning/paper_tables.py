"""An example hardware cost table after the OASIS paper, to try the planner and simulator with no GPU.

VALUES FROM THE PAPER, NOT MEASURED HERE. Every row's `run_id` and the
table's `spec_name` say so, and each row's `trial_id` starts with `paper:`
when its MSRR is the paper's published figure and with `placeholder:` when
it is not. Measure your own table (profiling_jobs.sweep) before trusting a
plan with money.

From the OASIS paper (Optimal Allocation Strategy for Inference Services):

- Llama-3-8B, LISO, one full A100: MSRR 4.54 requests/s.
- The SLO (P95 end-to-end latency 20 s) and the query lengths (small 50,
  large 1,000 tokens; tau 500), as `oasis_ray.profiling.sweep_spec` already uses them.

Placeholders, not from the paper: every other number. They are generated
from the small model below so that they are ordered the way the paper
describes its findings (smaller MIG slices serve less and draw less, lower
clocks save power and lose throughput, long outputs are the slowest type),
but their magnitudes are ours:

- MSRRs of the other query types, of Qwen-7B, of MIG slices and of other
  clocks, batch sizes and variants;
- every latency, TTFT/TPOT, load point and power figure, and the idle power.

The model behind the placeholders is a closed loop at concurrency c:
throughput X*c/(c+h) and median latency (c+h)/X, so the latency of an
open-loop rate r is h/(X-r), the hockey stick real engines show. X and h are
solved from two numbers per (model, query type, shape, configuration): the
MSRR and the latency at concurrency 1. P95 and P99 are fixed multiples of
the median. Power is idle plus a dynamic part that grows with batch
occupancy (1 - exp(-c/6)) and falls with the clock as (f/f_max)^1.5.

MIG rows' power is the parent GPU's draw while only that slice is busy (the
only reading NVML gives); `oasis_ray.costs.curves` charges a slice its
share of the GPU's idle power plus that reading's dynamic part. MIG slices
have no clock rows: a locked clock applies to the whole GPU. 1g.10gb is
left out because an 8B model in bf16 (about 16 GB) does not fit in 10 GB.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from oasis_ray.profiling.hct import (
    HCT_SCHEMA_VERSION,
    HardwareCostTable,
    HctMetadata,
    HctRow,
    LoadPointRow,
    msrr_columns,
)
from oasis_ray.planning.inventory import DevicePool, Inventory, Prices
from oasis_ray.query_types import QueryType
from oasis_ray.profiling.sweep_spec import PAPER_QUERY_LENGTHS, LoadSettings, SearchSettings, SloSpec, Variant

PAPER_RUN_ID = "paper-values-not-measured-here"
NOT_MEASURED = "n/a (paper values, not measured here)"
PAPER_SLO_P95_E2E_S = 20.0
PAPER_LLAMA_LISO_FULL_A100_MSRR = 4.54

ACCELERATOR = "A100"
MIG_GEOMETRY = "A100-80GB"
MAX_CLOCK_MHZ = 1410
# None is the default (boost) clock; the others are supported A100 SM clocks (15 MHz steps from 210).
CLOCKS_MHZ: tuple[int | None, ...] = (None, 1410, 1215, 1005, 810)
BATCH_SIZES = (256, 64, 16)
VARIANTS = (Variant.STANDARD, Variant.CHUNKED_PREFILL, Variant.PREFIX_CACHING)
MIG_PROFILES = ("1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb")

# Placeholders for trying the tools; replace with your own figures.
PLACEHOLDER_IDLE_POWER_W = 60.0
PLACEHOLDER_USD_PER_GPU_HOUR = 1.80
PLACEHOLDER_USD_PER_KWH = 0.12
PLACEHOLDER_GCO2_PER_KWH = 400.0

_P95_OVER_P50 = 1.25
_P99_OVER_P50 = 1.45
_OCCUPANCY_SCALE = 6.0
_POWER_CLOCK_EXPONENT = 1.5
# Keeps the MSRR load point's P95 strictly inside the SLO, as a measured one is.
_SLO_MARGIN = 0.999


@dataclass(frozen=True)
class _TypeFigures:
    """Full-GPU figures at default clock, batch 256, standard variant."""

    msrr_rps: float
    unloaded_p50_s: float
    dynamic_power_w: float
    clock_exponent: float


_LLAMA = {
    QueryType.SISO: _TypeFigures(6.8, 1.1, 250.0, 0.55),
    QueryType.LISO: _TypeFigures(PAPER_LLAMA_LISO_FULL_A100_MSRR, 1.4, 290.0, 0.85),
    QueryType.SILO: _TypeFigures(0.95, 11.0, 230.0, 0.35),
    QueryType.LILO: _TypeFigures(0.78, 11.8, 250.0, 0.45),
}
_QWEN = {
    QueryType.SISO: _TypeFigures(7.3, 1.05, 245.0, 0.55),
    QueryType.LISO: _TypeFigures(4.9, 1.35, 285.0, 0.85),
    QueryType.SILO: _TypeFigures(1.05, 10.5, 225.0, 0.35),
    QueryType.LILO: _TypeFigures(0.85, 11.2, 245.0, 0.45),
}
PAPER_MODELS: dict[str, tuple[str, dict[QueryType, _TypeFigures]]] = {
    "llama-3-8b": ("meta-llama/Meta-Llama-3-8B-Instruct", _LLAMA),
    "qwen-7b": ("Qwen/Qwen-7B-Chat", _QWEN),
}
_BATCH_FACTOR = {256: 1.0, 64: 0.93, 16: 0.62}
_VARIANT_FACTOR = {
    Variant.STANDARD: {qt: 1.0 for qt in QueryType},
    Variant.CHUNKED_PREFILL: {QueryType.SISO: 1.0, QueryType.LISO: 1.07, QueryType.SILO: 1.02, QueryType.LILO: 1.05},
    Variant.PREFIX_CACHING: {qt: 0.97 for qt in QueryType},
}
# (slices of 7, MSRR per compute slice relative to the full GPU's)
_MIG_EFFICIENCY = {"1g.20gb": (1, 1.05), "2g.20gb": (2, 1.02), "3g.40gb": (3, 1.0), "4g.40gb": (4, 0.98)}
_MIG_LATENCY_EXPONENT = 0.55


@dataclass(frozen=True)
class _Config:
    model_id: str
    query_type: QueryType
    mig_profile: str | None
    clock_mhz: int | None
    batch: int
    variant: Variant


def paper_hct() -> HardwareCostTable:
    """The whole example table; built once per process (about 650 rows) and shared, so never mutate it."""
    return _paper_hct()


@functools.cache
def _paper_hct() -> HardwareCostTable:
    rows: list[HctRow] = []
    points: list[LoadPointRow] = []
    for config in _configs():
        row, row_points = _trial(config)
        rows.append(row)
        points.extend(row_points)
    metadata = HctMetadata(
        schema_version=HCT_SCHEMA_VERSION,
        spec_name=PAPER_RUN_ID,
        spec_hash="paper",
        created_at=NOT_MEASURED,
        sweep_mode="grid",
        slo=SloSpec(p95_e2e_s=PAPER_SLO_P95_E2E_S),
        load=LoadSettings(),
        search=SearchSettings(mode="linear"),
        trials=len(rows),
        failed_trials=0,
        device_names=[f"NVIDIA {ACCELERATOR} ({NOT_MEASURED})"],
        driver_versions=[],
        vllm_version=NOT_MEASURED,
        ray_version=NOT_MEASURED,
        oasis_ray_version=NOT_MEASURED,
        python_version=NOT_MEASURED,
    )
    return HardwareCostTable.from_models(rows, points, metadata)


def paper_inventory(gpus: int = 8) -> Inventory:
    """A pool of MIG-capable A100-80GB GPUs with placeholder idle power and prices."""
    pool = DevicePool(
        name=MIG_GEOMETRY,
        accelerator_type=ACCELERATOR,
        count=gpus,
        mig_geometry=MIG_GEOMETRY,
        usd_per_hour=PLACEHOLDER_USD_PER_GPU_HOUR,
        idle_power_w=PLACEHOLDER_IDLE_POWER_W,
    )
    prices = Prices(usd_per_kwh=PLACEHOLDER_USD_PER_KWH, gco2_per_kwh=PLACEHOLDER_GCO2_PER_KWH)
    return Inventory(pools=(pool,), prices=prices)


def _configs() -> list[_Config]:
    configs = []
    for model_id in PAPER_MODELS:
        for query_type in QueryType:
            for batch in BATCH_SIZES:
                for variant in VARIANTS:
                    configs += [_Config(model_id, query_type, None, clock, batch, variant) for clock in CLOCKS_MHZ]
                    configs += [_Config(model_id, query_type, mig, None, batch, variant) for mig in MIG_PROFILES]
    return configs


def _is_published(config: _Config) -> bool:
    return (
        config.model_id == "llama-3-8b" and config.query_type is QueryType.LISO and config.mig_profile is None
        and config.clock_mhz is None and config.batch == BATCH_SIZES[0] and config.variant is Variant.STANDARD
    )


def _trial(config: _Config) -> tuple[HctRow, list[LoadPointRow]]:
    source, figures_by_type = PAPER_MODELS[config.model_id]
    base = figures_by_type[config.query_type]
    clock = config.clock_mhz or MAX_CLOCK_MHZ
    speed = (clock / MAX_CLOCK_MHZ) ** base.clock_exponent
    msrr = base.msrr_rps * speed * _BATCH_FACTOR[config.batch] * _VARIANT_FACTOR[config.variant][config.query_type]
    unloaded_s = base.unloaded_p50_s / speed
    dynamic_w = base.dynamic_power_w * (clock / MAX_CLOCK_MHZ) ** _POWER_CLOCK_EXPONENT
    if config.mig_profile is not None:
        slices, efficiency = _MIG_EFFICIENCY[config.mig_profile]
        msrr *= slices / 7 * efficiency
        unloaded_s *= (7 / slices) ** _MIG_LATENCY_EXPONENT
        dynamic_w *= slices / 7
    input_tokens, output_tokens = PAPER_QUERY_LENGTHS[config.query_type]
    provenance = "paper" if _is_published(config) else "placeholder"
    hardware = f"mig {config.mig_profile}" if config.mig_profile else f"gpu {ACCELERATOR}"
    trial_id = (
        f"{provenance}:{config.model_id}|{hardware}|{config.clock_mhz or 'default'}MHz|"
        f"batch{config.batch}|{config.variant.value}|{config.query_type.value}"
    )
    curve = _ClosedLoop.solve(msrr, unloaded_s)
    levels = curve.levels()
    points = [
        _load_point(trial_id, order, concurrency, rate, p50, dynamic_w, input_tokens, output_tokens, clock)
        for order, (concurrency, rate, p50) in enumerate(levels)
    ]
    best = max((p for p in points if p.meets_slo), key=lambda p: p.requests_per_s, default=None)
    row = HctRow(
        trial_id=trial_id,
        run_id=PAPER_RUN_ID,
        status="ok",
        error=None,
        model_id=config.model_id,
        model_source=source,
        hardware_kind="mig" if config.mig_profile else "gpu",
        hardware=hardware,
        accelerator_type=ACCELERATOR,
        mig_profile=config.mig_profile,
        num_cpus=8.0,
        device_name=f"NVIDIA {ACCELERATOR} ({NOT_MEASURED})",
        driver_version=None,
        clock_mhz=config.clock_mhz,
        clock_locked=config.clock_mhz is not None,
        clock_note=None,
        max_num_seqs=config.batch,
        variant=config.variant,
        query_type=config.query_type,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        slo_p95_e2e_s=PAPER_SLO_P95_E2E_S,
        msrr_capped=False,
        **msrr_columns(best),
        power_available=best is not None,
        power_note=None if best is not None else "SLO never met",
        search_mode="linear",
        load_points=len(points),
        search_wall_s=math.nan,
        engine_start_s=math.nan,
        started_at=NOT_MEASURED,
        finished_at=NOT_MEASURED,
    )
    return row, points




@dataclass(frozen=True)
class _ClosedLoop:
    """Throughput X*c/(c+h), median latency (c+h)/X; `msrr_rps` is the rate whose P95 sits just inside the SLO."""

    saturation_rps: float
    half_concurrency: float
    msrr_rps: float
    feasible: bool

    @classmethod
    def solve(cls, msrr_rps: float, unloaded_p50_s: float) -> _ClosedLoop:
        slo = PAPER_SLO_P95_E2E_S * _SLO_MARGIN
        if unloaded_p50_s * _P95_OVER_P50 >= slo:
            # Even one request at a time misses the SLO: only the concurrency-1 point exists.
            return cls(saturation_rps=1 / unloaded_p50_s, half_concurrency=0.0, msrr_rps=0.0, feasible=False)
        saturation = (msrr_rps - _P95_OVER_P50 / slo) / (1 - unloaded_p50_s * _P95_OVER_P50 / slo)
        half = unloaded_p50_s * saturation - 1
        if saturation <= msrr_rps or half < 0:
            raise ValueError(f"msrr_rps: {msrr_rps} and unloaded latency {unloaded_p50_s} s admit no closed loop")
        return cls(saturation_rps=saturation, half_concurrency=half, msrr_rps=msrr_rps, feasible=True)

    def at(self, concurrency: float) -> tuple[float, float]:
        """(requests/s, median latency s) at a concurrency."""
        x, h = self.saturation_rps, self.half_concurrency
        return x * concurrency / (concurrency + h), (concurrency + h) / x

    def levels(self) -> list[tuple[int, float, float]]:
        """Doubling concurrencies below the MSRR, the MSRR itself, and the first doubling past it (a miss)."""
        if not self.feasible:
            rate, p50 = self.at(1)
            return [(1, rate, p50)]
        x, h, m = self.saturation_rps, self.half_concurrency, self.msrr_rps
        at_msrr = h * m / (x - m)
        levels: list[tuple[int, float, float]] = []
        concurrency = 1
        while concurrency < 0.9 * at_msrr:
            levels.append((concurrency, *self.at(concurrency)))
            concurrency *= 2
        levels.append((max(1, round(at_msrr)), m, (at_msrr + h) / x))
        while concurrency < 1.2 * at_msrr:
            concurrency *= 2
        levels.append((concurrency, *self.at(concurrency)))
        return levels


def _load_point(
    trial_id: str, order: int, concurrency: int, rate: float, p50: float, dynamic_w: float,
    input_tokens: int, output_tokens: int, clock: int,
) -> LoadPointRow:
    power = PLACEHOLDER_IDLE_POWER_W + dynamic_w * (1 - math.exp(-concurrency / _OCCUPANCY_SCALE))
    prefill_share = input_tokens / (input_tokens + 8 * output_tokens)
    ttft = p50 * prefill_share
    tpot = (p50 - ttft) / max(output_tokens - 1, 1)
    measured = max(30, 3 * concurrency)
    window_s = measured / rate
    p95 = p50 * _P95_OVER_P50
    return LoadPointRow(
        trial_id=trial_id, order=order, meets_slo=p95 <= PAPER_SLO_P95_E2E_S,
        concurrency=concurrency, warmup_requests=concurrency, measured_requests=measured, window_s=window_s,
        e2e_p50_s=p50, e2e_p95_s=p95, e2e_p99_s=p50 * _P99_OVER_P50,
        ttft_p50_s=ttft, ttft_p95_s=ttft * _P95_OVER_P50, ttft_p99_s=ttft * _P99_OVER_P50,
        tpot_p50_s=tpot, tpot_p95_s=tpot * _P95_OVER_P50, tpot_p99_s=tpot * _P99_OVER_P50,
        requests_per_s=rate, output_tokens_per_s=rate * output_tokens,
        power_available=True, mean_power_w=power, energy_j=power * window_s,
        energy_per_token_j=power / (rate * output_tokens), sm_clock_mhz=float(clock),
    )
