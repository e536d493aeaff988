"""Request, replica, scaling and GPU metrics, and request spans, for the serving path.

Each Telemetry owns its MeterProvider and TracerProvider and never installs
them globally: Ray and vLLM configure OpenTelemetry in the same processes, and
whichever set the global provider first would silently win. Owning them also
lets a test build several independent instances in one process.

Trace context crosses Ray Serve handle calls as a W3C tracecontext carrier (a
plain dict of HTTP headers), through `inject()` and `extract()`:

    # ingress, inside its span: the carrier travels with the call
    carrier = telemetry.inject()            # {"traceparent": "00-<trace>-<span>-01"}
    # receiving deployment: its spans become children of the ingress span
    with telemetry.span("oasis.route", parent=telemetry.extract(carrier)): ...

Ray 2.60's OpenAiIngress forwards the ingress request's headers to LLMServer
as RawRequestInfo.headers, and vLLM reads `traceparent` from those headers when
its own tracing (engine arg `otlp_traces_endpoint`) is on; merging the carrier
into those headers places vLLM's engine span under the ingress span.

Traces are started only when spans are exported somewhere (otlp or memory);
with Prometheus alone, spans are non-recording but still carry a context, so
the API is the same and costs little.

Exemplars are off: the Prometheus text exporter drops them anyway, and the
filter that samples them runs on every measurement of the ingress hot path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import INVALID_SPAN, Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, start_http_server

from oasis_ray.telemetry.gpu_sampler import GpuReading
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.telemetry.settings import TelemetryConfig
from oasis_ray.telemetry.export import (
    AttributeValue,
    MetricPoint,
    SpanRecord,
    build_exporters,
    metric_points,
    span_records,
)
from oasis_ray.telemetry.gpu_metrics import GpuGauges

INSTRUMENTATION_SCOPE = "oasis_ray"

# One late poll is jitter; three in a row means the sampler has stopped.
STALE_AFTER_PERIODS = 3

E2E_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
TPOT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
ENERGY_BUCKETS_J = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)

SPAN_MODEL = "gen_ai.request.model"
SPAN_INPUT_TOKENS = "gen_ai.usage.input_tokens"
SPAN_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
SPAN_QUERY_TYPE = "oasis.query_type"
SPAN_ROUTE = "oasis.route"
SPAN_ENERGY_J = "oasis.energy_j"
SPAN_ENERGY_STATUS = "oasis.energy.status"
SPAN_STATUS_CODE = "http.response.status_code"
ENERGY_SPAN = "oasis.energy"

_NO_SPAN: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def request_attributes(
    *,
    model: str | None = None,
    query_type: QueryType | None = None,
    route: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    energy_j: float | None = None,
    status_code: int | None = None,
) -> dict[str, AttributeValue]:
    """Span attributes under their conventional keys; an unknown value is left out, never written as 0."""
    candidates: dict[str, AttributeValue | None] = {
        SPAN_MODEL: model,
        SPAN_QUERY_TYPE: None if query_type is None else query_type.value,
        SPAN_ROUTE: route,
        SPAN_INPUT_TOKENS: input_tokens,
        SPAN_OUTPUT_TOKENS: output_tokens,
        SPAN_ENERGY_J: energy_j,
        SPAN_STATUS_CODE: status_code,
    }
    return {key: value for key, value in candidates.items() if value is not None}


def status_class(status_code: int) -> str:
    if not 100 <= status_code <= 599:
        raise ValueError(f"status_code: {status_code} is not an HTTP status")
    return f"{status_code // 100}xx"


def _metric_attributes(model: str | None, query_type: QueryType | None, route: str | None) -> dict[str, str]:
    """Labels stay bounded only if model is the resolved model id, never the string a client sent."""
    attributes = {}
    if model is not None:
        attributes["model"] = model
    if query_type is not None:
        attributes["query_type"] = query_type.value
    if route is not None:
        attributes["route"] = route
    return attributes


class Telemetry:
    """One per process (see build_telemetry); `clock` is monotonic and only judges GPU-reading freshness."""

    def __init__(
        self,
        config: TelemetryConfig,
        *,
        prometheus_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        exporters = build_exporters(config, prometheus_registry)
        resource = Resource.create({SERVICE_NAME: config.service_name})
        self._memory_metrics = exporters.memory_metrics
        self._memory_spans = exporters.memory_spans
        self._meter_provider = MeterProvider(
            exporters.metric_readers, resource=resource, exemplar_filter=AlwaysOffExemplarFilter()
        )
        self._tracer_provider = TracerProvider(
            resource=resource, sampler=ParentBased(ALWAYS_ON if exporters.exports_spans else ALWAYS_OFF)
        )
        for processor in exporters.span_processors:
            self._tracer_provider.add_span_processor(processor)
        self._tracer = self._tracer_provider.get_tracer(INSTRUMENTATION_SCOPE)
        self._propagator = TraceContextTextMapPropagator()
        meter = self._meter_provider.get_meter(INSTRUMENTATION_SCOPE)
        self._requests = meter.create_counter("oasis.requests", "{request}", "Requests answered, by status class.")
        self._errors = meter.create_counter("oasis.request.errors", "{request}", "Answers with status >= 400.")
        self._e2e = meter.create_histogram(
            "oasis.request.duration", "s", "End-to-end latency.", explicit_bucket_boundaries_advisory=E2E_BUCKETS_S
        )
        self._ttft = meter.create_histogram(
            "oasis.request.ttft", "s", "Time to first token.", explicit_bucket_boundaries_advisory=TTFT_BUCKETS_S
        )
        self._tpot = meter.create_histogram(
            "oasis.request.tpot", "s", "Time per output token after the first.",
            explicit_bucket_boundaries_advisory=TPOT_BUCKETS_S,
        )
        self._input_tokens = meter.create_counter("oasis.tokens.input", "{token}", "Prompt tokens of answers.")
        self._output_tokens = meter.create_counter("oasis.tokens.output", "{token}", "Generated tokens.")
        self._energy = meter.create_histogram(
            "oasis.request.energy", "J", "Measured GPU energy attributed to a request.",
            explicit_bucket_boundaries_advisory=ENERGY_BUCKETS_J,
        )
        self._energy_unmeasured = meter.create_counter(
            "oasis.request.energy.unmeasured", "{request}", "Requests whose energy could not be measured."
        )
        self._replicas = meter.create_gauge("oasis.route.replicas", "{replica}", "Running replicas by shape.")
        self._scaling = meter.create_counter("oasis.scaling.decisions", "{decision}", "Autoscaler decisions.")
        self._retries = meter.create_counter(
            "oasis.request.retries", "{retry}", "Requests sent again after their replica failed, by where they went."
        )
        self._gpu = GpuGauges(meter, stale_after_s=STALE_AFTER_PERIODS * config.gpu_sample_period_s, clock=clock)
        self._prometheus_server = None
        if config.prometheus_port is not None and exporters.prometheus_registry is not None:
            self._prometheus_server, _ = start_http_server(
                config.prometheus_port, registry=exporters.prometheus_registry
            )

    def record_request(
        self,
        model: str | None,
        query_type: QueryType | None,
        route: str | None,
        *,
        e2e_s: float,
        ttft_s: float | None,
        tpot_s: float | None,
        input_tokens: int,
        output_tokens: int,
        status_code: int,
    ) -> None:
        """Once per answered request, refused ones included (model/query_type/route None where not yet known)."""
        if e2e_s < 0 or input_tokens < 0 or output_tokens < 0:
            raise ValueError(
                f"e2e_s, input_tokens, output_tokens must be >= 0, got {e2e_s}, {input_tokens}, {output_tokens}"
            )
        attributes = _metric_attributes(model, query_type, route)
        attributes["status_class"] = status_class(status_code)
        self._requests.add(1, attributes)
        if status_code >= 400:
            self._errors.add(1, {**attributes, "status_code": status_code})
        self._e2e.record(e2e_s, attributes)
        if ttft_s is not None:
            self._ttft.record(ttft_s, attributes)
        if tpot_s is not None:
            self._tpot.record(tpot_s, attributes)
        self._input_tokens.add(input_tokens, attributes)
        self._output_tokens.add(output_tokens, attributes)

    def record_request_energy(
        self,
        model: str,
        query_type: QueryType,
        route: str,
        energy_j: float | None,
        *,
        parent: Context | None = None,
    ) -> None:
        """When the ledger settles a request: None counts it as unmeasured rather than as 0 J.

        The request's own span has usually ended by then (energy is known one
        sample period later), so with `parent` (the extracted carrier of that
        span) a short child span carries the figure into the trace instead.
        """
        attributes = _metric_attributes(model, query_type, route)
        if energy_j is None:
            self._energy_unmeasured.add(1, attributes)
        else:
            self._energy.record(energy_j, attributes)
        if parent is not None:
            span_attributes = request_attributes(model=model, query_type=query_type, route=route, energy_j=energy_j)
            span_attributes[SPAN_ENERGY_STATUS] = "unmeasured" if energy_j is None else "measured"
            self._tracer.start_span(ENERGY_SPAN, context=parent, attributes=span_attributes).end()

    def set_replicas(self, route: str, shape: str, count: int) -> None:
        """Set every shape the route has run, 0 included, or a shape scaled away keeps its last count."""
        if count < 0:
            raise ValueError(f"count: {count} replicas of {route}/{shape} is negative")
        self._replicas.set(count, {"route": route, "shape": shape})

    def record_scaling(self, record: ScalingRecord) -> None:
        self._scaling.add(1, {"route": record.route, "action": record.action, "advisory": record.advisory})

    def record_retry(self, model: str, query_type: QueryType, from_route: str, to_route: str, reason: str) -> None:
        """One failed trip to a replica (on `route`) that the ingress follows with another, to `to_route`."""
        self._retries.add(1, {**_metric_attributes(model, query_type, from_route), "reason": reason,
                              "to_route": to_route})

    def update_gpu(self, node: str, reading: GpuReading) -> None:
        """Feed each reading a node's GpuSampler publishes; the GPU observables report the latest fresh one per node."""
        self._gpu.update(node, reading)

    def gpu_status(self) -> dict[str, str]:
        """Per node: "ok: N GPU(s)" or "unavailable: why"; empty until a sampler has reported."""
        return self._gpu.status()

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None, *, parent: Context | None = None
    ) -> AbstractContextManager[Span]:
        """A span that is current inside the block, child of the current span or of `parent` (an extracted carrier).

        An exception leaving the block is recorded on the span and marks it as an error.
        """
        return self._tracer.start_as_current_span(name, context=parent, attributes=attributes)

    def inject(self) -> dict[str, str]:
        """The current span's context as W3C tracecontext headers, to send along a handle call."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier)
        return carrier

    def extract(self, carrier: Mapping[str, str]) -> Context:
        """The context a carrier describes; an empty or malformed carrier gives a root context."""
        return self._propagator.extract(carrier)

    def memory_metrics(self) -> list[MetricPoint]:
        if self._memory_metrics is None:
            raise RuntimeError("memory_metrics() needs 'memory' in telemetry.exporters")
        return metric_points(self._memory_metrics)

    def finished_spans(self) -> list[SpanRecord]:
        if self._memory_spans is None:
            raise RuntimeError("finished_spans() needs 'memory' in telemetry.exporters")
        return span_records(self._memory_spans)

    def shutdown(self) -> None:
        """Flushes pending exports and leaves the Prometheus registry, so a new instance can take its place."""
        if self._prometheus_server is not None:
            self._prometheus_server.shutdown()
            self._prometheus_server.server_close()
        self._tracer_provider.shutdown()
        self._meter_provider.shutdown()


class DisabledTelemetry:
    """`enabled: false`: the same calls, recording nothing, so the ingress has one code path and a true baseline."""

    def record_request(
        self,
        model: str | None,
        query_type: QueryType | None,
        route: str | None,
        *,
        e2e_s: float,
        ttft_s: float | None,
        tpot_s: float | None,
        input_tokens: int,
        output_tokens: int,
        status_code: int,
    ) -> None:
        return None

    def record_request_energy(
        self,
        model: str,
        query_type: QueryType,
        route: str,
        energy_j: float | None,
        *,
        parent: Context | None = None,
    ) -> None:
        return None

    def set_replicas(self, route: str, shape: str, count: int) -> None:
        return None

    def record_scaling(self, record: ScalingRecord) -> None:
        return None

    def record_retry(self, model: str, query_type: QueryType, from_route: str, to_route: str, reason: str) -> None:
        return None

    def update_gpu(self, node: str, reading: GpuReading) -> None:
        return None

    def gpu_status(self) -> dict[str, str]:
        return {}

    def span(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None, *, parent: Context | None = None
    ) -> AbstractContextManager[Span]:
        return _NO_SPAN

    def inject(self) -> dict[str, str]:
        return {}

    def extract(self, carrier: Mapping[str, str]) -> Context:
        return Context()

    def memory_metrics(self) -> list[MetricPoint]:
        return []

    def finished_spans(self) -> list[SpanRecord]:
        return []

    def shutdown(self) -> None:
        return None


AnyTelemetry = Telemetry | DisabledTelemetry


def build_telemetry(
    config: TelemetryConfig, *, prometheus_registry: CollectorRegistry | None = None
) -> AnyTelemetry:
    """One per process: a second Prometheus-exporting instance would publish every series twice."""
    if not config.enabled:
        return DisabledTelemetry()
    return Telemetry(config, prometheus_registry=prometheus_registry)
