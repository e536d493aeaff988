"""The GPU settings a replica runs at (SM clock, power limit), and how far the app may apply them.

One small type shared by the config (a route's setting), the cost table's
reader (the setting a row was measured at), the scaling core (the setting it
plans for) and the per-node keeper that applies it through NVML, so the same
two numbers travel from the table to the GPU without being re-spelt. A lease's
status (what the keeper did on each GPU) is here too, since the status view
shows it without depending on the keeper.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ClockControl = Literal["apply", "advisory", "off"]
"""apply: replicas set their GPU's clock and power limit through NVML and restore them when they stop;
advisory (default): they only log and report what they would set; off: nothing is set, logged or reported."""


class DeviceSetting(BaseModel):
    """An SM clock lock and a power limit; None leaves that knob where the GPU's driver has it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sm_clock_mhz: int | None = Field(None, gt=0, description="SM clock to lock (min = max), in MHz.")
    power_limit_w: int | None = Field(None, gt=0, description="Board power limit, in watts.")

    @property
    def is_default(self) -> bool:
        return self.sm_clock_mhz is None and self.power_limit_w is None

    def describe(self) -> str:
        """`sm_clock_mhz=855 power_limit_w=250`, naming only what is set; `default clocks and power limit` else."""
        if self.is_default:
            return "default clocks and power limit"
        parts = [f"sm_clock_mhz={self.sm_clock_mhz}" if self.sm_clock_mhz is not None else None,
                 f"power_limit_w={self.power_limit_w}" if self.power_limit_w is not None else None]
        return " ".join(part for part in parts if part)


DEFAULT_SETTING = DeviceSetting()


DeviceStateName = Literal["set", "default", "advisory", "refused", "unavailable", "shared"]


class DeviceState(BaseModel):
    """One GPU of a lease: what was done to it, and why where nothing was."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str | None = Field(description="The GPU's label (index, name, UUID); None where there is none.")
    state: DeviceStateName
    note: str | None = None


class LeaseStatus(BaseModel):
    """A lease as logs and the status view show it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    holder: str
    app: str
    route: str
    shape: str
    mode: Literal["apply", "advisory"]
    setting: DeviceSetting
    devices: tuple[DeviceState, ...]

    def lines(self) -> list[str]:
        """One line per GPU: what is (or would be) set, where, and why not."""
        head = f"route={self.route} shape={self.shape} replica={self.holder[:12]} mode={self.mode}"
        verb = "would set" if self.mode == "advisory" else "set"
        return [
            f"{head} {verb} {self.setting.describe()} on {device.gpu or 'no GPU'}: {device.state}"
            + (f" ({device.note})" if device.note else "")
            for device in self.devices
        ]

    def line(self) -> str:
        return "; ".join(self.lines())
