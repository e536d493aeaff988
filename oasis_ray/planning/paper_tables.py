"""The OASIS paper as a cost table, and a pool of its GPUs, to try the planner and simulator without a GPU.

Built by `oasis_ray.gpu_model.paper_table` from the committed GPU-model
parameters: every figure the paper publishes that is a cost-table quantity
is entered as published (provenance `published`, the seed file and table
named in each row and load point), and every other row is derived by the
fitted GPU model (provenance `derived`, the model version named). Prices in
the inventory are placeholders; idle power is the fit's
(`oasis_ray.gpu_model.catalogue`). Measure your own table
(profiling_jobs.sweep) before trusting a plan with money.
"""

from __future__ import annotations

from oasis_ray.gpu_model.catalogue import PLACEHOLDER_GCO2_PER_KWH, PLACEHOLDER_USD_PER_KWH, catalogue
from oasis_ray.gpu_model.paper_table import GRID_MODELS, PAPER_RUN_ID, PAPER_SLO_P95_E2E_S, committed_paper_table
from oasis_ray.gpu_model.params import committed_params
from oasis_ray.planning.inventory import DevicePool, Inventory, Prices
from oasis_ray.profiling.hct import HardwareCostTable

PAPER_DEVICE = "A100-SXM4-80GB"
PAPER_MODELS = GRID_MODELS

__all__ = ["PAPER_DEVICE", "PAPER_MODELS", "PAPER_RUN_ID", "PAPER_SLO_P95_E2E_S", "paper_hct", "paper_inventory"]


def paper_hct() -> HardwareCostTable:
    """The whole table, built once per process and shared: never mutate it."""
    return committed_paper_table()


def paper_inventory(gpus: int = 8, device_name: str = PAPER_DEVICE) -> Inventory:
    """A pool of `gpus` MIG-capable boards of one kind at the fitted idle power and placeholder prices."""
    entry = catalogue(committed_params())[device_name]
    pool = DevicePool(
        name=entry.name, accelerator_type=entry.accelerator_type, count=gpus, mig_geometry=entry.mig_geometry,
        usd_per_hour=entry.usd_per_hour, idle_power_w=entry.idle_power_w,
    )
    return Inventory(pools=(pool,), prices=Prices(usd_per_kwh=PLACEHOLDER_USD_PER_KWH,
                                                  gco2_per_kwh=PLACEHOLDER_GCO2_PER_KWH))
