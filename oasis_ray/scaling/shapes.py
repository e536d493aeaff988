"""The hardware cost table as the autoscaler sees it: the shapes a route's replica can take.

Algorithm 1 needs, per route, only what each shape can serve under the SLO
(its MSRR) and how much of a GPU it occupies. The HCT itself is built and read
elsewhere; an adapter reduces it to these records, so the decision core never
depends on the table's file format or on the profiling code.

Shape names are the resources replicas ask Ray for: "full-gpu", a MIG profile
such as "1g.10gb" (its own raylet advertises "MIG-1g.10gb"), or "cpu", which
stands in for a whole GPU where there is none (CPU-only tests and the tiny
smoke-test model).

A whole-unit shape may be tensor parallel: one replica holds
`tensor_parallel_size` GPUs, so Algorithm 1 sizes it in replicas (the MSRR is
the replica's) and counts each as that many GPUs (`gpus`). A full-GPU shape
may also list the GPU settings (SM clock, power limit) the table measured it
at (`levels`), so the core can change a route's clock instead of its replica
count; a MIG slice has none, since its clock is the parent GPU's, shared
with the other slices.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationInfo, field_validator, model_validator

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.query_types import QueryType

FULL_GPU = "full-gpu"
CPU = "cpu"
WHOLE_UNIT_SHAPES = (FULL_GPU, CPU)
MIG_COMPUTE_SLICES = 7
_MIG_PROFILE = r"[1-7]g\.[1-9][0-9]*gb"
MIG_PROFILE_PATTERN = f"^{_MIG_PROFILE}$"
SHAPE_PATTERN = f"^({FULL_GPU}|{CPU}|{_MIG_PROFILE})$"


@functools.cache
def default_gpu_fraction(shape: str) -> float | None:
    """A MIG profile's leading digit is its share of the GPU's seven compute slices; None for a name that is neither."""
    if shape in WHOLE_UNIT_SHAPES:
        return 1.0
    profile = re.match(r"^([1-7])g\.", shape)
    return int(profile.group(1)) / MIG_COMPUTE_SLICES if profile else None


class SettingLevel(BaseModel):
    """A GPU setting a shape's configuration was measured at, and what one replica serves and draws there."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    setting: DeviceSetting
    msrr_rps: float = Field(gt=0)
    msrr_by_type: dict[QueryType, PositiveFloat] = Field(default_factory=dict)
    power_w: float | None = Field(None, gt=0, description="Power of one replica at its MSRR (HCT); None: unknown.")


class ShapeOption(BaseModel):
    """One way to run a replica of a route, with the best configuration the HCT found for it.

    The configuration (clock, batch size, variant) is carried so a decision
    can say what the capacity figure assumed; the core changes only the GPU
    setting, and only among `levels`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    shape: str = Field(pattern=SHAPE_PATTERN, description="'full-gpu', 'cpu' or a MIG profile like '1g.10gb'.")
    gpu_fraction: float = Field(
        None,
        validate_default=True,
        gt=0,
        le=1,
        description="Share of one GPU; defaults to slices/7 for MIG and 1.0 for whole units.",
    )
    msrr_rps: float = Field(gt=0, description="Maximum serviceable request rate under the SLO (HCT).")
    msrr_by_type: dict[QueryType, PositiveFloat] = Field(
        default_factory=dict,
        description="MSRR of each query type the route serves, so its MSRR can follow the mix "
                    "(oasis_ray.scaling.mix); empty when only the route MSRR is known.",
    )
    power_w: float | None = Field(None, gt=0, description="Mean power at that rate (HCT), for reporting.")
    clock_mhz: int | None = Field(None, gt=0)
    power_limit_w: int | None = Field(None, gt=0, description="Power limit the MSRR was measured under.")
    max_num_seqs: int | None = Field(None, ge=1)
    variant: str | None = Field(None, description="Model variant (e.g. a quantisation) the MSRR was measured with.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica of a whole-unit shape holds.")
    levels: tuple[SettingLevel, ...] = Field(
        (), description="Every GPU setting the core may run this full-GPU shape at, the option's own among them; "
                        "empty: it runs at the option's own setting only.",
    )

    @field_validator("gpu_fraction", mode="before")
    @classmethod
    def _default_fraction(cls, value: Any, info: ValidationInfo) -> Any:
        """Spare the adapter restating what the shape name already says."""
        shape = info.data.get("shape")
        if value is None and isinstance(shape, str):
            return default_gpu_fraction(shape)
        return value

    @model_validator(mode="after")
    def _whole_units_are_whole(self) -> ShapeOption:
        if self.is_whole_unit and self.gpu_fraction != 1.0:
            raise ValueError(f"gpu_fraction: '{self.shape}' is a whole unit (1.0), got {self.gpu_fraction}")
        if not self.is_whole_unit and self.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: '{self.shape}' is a MIG slice, which cannot run tensor "
                             f"parallelism, got {self.tensor_parallel_size}")
        if self.levels:
            if self.shape != FULL_GPU:
                raise ValueError(f"levels: only a {FULL_GPU} replica sets its GPU's clock and power limit; "
                                 f"'{self.shape}' cannot")
            settings = [level.setting for level in self.levels]
            if len(set(settings)) != len(settings):
                raise ValueError("levels: a GPU setting is listed more than once")
            if self.setting not in settings:
                raise ValueError(f"levels: the option's own setting ({self.setting.describe()}) is not among them")
        return self

    @property
    def is_whole_unit(self) -> bool:
        """Algorithm 1 counts whole units once a route needs one or more; fractions are only for less."""
        return self.shape in WHOLE_UNIT_SHAPES

    @property
    def gpus(self) -> float:
        """GPUs one replica occupies: a MIG slice's fraction, a whole unit's tensor-parallel degree."""
        return self.gpu_fraction * self.tensor_parallel_size

    @property
    def setting(self) -> DeviceSetting:
        return DeviceSetting(sm_clock_mhz=self.clock_mhz, power_limit_w=self.power_limit_w)

    def level(self, setting: DeviceSetting | None) -> SettingLevel:
        """The level a planned setting names; None, or a shape without levels, is the option's own."""
        for level in self.levels:
            if level.setting == setting:
                return level
        return SettingLevel(setting=self.setting, msrr_rps=self.msrr_rps, msrr_by_type=self.msrr_by_type,
                            power_w=self.power_w)

    @property
    def fastest_level(self) -> SettingLevel:
        """What a replica is held at while the route is short of capacity: the highest MSRR, then the lowest power."""
        return max(self.levels or (self.level(None),),
                   key=lambda level: (level.msrr_rps, -(level.power_w or 0.0)))


class RouteCapacity(BaseModel):
    """Every shape one route can run on, the route's slice of the HCT.

    Exactly one whole-unit shape is required: GPUs_required is defined against
    it, and it is the fallback when no MIG slice covers the rate.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str = Field(min_length=1, description="Route id, e.g. '<model>/<route name>'.")
    options: tuple[ShapeOption, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_whole_unit_and_unique_shapes(self) -> RouteCapacity:
        shapes = [option.shape for option in self.options]
        duplicates = sorted({shape for shape in shapes if shapes.count(shape) > 1})
        if duplicates:
            raise ValueError(f"options: route '{self.route}' lists shape(s) {duplicates} more than once")
        whole = [shape for shape in shapes if shape in WHOLE_UNIT_SHAPES]
        if len(whole) != 1:
            raise ValueError(
                f"options: route '{self.route}' needs exactly one of {list(WHOLE_UNIT_SHAPES)} "
                f"(Algorithm 1 counts in whole units), got {whole}"
            )
        return self

    @property
    def whole_unit(self) -> ShapeOption:
        return next(option for option in self.options if option.is_whole_unit)

    @property
    def fractions_smallest_first(self) -> list[ShapeOption]:
        """MIG shapes in the order Algorithm 1 tries them; ties go to the faster one, then by name for stability."""
        fractions = [option for option in self.options if not option.is_whole_unit]
        return sorted(fractions, key=lambda option: (option.gpu_fraction, -option.msrr_rps, option.shape))

    @property
    def smallest(self) -> ShapeOption:
        """What an idle route keeps running, and what it starts when traffic returns."""
        fractions = self.fractions_smallest_first
        return fractions[0] if fractions else self.whole_unit

    def option(self, shape: str) -> ShapeOption | None:
        return next((option for option in self.options if option.shape == shape), None)

    def serving_rps(self, replicas: dict[str, int], setting: DeviceSetting | None = None) -> float:
        """What a set of replicas can serve under the SLO, full-GPU ones at `setting` (None: the option's own);
        shapes the table does not know count for nothing."""
        total = 0.0
        for shape, count in replicas.items():
            option = self.option(shape)
            if option is not None:
                total += option.level(setting).msrr_rps * count
        return total
