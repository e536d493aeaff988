"""One structured record per route per tick: what the autoscaler saw, computed and did.

Operators asked for decisions they can read before trusting them (advisory
mode) and after the fact (why did it scale down at 03:12?). The record carries
every number Algorithm 1 used, so one log line answers that without the code,
and the adapter can export the same fields as metrics.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from oasis_ray.device_setting import DeviceSetting

Action = Literal["scale_up", "scale_down", "finish_move", "set_clock", "hold"]

_NO_VALUE = "-"
_NO_REPLICAS = "0"


def running_replicas(replicas: dict[str, int]) -> dict[str, int]:
    """Zero entries say nothing runs there; dropping them makes 'no change' comparisons exact."""
    return {shape: count for shape, count in replicas.items() if count > 0}


def _render_replicas(replicas: dict[str, int]) -> str:
    running = running_replicas(replicas)
    return ",".join(f"{shape}:{count}" for shape, count in sorted(running.items())) or _NO_REPLICAS


def _render_value(value: str | float | int | bool | None) -> str:
    if value is None:
        return _NO_VALUE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if text == "" or any(char in text for char in ' "=\\'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


class ScalingRecord(BaseModel):
    """`replicas_after` is what the policy targets, or in advisory mode what it would have targeted;
    `setting_after` likewise the GPU setting of a route whose full-GPU shape has levels (None: no levels)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    route: str
    action: Action
    advisory: bool
    observed_rps: float | None
    forecast_rps: float | None
    need_rps: float | None
    gpus_required: float | None
    chosen_shape: str
    chosen_replicas: int
    msrr_rps: float | None
    replicas_before: dict[str, int]
    replicas_after: dict[str, int]
    reason: str
    setting_before: DeviceSetting | None = None
    setting_after: DeviceSetting | None = None

    @property
    def changed(self) -> bool:
        """Whether this tick moved (or in advisory mode would have moved) any replica count or GPU setting."""
        return (running_replicas(self.replicas_before) != running_replicas(self.replicas_after)
                or self.setting_before != self.setting_after)

    def log_line(self) -> str:
        """logfmt: key=value pairs, floats to 4 significant digits, '-' for unknown, quoted where needed."""
        fields: list[tuple[str, str | float | int | bool | None]] = [
            ("route", self.route),
            ("action", self.action),
            ("advisory", self.advisory),
            ("observed_rps", self.observed_rps),
            ("forecast_rps", self.forecast_rps),
            ("need_rps", self.need_rps),
            ("gpus_required", self.gpus_required),
            ("shape", self.chosen_shape),
            ("shape_replicas", self.chosen_replicas),
            ("msrr_rps", self.msrr_rps),
            ("before", _render_replicas(self.replicas_before)),
            ("after", _render_replicas(self.replicas_after)),
        ]
        if self.setting_after is not None:
            setting = self.setting_after
            fields += [("clock_mhz", setting.sm_clock_mhz), ("power_limit_w", setting.power_limit_w)]
        fields.append(("reason", self.reason))
        return " ".join(f"{key}={_render_value(value)}" for key, value in fields)
