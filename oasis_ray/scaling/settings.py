"""The autoscaler's knobs, validated before the first tick.

A bad value (a hysteresis of 1 that would never scale down, a min above the
max) is refused with the field named, because a policy that misbehaves at run
time is found only after it has wasted GPUs or dropped requests.

Defaults lean towards stability: the paper's trace is bursty (CV 1.7), and a
replica of a real model takes tens of seconds to minutes to start, so a
decision reversed within seconds only costs energy and cold starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RouteLimits(BaseModel):
    """Bounds for one route, in replicas of whichever shape Algorithm 1 chose."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    min_replicas: int = Field(
        1, ge=1, description="Floor while the route may not scale to zero (see allow_scale_to_zero for 0)."
    )
    max_replicas: int = Field(8, ge=1, description="Ceiling that stops a bad rate metric from claiming the cluster.")
    allow_scale_to_zero: bool = Field(
        False, description="An idle route may drop every replica; its next request waits for a cold start."
    )
    scale_to_zero_after_s: float = Field(
        300.0, ge=0, description="How long the observed rate must stay at 0 before an allowed route goes to zero."
    )

    @model_validator(mode="after")
    def _ordered(self) -> RouteLimits:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas: {self.max_replicas} is below min_replicas {self.min_replicas}")
        return self


class ReactiveForecast(BaseModel):
    """Scale for the rate observed now, as the paper does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["reactive"] = "reactive"


class HoltForecast(BaseModel):
    """Holt's linear trend: follows a ramp and projects it `horizon_s` ahead, so replicas start before the load."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: Literal["holt"] = "holt"
    alpha: float = Field(0.5, gt=0, le=1, description="Level smoothing per sample.")
    beta: float = Field(0.3, gt=0, le=1, description="Trend smoothing per sample.")
    horizon_s: float = Field(60.0, ge=0, description="How far ahead to project: about a replica's start-up time.")
    sample_interval_s: float = Field(
        10.0, gt=0, description="Least time between samples, so alpha and beta mean the same at any tick rate."
    )


class EwmaPeakForecast(BaseModel):
    """EWMA with peak hold: remembers a burst and lets it decay, so capacity is not dropped between bursts."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: Literal["ewma_peak"] = "ewma_peak"
    alpha: float = Field(0.3, gt=0, le=1, description="Mean smoothing per sample.")
    peak_decay: float = Field(0.9, gt=0, lt=1, description="Share of the held peak kept per sample.")
    sample_interval_s: float = Field(
        10.0, gt=0, description="Least time between samples, so alpha and decay mean the same at any tick rate."
    )


ForecastConfig = Annotated[ReactiveForecast | HoltForecast | EwmaPeakForecast, Field(discriminator="mode")]


class ScalingConfig(BaseModel):
    """Everything the decision core is tuned by; the adapter fills it from serve_config.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    headroom: float = Field(0.1, ge=0, le=10, description="Provision for rate x (1 + headroom).")
    hysteresis: float = Field(
        0.2, ge=0, lt=1, description="Scale down only when need < current capacity x (1 - hysteresis)."
    )
    upscale_cooldown_s: float = Field(30.0, ge=0, description="Least time after any change before a scale-up.")
    downscale_cooldown_s: float = Field(300.0, ge=0, description="Least time after any change before a scale-down.")
    clock_cooldown_s: float = Field(
        30.0, ge=0, description="Least time after any change before a route's GPU setting is lowered; raising it "
                                "takes effect at once (no replica to start), so it waits for nothing.",
    )
    advisory: bool = Field(False, description="Compute and report decisions but leave replica counts as they are.")
    forecast: ForecastConfig = Field(default_factory=ReactiveForecast)
    default_limits: RouteLimits = Field(default_factory=RouteLimits)
    route_limits: dict[str, RouteLimits] = Field(
        default_factory=dict, description="Per-route bounds; routes not listed get default_limits."
    )

    def limits_for(self, route: str) -> RouteLimits:
        return self.route_limits.get(route, self.default_limits)
