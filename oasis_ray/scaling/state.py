"""What the decision core remembers between ticks, and nothing it cannot rebuild.

Serve keeps a custom policy's state only until the next redeploy, so every
field here is optional knowledge: with an empty ScalingState the core takes
the running replicas as the plan, assumes no cooldown is running and restarts
the forecast. Losing state can bring a change forward (no cooldown is assumed
to be running) or delay a scale to zero (the idle clock restarts), but the
hysteresis band still applies, so it never drops capacity the rate needs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.allocation import Allocation
from oasis_ray.scaling.forecast import ForecasterState


class RouteState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    plan: Allocation = Field(description="The shape and count last decided (in advisory mode, the shadow plan).")
    targets: dict[str, int] = Field(
        description="Replicas last asked for per shape: the plan plus shapes still retiring (make before break)."
    )
    changed_at_s: float | None = Field(None, description="When the plan last changed; None: not since a restart.")
    idle_since_s: float | None = Field(None, description="Since when the observed rate has been 0; None: busy.")
    forecaster: ForecasterState | None = None
    advisory: bool = Field(
        False, description="Whether the plan is a shadow; a plan from the other mode is not comparable and is dropped."
    )
    told: DeviceSetting | None = Field(None, description="The GPU setting the route's replicas were last told.")


class ScalingState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: dict[str, RouteState] = Field(default_factory=dict)
