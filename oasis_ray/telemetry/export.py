"""Where metrics and spans go: the exporters named in TelemetryConfig, and plain records of the in-memory ones.

OTLP exporters are imported and built only when configured: they pull in gRPC
or requests, and a process that never ships to a collector should not pay for
them. The in-memory signals are flattened into pydantic records because a test
usually reads them from another process (through a Serve handle), and the
SDK's own objects are neither stable to assert on nor meant to be pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricExporter,
    MetricReader,
    NumberDataPoint,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel, ConfigDict

from oasis_ray.telemetry.settings import TelemetryConfig

AttributeValue = str | bool | int | float

_OTLP_HTTP_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics"}


class MetricPoint(BaseModel):
    """One time series at collection: `value` for counters and gauges, `count`/`sum` for histograms."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    unit: str
    attributes: dict[str, AttributeValue]
    value: float | None = None
    count: int | None = None
    sum: float | None = None


class SpanRecord(BaseModel):
    """A finished span; ids are hex as in a traceparent header, so records can be matched to carriers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, AttributeValue]
    status: str


@dataclass
class Exporters:
    """What one Telemetry feeds: metric readers for its MeterProvider, span processors for its TracerProvider."""

    metric_readers: list[MetricReader] = field(default_factory=list)
    span_processors: list[SpanProcessor] = field(default_factory=list)
    memory_metrics: InMemoryMetricReader | None = None
    memory_spans: InMemorySpanExporter | None = None
    prometheus_registry: CollectorRegistry | None = None

    @property
    def exports_spans(self) -> bool:
        return bool(self.span_processors)


def build_exporters(config: TelemetryConfig, prometheus_registry: CollectorRegistry | None = None) -> Exporters:
    """`prometheus_registry` lets tests read the exposition without touching the process-wide REGISTRY."""
    exporters = Exporters()
    if "prometheus" in config.exporters:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        exporters.prometheus_registry = REGISTRY if prometheus_registry is None else prometheus_registry
        exporters.metric_readers.append(PrometheusMetricReader(registry=exporters.prometheus_registry))
    if "otlp" in config.exporters:
        span_exporter, metric_exporter = otlp_exporters(config)
        exporters.metric_readers.append(PeriodicExportingMetricReader(metric_exporter))
        exporters.span_processors.append(BatchSpanProcessor(span_exporter))
    if "memory" in config.exporters:
        exporters.memory_metrics = InMemoryMetricReader()
        exporters.memory_spans = InMemorySpanExporter()
        exporters.metric_readers.append(exporters.memory_metrics)
        # Synchronous, so a span is readable the moment it ends.
        exporters.span_processors.append(SimpleSpanProcessor(exporters.memory_spans))
    return exporters


def otlp_exporters(config: TelemetryConfig) -> tuple[SpanExporter, MetricExporter]:
    """(span exporter, metric exporter) for the configured protocol; building them opens no connection.

    The HTTP exporters take a full URL per signal, so the base endpoint gets
    the standard /v1/traces and /v1/metrics paths, exactly as the exporters do
    themselves for OTEL_EXPORTER_OTLP_ENDPOINT.
    """
    endpoint = config.otlp_endpoint
    if config.otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint), OTLPMetricExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter

    if endpoint is None:
        return HttpSpanExporter(), HttpMetricExporter()
    base = endpoint.rstrip("/")
    return (
        HttpSpanExporter(endpoint=base + _OTLP_HTTP_PATHS["traces"]),
        HttpMetricExporter(endpoint=base + _OTLP_HTTP_PATHS["metrics"]),
    )


def metric_points(reader: InMemoryMetricReader) -> list[MetricPoint]:
    """Collects now (running observable callbacks) and flattens every data point."""
    data = reader.get_metrics_data()
    if data is None:
        return []
    points = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    points.append(_metric_point(metric.name, metric.unit or "", point))
    return points


def _metric_point(
    name: str, unit: str, point: NumberDataPoint | HistogramDataPoint | ExponentialHistogramDataPoint
) -> MetricPoint:
    attributes = _plain(point.attributes)
    if isinstance(point, NumberDataPoint):
        return MetricPoint(name=name, unit=unit, attributes=attributes, value=point.value)
    return MetricPoint(name=name, unit=unit, attributes=attributes, count=point.count, sum=point.sum)


def span_records(exporter: InMemorySpanExporter) -> list[SpanRecord]:
    return [_span_record(span) for span in exporter.get_finished_spans()]


def _span_record(span: ReadableSpan) -> SpanRecord:
    context = span.get_span_context()
    if context is None:
        raise ValueError(f"span {span.name!r} has no span context; a finished SDK span always has one")
    parent = span.parent
    return SpanRecord(
        name=span.name,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=None if parent is None else f"{parent.span_id:016x}",
        attributes=_plain(span.attributes),
        status=span.status.status_code.name,
    )


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    return dict(attributes or {})
