"""The hardware cost table as the autoscaler sees it: the shapes a route's replica can take.

Algorithm 1 needs, per route, only what each shape can serve under the SLO
(its MSRR) and how much of a GPU it occupies. The HCT itself is built and read
elsewhere; an adapter reduces it to these records, so the decision core never
depends on the table's file format or on the profiling code.

Shape names are the resources replicas ask Ray for: "full-gpu", a MIG profile
such as "1g.10gb" (its own raylet advertises "MIG-1g.10gb"), or "cpu", which
stands in for a whole GPU where there is none (CPU-only tests and the tiny
smoke-test model).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationInfo, field_validator, model_validator

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


class ShapeOption(BaseModel):
    """One way to run a replica of a route, with the best configuration the HCT found for it.

    The configuration (clock, batch size, variant) is carried only so a
    decision can say what the capacity figure assumed; the core never changes it.
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
    max_num_seqs: int | None = Field(None, ge=1)
    variant: str | None = Field(None, description="Model variant (e.g. a quantisation) the MSRR was measured with.")

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
        return self

    @property
    def is_whole_unit(self) -> bool:
        """Algorithm 1 counts whole units once a route needs one or more; fractions are only for less."""
        return self.shape in WHOLE_UNIT_SHAPES


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

    def serving_rps(self, replicas: dict[str, int]) -> float:
        """What a set of replicas can serve under the SLO; shapes the table does not know count for nothing."""
        total = 0.0
        for shape, count in replicas.items():
            option = self.option(shape)
            if option is not None:
                total += option.msrr_rps * count
        return total
