"""Forecasts of a route's next-interval rate, for scaling ahead of the load (beyond the paper).

The paper only reacts, so a ramp is always served by replicas sized for the
rate of a moment ago, and a new replica takes a while to start. A forecast lets
the core size for max(observed, forecast) instead.

Each forecaster is pure: it takes its previous state and one sample and
returns the next state, which the caller keeps inside ScalingState. That way a
redeploy that loses the state only restarts the forecast from the next sample,
and the same inputs always give the same forecast in tests and the simulator.
Samples closer together than `sample_interval_s` are ignored, because the
Serve policy is called about every 0.1 s and alpha/beta would otherwise mean
something different at every tick rate.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.scaling.settings import EwmaPeakForecast, ForecastConfig, HoltForecast


class HoltState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["holt"] = "holt"
    level_rps: float
    trend_rps_per_s: float
    sampled_at_s: float
    forecast_rps: float = Field(ge=0)


class EwmaPeakState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["ewma_peak"] = "ewma_peak"
    mean_rps: float = Field(ge=0)
    sampled_at_s: float
    forecast_rps: float = Field(ge=0, description="The held peak, decaying towards the mean.")


ForecasterState = Annotated[HoltState | EwmaPeakState, Field(discriminator="kind")]


def _is_new_sample(previous_at_s: float, now_s: float, interval_s: float) -> bool:
    return now_s - previous_at_s >= interval_s


class HoltForecaster:
    """Level plus trend per second, projected `horizon_s` ahead.

    The trend is kept per second rather than per sample so that an irregular
    gap between samples (a slow tick, a missed metric) extrapolates correctly.
    """

    def __init__(self, config: HoltForecast) -> None:
        self._config = config

    def observe(self, state: HoltState | None, now_s: float, rate_rps: float) -> HoltState:
        if state is None or now_s < state.sampled_at_s:
            return HoltState(level_rps=rate_rps, trend_rps_per_s=0.0, sampled_at_s=now_s, forecast_rps=rate_rps)
        if not _is_new_sample(state.sampled_at_s, now_s, self._config.sample_interval_s):
            return state
        alpha, beta = self._config.alpha, self._config.beta
        elapsed_s = now_s - state.sampled_at_s
        predicted = state.level_rps + state.trend_rps_per_s * elapsed_s
        level = alpha * rate_rps + (1 - alpha) * predicted
        trend = beta * (level - state.level_rps) / elapsed_s + (1 - beta) * state.trend_rps_per_s
        forecast = max(0.0, level + trend * self._config.horizon_s)
        return HoltState(level_rps=level, trend_rps_per_s=trend, sampled_at_s=now_s, forecast_rps=forecast)


class EwmaPeakForecaster:
    """A burst lifts the forecast at once; it then decays geometrically but never below the running mean."""

    def __init__(self, config: EwmaPeakForecast) -> None:
        self._config = config

    def observe(self, state: EwmaPeakState | None, now_s: float, rate_rps: float) -> EwmaPeakState:
        if state is None or now_s < state.sampled_at_s:
            return EwmaPeakState(mean_rps=rate_rps, sampled_at_s=now_s, forecast_rps=rate_rps)
        if not _is_new_sample(state.sampled_at_s, now_s, self._config.sample_interval_s):
            return state
        mean = self._config.alpha * rate_rps + (1 - self._config.alpha) * state.mean_rps
        peak = max(rate_rps, mean, state.forecast_rps * self._config.peak_decay)
        return EwmaPeakState(mean_rps=mean, sampled_at_s=now_s, forecast_rps=peak)


def advance_forecast(
    config: ForecastConfig, state: ForecasterState | None, now_s: float, rate_rps: float
) -> ForecasterState | None:
    """The next forecaster state for the configured mode (None when reactive).

    State of another mode, left over from before a config change, is dropped
    rather than reinterpreted, and a clock that went backwards restarts the
    forecast rather than freezing it until the clock catches up.
    """
    if isinstance(config, HoltForecast):
        return HoltForecaster(config).observe(state if isinstance(state, HoltState) else None, now_s, rate_rps)
    if isinstance(config, EwmaPeakForecast):
        previous = state if isinstance(state, EwmaPeakState) else None
        return EwmaPeakForecaster(config).observe(previous, now_s, rate_rps)
    return None
