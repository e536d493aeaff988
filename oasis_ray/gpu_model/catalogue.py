"""The devices a plan or simulation can use: board idle power from the fit, MIG geometry, and a price to replace.

Board idle power (the board with no engine loaded, MIG on or off) comes from
the GPU model's fit and says so; the A100X's is fitted from OASIS Table 8
alone. Prices are a user input that no source here gives: they are
placeholders, labelled as such, to be replaced with your contract's figures.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from oasis_ray.gpu_model.hardware import device
from oasis_ray.gpu_model.params import GpuModelParams

PLACEHOLDER_USD_PER_GPU_HOUR = {"A100-SXM4-80GB": 1.80, "A100-SXM4-40GB": 1.40, "A100X-80GB": 1.80, "H100-SXM": 3.00}
PLACEHOLDER_USD_PER_KWH = 0.12  # OASIS Table 9's electricity price
PLACEHOLDER_GCO2_PER_KWH = 400.0
PRICE_NOTE = "placeholder, not a quote: replace with your own price"


class CatalogueEntry(BaseModel):
    """One board as the planner and simulator see it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    accelerator_type: str
    mig_geometry: str | None
    idle_power_w: float
    idle_power_provenance: str
    usd_per_hour: float
    price_note: str


def catalogue(params: GpuModelParams) -> dict[str, CatalogueEntry]:
    entries = {}
    for name, idle in params.board_idle_w.items():
        board = device(name)
        source = "OASIS Table 8 alone" if name == "A100X-80GB" else "the published figures"
        entries[name] = CatalogueEntry(
            name=name, accelerator_type=board.accelerator_type, mig_geometry=board.mig_geometry, idle_power_w=idle,
            idle_power_provenance=f"derived: {params.model_version} fit to {source} (params_v1.json)",
            usd_per_hour=PLACEHOLDER_USD_PER_GPU_HOUR[name], price_note=PRICE_NOTE,
        )
    return entries
