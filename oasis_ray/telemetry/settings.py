"""What an operator chooses about telemetry: whether it runs, where it goes, what the response reveals.

Kept apart from the OpenTelemetry wiring so that the app config can embed it
without importing the SDK, and so that a bad combination (an OTLP endpoint
with no OTLP exporter, a scrape port with no Prometheus reader) is refused at
startup with the field named, not discovered as silence on a dashboard.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Exporter = Literal["prometheus", "otlp", "memory"]
# vLLM's span exporter reads its protocol from here (default grpc).
ENGINE_PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"


def _prometheus_only() -> list[Exporter]:
    return ["prometheus"]


class TelemetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = Field(True, description="False swaps in a no-op with the same API, for overhead baselines.")
    exporters: list[Exporter] = Field(
        default_factory=_prometheus_only,
        description=(
            "'prometheus': metrics in this process's prometheus_client registry (scrape via prometheus_port); "
            "'otlp': metrics and spans pushed to an OpenTelemetry collector; "
            "'memory': kept in process for tests."
        ),
    )
    otlp_endpoint: str | None = Field(
        None,
        description=(
            "Collector base URL, e.g. http://collector:4318 (HTTP) or http://collector:4317 (gRPC); "
            "None uses OTEL_EXPORTER_OTLP_ENDPOINT, else the exporter's localhost default."
        ),
    )
    otlp_protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    engine_traces_endpoint: str | None = Field(
        None,
        description=(
            "Where the vLLM engines export their per-request span (vLLM's own OTLP tracing, over otlp_protocol), "
            "e.g. http://collector:4318/v1/traces for HTTP. The ingress sends its oasis.route span's W3C "
            "traceparent with each request, so the engine's span joins the request's trace. None: no engine spans."
        ),
    )
    prometheus_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description=(
            "Serve this process's /metrics on this port. Ray's metrics endpoint does not include these metrics, "
            "so without a port (or a /metrics route of your own) nothing scrapes them."
        ),
    )
    service_name: str = Field("oasis-ray", min_length=1, description="OpenTelemetry service.name of every signal.")
    energy_header: bool = Field(
        False,
        description=(
            "Add x-oasis-energy-j (joules, or 'unavailable') to non-streaming responses. Off by default: a "
            "request's energy is known only once the GPU samplers close the interval it ended in, so the response "
            "waits one to two sample periods for it (three at most, then 'unavailable'). Streams carry their "
            "energy in the metric and the trace only, since their headers are sent first."
        ),
    )
    gpu_sample_period_s: float = Field(1.0, gt=0, description="Seconds between NVML samples (and energy intervals).")

    @field_validator("exporters")
    @classmethod
    def _each_exporter_once(cls, exporters: list[Exporter]) -> list[Exporter]:
        repeated = sorted({name for name in exporters if exporters.count(name) > 1})
        if repeated:
            raise ValueError(f"{repeated} listed more than once; each exporter runs once per process")
        return exporters

    @field_validator("otlp_endpoint", "engine_traces_endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"'{endpoint}' must start with http:// or https://")
        return endpoint

    @model_validator(mode="after")
    def _settings_have_their_exporter(self) -> TelemetryConfig:
        if self.otlp_endpoint is not None and "otlp" not in self.exporters:
            raise ValueError("otlp_endpoint: set, but 'otlp' is not in exporters, so nothing would use it")
        if self.engine_traces_endpoint is not None and not self.enabled:
            raise ValueError("engine_traces_endpoint: set, but telemetry is disabled, so no trace would reach it")
        if self.energy_header and not self.enabled:
            raise ValueError("energy_header: set, but telemetry is disabled, so no energy is ever measured")
        if self.prometheus_port is not None and "prometheus" not in self.exporters:
            raise ValueError("prometheus_port: set, but 'prometheus' is not in exporters, so it would serve nothing")
        return self

    def engine_tracing(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Engine arguments and environment that turn on vLLM's request tracing; empty without an endpoint."""
        if not self.enabled or self.engine_traces_endpoint is None:
            return {}, {}
        return {"otlp_traces_endpoint": self.engine_traces_endpoint}, {ENGINE_PROTOCOL_ENV: self.otlp_protocol}
