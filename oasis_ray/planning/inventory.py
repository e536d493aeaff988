"""The devices a plan may use and what they cost: the planner's and simulator's view of a cluster.

Kept apart from the cost table because they change for different reasons: the
HCT changes when a sweep is re-run, the inventory when machines are bought or
leased, prices with the contract and the grid. A pool is one kind of device
in one count. Idle power is here, not in the HCT, because the profiler
measures a device only under load, and a plan has to pay for the hours a
device sits idle too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oasis_ray.costs.table import Hardware
from oasis_ray.mig_geometry import COMPUTE_SLICES, MIG_GEOMETRIES, MigGeometryName
from oasis_ray.scaling.shapes import CPU, FULL_GPU


class DevicePool(BaseModel):
    """`count` identical devices; `accelerator_type` is matched against the HCT's column of that name."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, description="e.g. 'A100-80GB'; names the pool in plans and shortfalls.")
    kind: Literal["gpu", "cpu"] = "gpu"
    accelerator_type: str | None = Field(
        None, description="Ray's accelerator name as the HCT records it (A100, H100); None matches any GPU row."
    )
    count: int = Field(ge=0)
    mig_geometry: MigGeometryName | None = Field(
        None, description="The MIG placement table of these GPUs; None: not MIG-capable (whole devices only)."
    )
    usd_per_hour: float = Field(ge=0, description="Price of one whole device per hour (a MIG slice pays its share).")
    idle_power_w: float | None = Field(
        None, ge=0, description="Draw of one idle device; None: unknown, so energy figures come out unknown."
    )

    @model_validator(mode="after")
    def _mig_only_on_gpus(self) -> DevicePool:
        if self.kind == "cpu" and (self.mig_geometry is not None or self.accelerator_type is not None):
            raise ValueError("mig_geometry: CPU pools have no MIG geometry or accelerator type")
        return self

    @property
    def whole_shape(self) -> str:
        return CPU if self.kind == "cpu" else FULL_GPU

    def hardware(self, *, allow_mig: bool = True) -> Hardware:
        """The pool's shapes as the cost table selects rows: its whole device, and its MIG profiles if allowed.

        The seven-slice profile is left out: it is the whole GPU in MIG mode, so it frees nothing for other
        routes and gives up clock control, and Algorithm 1 would take it as a "slice" for any need below one
        GPU. The whole device stands for it.
        """
        profiles = MIG_GEOMETRIES[self.mig_geometry] if allow_mig and self.mig_geometry is not None else {}
        slices = tuple(name for name, profile in profiles.items() if profile.compute_slices < COMPUTE_SLICES)
        return Hardware(whole_shape=self.whole_shape, accelerator_type=self.accelerator_type,
                        mig_shapes=slices, idle_power_w=self.idle_power_w)


class Prices(BaseModel):
    """What a kWh costs in money and in carbon; device prices are per pool."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    usd_per_kwh: float = Field(ge=0)
    gco2_per_kwh: float = Field(ge=0, description="Grid carbon intensity.")


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pools: tuple[DevicePool, ...] = Field(min_length=1)
    prices: Prices

    @model_validator(mode="after")
    def _unique_names(self) -> Inventory:
        names = [pool.name for pool in self.pools]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"pools: pool name(s) {duplicates} appear more than once")
        return self

    def pool(self, name: str) -> DevicePool:
        return next(pool for pool in self.pools if pool.name == name)
