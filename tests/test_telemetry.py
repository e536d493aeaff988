"""Telemetry through its in-memory exporter: metric names, attributes, counts; spans and propagation; no-op mode."""

from __future__ import annotations

import inspect
import socket
import urllib.request

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from oasis_ray.telemetry.nvml import GpuSample, MigSample
from oasis_ray.query_types import QueryType
from oasis_ray.scaling.record import ScalingRecord
from oasis_ray.telemetry.instruments import (
    SPAN_ENERGY_J,
    SPAN_QUERY_TYPE,
    SPAN_ROUTE,
    STALE_AFTER_PERIODS,
    DisabledTelemetry,
    Telemetry,
    build_telemetry,
    request_attributes,
)
from oasis_ray.telemetry.settings import TelemetryConfig
from oasis_ray.telemetry.export import MetricPoint, otlp_exporters

MODEL = "oasis-tiny-llama"
PERIOD_S = 1.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def telemetry(clock: FakeClock):
    instance = Telemetry(TelemetryConfig(exporters=["memory"], gpu_sample_period_s=PERIOD_S), clock=clock)
    yield instance
    instance.shutdown()


def points(telemetry: Telemetry, name: str) -> list[MetricPoint]:
    return [point for point in telemetry.memory_metrics() if point.name == name]


def point(telemetry: Telemetry, name: str, **attributes: object) -> MetricPoint:
    matching = [p for p in points(telemetry, name) if p.attributes == attributes]
    assert len(matching) == 1, f"{name} {attributes}: {points(telemetry, name)}"
    return matching[0]


def gpu_sample(index: int, **overrides: object) -> GpuSample:
    fields: dict[str, object] = {
        "index": index, "uuid": f"GPU-{index}", "name": "NVIDIA H100 80GB HBM3", "driver_version": "550.54.15",
        "power_w": 312.5, "energy_mj": 9_876_543_210, "sm_clock_mhz": 1980, "mem_clock_mhz": 2619,
        "gpu_util_pct": 87, "mem_used_bytes": 40 << 30, "throttle_reasons": 0, "mig_mode_enabled": False,
        "timestamp_s": 1_700_000_000.0,
    }
    return GpuSample(**(fields | overrides))


def mig_sample(slot: int, profile: str, **overrides: object) -> MigSample:
    fields: dict[str, object] = {
        "parent_index": 0, "slot": slot, "uuid": f"MIG-{slot}", "profile": profile, "mem_used_bytes": (slot + 1) << 30,
        "mem_total_bytes": 10 << 30, "gpu_util_pct": None, "unsupported": ("gpu_util_pct",),
    }
    return MigSample(**(fields | overrides))


def scaling_record(route: str, action: str, advisory: bool) -> ScalingRecord:
    return ScalingRecord(
        route=route, action=action, advisory=advisory, observed_rps=3.0, forecast_rps=None, need_rps=3.3,
        gpus_required=1.0, chosen_shape="full-gpu", chosen_replicas=1, msrr_rps=4.0,
        replicas_before={"full-gpu": 1}, replicas_after={"full-gpu": 1}, reason="test",
    )


# --- config ------------------------------------------------------------------------------------


def test_config_defaults_are_prometheus_on_without_the_energy_header() -> None:
    config = TelemetryConfig()
    assert (config.enabled, config.exporters, config.service_name) == (True, ["prometheus"], "oasis-ray")
    assert (config.energy_header, config.gpu_sample_period_s, config.otlp_endpoint) == (False, 1.0, None)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"gpu_sample_period_s": 0}, "gpu_sample_period_s"),
        ({"exporters": ["statsd"]}, "exporters"),
        ({"exporters": ["memory", "memory"]}, "exporters"),
        ({"exporters": ["memory"], "otlp_endpoint": "http://collector:4318"}, "otlp_endpoint"),
        ({"exporters": ["otlp"], "otlp_endpoint": "collector:4318"}, "otlp_endpoint"),
        ({"exporters": ["memory"], "prometheus_port": 9464}, "prometheus_port"),
        ({"prometheus_port": 0}, "prometheus_port"),
        ({"sample_period": 1.0}, "sample_period"),
        ({"engine_traces_endpoint": "collector:4318/v1/traces"}, "engine_traces_endpoint"),
        ({"enabled": False, "engine_traces_endpoint": "http://collector:4318/v1/traces"}, "engine_traces_endpoint"),
        ({"enabled": False, "energy_header": True}, "energy_header"),
    ],
)
def test_config_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        TelemetryConfig.model_validate(raw)
    assert field in str(error.value)


def test_engine_tracing_is_vllms_own_with_the_configured_protocol() -> None:
    assert TelemetryConfig().engine_tracing() == ({}, {})
    config = TelemetryConfig(engine_traces_endpoint="http://collector:4317", otlp_protocol="grpc")
    assert config.engine_tracing() == (
        {"otlp_traces_endpoint": "http://collector:4317"}, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    )


# --- request metrics ---------------------------------------------------------------------------


def test_requests_are_counted_and_timed_by_model_query_type_route_and_status_class(telemetry: Telemetry) -> None:
    for e2e_s in (0.5, 1.5):
        telemetry.record_request(
            MODEL, QueryType.SISO, "short-output", e2e_s=e2e_s, ttft_s=0.1, tpot_s=0.02,
            input_tokens=20, output_tokens=8, status_code=200,
        )
    telemetry.record_request(
        MODEL, QueryType.LILO, "long-output", e2e_s=0.01, ttft_s=None, tpot_s=None,
        input_tokens=700, output_tokens=0, status_code=503,
    )
    short = {"model": MODEL, "query_type": "SISO", "route": "short-output", "status_class": "2xx"}
    failed = {"model": MODEL, "query_type": "LILO", "route": "long-output", "status_class": "5xx"}
    assert point(telemetry, "oasis.requests", **short).value == 2
    assert point(telemetry, "oasis.requests", **failed).value == 1
    assert [p.attributes for p in points(telemetry, "oasis.request.errors")] == [failed | {"status_code": 503}]
    e2e = point(telemetry, "oasis.request.duration", **short)
    assert (e2e.count, e2e.sum, e2e.unit) == (2, pytest.approx(2.0), "s")
    assert point(telemetry, "oasis.request.ttft", **short).count == 2
    assert point(telemetry, "oasis.request.tpot", **short).count == 2
    assert [p.attributes for p in points(telemetry, "oasis.request.ttft")] == [short]
    assert point(telemetry, "oasis.tokens.input", **short).value == 40
    assert point(telemetry, "oasis.tokens.output", **short).value == 16
    assert point(telemetry, "oasis.tokens.input", **failed).value == 700


def test_a_request_refused_before_routing_carries_only_what_is_known(telemetry: Telemetry) -> None:
    telemetry.record_request(
        None, None, None, e2e_s=0.001, ttft_s=None, tpot_s=None, input_tokens=0, output_tokens=0, status_code=404
    )
    assert point(telemetry, "oasis.requests", status_class="4xx").value == 1
    assert point(telemetry, "oasis.request.errors", status_class="4xx", status_code=404).value == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"e2e_s": -0.1}, "e2e_s"), ({"output_tokens": -1}, "output_tokens"), ({"status_code": 700}, "status_code")],
)
def test_impossible_request_figures_are_refused(telemetry: Telemetry, overrides: dict, message: str) -> None:
    figures = {"e2e_s": 1.0, "ttft_s": None, "tpot_s": None, "input_tokens": 1, "output_tokens": 1, "status_code": 200}
    with pytest.raises(ValueError, match=message):
        telemetry.record_request(MODEL, QueryType.SISO, "short-output", **(figures | overrides))


# --- replicas and scaling ----------------------------------------------------------------------


def test_replicas_are_gauged_per_route_and_shape_and_keep_an_explicit_zero(telemetry: Telemetry) -> None:
    telemetry.set_replicas("m/short", "full-gpu", 2)
    telemetry.set_replicas("m/short", "1g.10gb", 3)
    telemetry.set_replicas("m/short", "1g.10gb", 0)
    assert point(telemetry, "oasis.route.replicas", route="m/short", shape="full-gpu").value == 2
    assert point(telemetry, "oasis.route.replicas", route="m/short", shape="1g.10gb").value == 0
    with pytest.raises(ValueError, match="count"):
        telemetry.set_replicas("m/short", "cpu", -1)


def test_scaling_decisions_are_counted_by_route_action_and_advisory(telemetry: Telemetry) -> None:
    telemetry.record_scaling(scaling_record("m/short", "scale_up", advisory=False))
    telemetry.record_scaling(scaling_record("m/short", "scale_up", advisory=False))
    telemetry.record_scaling(scaling_record("m/long", "hold", advisory=True))
    assert point(telemetry, "oasis.scaling.decisions", route="m/short", action="scale_up", advisory=False).value == 2
    assert point(telemetry, "oasis.scaling.decisions", route="m/long", action="hold", advisory=True).value == 1


# --- GPU ---------------------------------------------------------------------------------------

GPU_METRICS = (
    "oasis.gpu.power", "oasis.gpu.energy", "oasis.gpu.sm_clock", "oasis.gpu.memory_clock",
    "oasis.gpu.utilization", "oasis.gpu.memory.used", "oasis.gpu.mig.memory.used", "oasis.gpu.mig.utilization",
)


def test_gpu_metrics_report_the_latest_samples_per_node_and_gpu(telemetry: Telemetry) -> None:
    telemetry.update_gpu("node-a", [gpu_sample(0), gpu_sample(1, power_w=70.0)])
    telemetry.update_gpu("node-a", [gpu_sample(0, power_w=300.0), gpu_sample(1, power_w=71.0)])
    gpu0 = {"node": "node-a", "gpu_index": 0, "gpu_uuid": "GPU-0", "gpu_name": "NVIDIA H100 80GB HBM3"}
    assert point(telemetry, "oasis.gpu.power", **gpu0).value == 300.0
    assert point(telemetry, "oasis.gpu.power", **(gpu0 | {"gpu_index": 1, "gpu_uuid": "GPU-1"})).value == 71.0
    energy = point(telemetry, "oasis.gpu.energy", **gpu0)
    assert (energy.value, energy.unit) == (pytest.approx(9_876_543.21), "J")
    sm_clock = point(telemetry, "oasis.gpu.sm_clock", **gpu0)
    assert (sm_clock.value, sm_clock.unit) == (1_980_000_000, "Hz")
    assert point(telemetry, "oasis.gpu.memory_clock", **gpu0).value == 2_619_000_000
    assert point(telemetry, "oasis.gpu.utilization", **gpu0).value == 87
    assert telemetry.gpu_status() == {"node-a": "ok: 2 GPU(s)"}


def test_a_metric_the_gpu_lacks_is_absent_not_zero(telemetry: Telemetry) -> None:
    telemetry.update_gpu("node-a", [gpu_sample(0, power_w=None, energy_mj=None, unsupported=("power_w", "energy_mj"))])
    assert points(telemetry, "oasis.gpu.power") == []
    assert points(telemetry, "oasis.gpu.energy") == []
    assert len(points(telemetry, "oasis.gpu.sm_clock")) == 1


def test_mig_devices_are_gauged_per_slice_and_unmeasured_utilisation_is_absent(
    telemetry: Telemetry, clock: FakeClock
) -> None:
    slices = (mig_sample(0, "1g.10gb"), mig_sample(2, "3g.40gb", gpu_util_pct=40, unsupported=()))
    telemetry.update_gpu("node-a", [gpu_sample(0, mig_mode_enabled=True, mig_devices=slices), gpu_sample(1)])
    parent = {"node": "node-a", "gpu_index": 0, "gpu_uuid": "GPU-0"}
    small = point(telemetry, "oasis.gpu.mig.memory.used", **parent, mig_uuid="MIG-0", mig_profile="1g.10gb")
    large = point(telemetry, "oasis.gpu.mig.memory.used", **parent, mig_uuid="MIG-2", mig_profile="3g.40gb")
    assert (small.value, small.unit, large.value) == (1 << 30, "By", 3 << 30)
    assert len(points(telemetry, "oasis.gpu.mig.memory.used")) == 2, "a GPU without MIG has no MIG series"
    utilization = points(telemetry, "oasis.gpu.mig.utilization")
    assert [(p.attributes["mig_uuid"], p.value, p.unit) for p in utilization] == [("MIG-2", 40, "%")]
    clock.now += STALE_AFTER_PERIODS * PERIOD_S + 0.5
    assert points(telemetry, "oasis.gpu.mig.memory.used") == []


def test_without_nvml_gpu_metrics_are_absent_and_the_status_says_unavailable(telemetry: Telemetry) -> None:
    telemetry.update_gpu("node-a", "unavailable: nvmlInit failed: NVML Shared Library Not Found")
    telemetry.record_request(
        MODEL, QueryType.SISO, "short-output", e2e_s=0.1, ttft_s=0.01, tpot_s=0.01,
        input_tokens=5, output_tokens=5, status_code=200,
    )
    names = {p.name for p in telemetry.memory_metrics()}
    assert "oasis.requests" in names
    assert not names & set(GPU_METRICS)
    assert telemetry.gpu_status() == {"node-a": "unavailable: nvmlInit failed: NVML Shared Library Not Found"}


def test_a_bare_reason_is_reported_as_unavailable(telemetry: Telemetry) -> None:
    telemetry.update_gpu("node-a", "NVML error while sampling: GPU is lost")
    telemetry.update_gpu("node-b", [])
    assert telemetry.gpu_status() == {
        "node-a": "unavailable: NVML error while sampling: GPU is lost",
        "node-b": "unavailable: the sampler reported no GPU",
    }


def test_a_stalled_sampler_stops_its_gpu_metrics_and_is_reported(telemetry: Telemetry, clock: FakeClock) -> None:
    telemetry.update_gpu("node-a", [gpu_sample(0)])
    clock.now += STALE_AFTER_PERIODS * PERIOD_S
    assert len(points(telemetry, "oasis.gpu.power")) == 1
    clock.now += 0.5
    assert not {p.name for p in telemetry.memory_metrics()} & set(GPU_METRICS)
    assert telemetry.gpu_status() == {"node-a": "unavailable: no GPU sample for 3.5 s (limit 3 s)"}


def test_gpu_status_is_empty_until_a_sampler_reports(telemetry: Telemetry) -> None:
    assert telemetry.gpu_status() == {}


# --- spans -------------------------------------------------------------------------------------


def test_stage_spans_nest_under_the_ingress_span_and_take_attributes_later(telemetry: Telemetry) -> None:
    with telemetry.span("oasis.ingress", request_attributes(model=MODEL)) as ingress:
        with telemetry.span("oasis.route", {SPAN_ROUTE: "short-output"}):
            with telemetry.span("oasis.engine") as engine:
                engine.set_attributes(request_attributes(input_tokens=20, output_tokens=8))
        ingress.set_attributes(request_attributes(query_type=QueryType.SISO, route="short-output", energy_j=None))
    spans = {span.name: span for span in telemetry.finished_spans()}
    assert spans["oasis.route"].parent_span_id == spans["oasis.ingress"].span_id
    assert spans["oasis.engine"].parent_span_id == spans["oasis.route"].span_id
    assert spans["oasis.ingress"].parent_span_id is None
    assert len({span.trace_id for span in spans.values()}) == 1
    assert spans["oasis.ingress"].attributes == {
        "gen_ai.request.model": MODEL, SPAN_QUERY_TYPE: "SISO", SPAN_ROUTE: "short-output"
    }
    assert spans["oasis.engine"].attributes == {"gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 8}


def test_an_exception_marks_the_span_as_an_error(telemetry: Telemetry) -> None:
    with pytest.raises(RuntimeError), telemetry.span("oasis.ingress"):
        raise RuntimeError("engine died")
    assert [span.status for span in telemetry.finished_spans()] == ["ERROR"]


def test_a_carrier_links_spans_across_processes() -> None:
    ingress_side = Telemetry(TelemetryConfig(exporters=["memory"]))
    route_side = Telemetry(TelemetryConfig(exporters=["memory"]))
    try:
        with ingress_side.span("oasis.ingress"):
            carrier = ingress_side.inject()
        assert set(carrier) == {"traceparent"}
        with route_side.span("oasis.route", parent=route_side.extract(carrier)):
            pass
        (ingress,) = ingress_side.finished_spans()
        (route,) = route_side.finished_spans()
        assert (route.trace_id, route.parent_span_id) == (ingress.trace_id, ingress.span_id)
    finally:
        ingress_side.shutdown()
        route_side.shutdown()


def test_an_empty_carrier_starts_a_new_trace(telemetry: Telemetry) -> None:
    with telemetry.span("oasis.route", parent=telemetry.extract({})):
        pass
    assert telemetry.finished_spans()[0].parent_span_id is None


def test_settled_energy_is_a_histogram_an_unmeasured_count_and_a_child_span(telemetry: Telemetry) -> None:
    with telemetry.span("oasis.ingress"):
        carrier = telemetry.inject()
    telemetry.record_request_energy(MODEL, QueryType.SISO, "short-output", 12.5, parent=telemetry.extract(carrier))
    telemetry.record_request_energy(MODEL, QueryType.SISO, "short-output", None, parent=telemetry.extract(carrier))
    labels = {"model": MODEL, "query_type": "SISO", "route": "short-output"}
    energy = point(telemetry, "oasis.request.energy", **labels)
    assert (energy.count, energy.sum, energy.unit) == (1, 12.5, "J")
    assert point(telemetry, "oasis.request.energy.unmeasured", **labels).value == 1
    ingress, *energy_spans = telemetry.finished_spans()
    assert [s.parent_span_id for s in energy_spans] == [ingress.span_id, ingress.span_id]
    assert [s.attributes.get(SPAN_ENERGY_J) for s in energy_spans] == [12.5, None]
    assert [s.attributes["oasis.energy.status"] for s in energy_spans] == ["measured", "unmeasured"]


def test_request_attributes_leave_out_unknowns() -> None:
    assert request_attributes(model=MODEL, energy_j=None, output_tokens=0) == {
        "gen_ai.request.model": MODEL, "gen_ai.usage.output_tokens": 0
    }


# --- exporters, providers, disabled mode -------------------------------------------------------


def test_prometheus_exposes_the_metrics_under_prometheus_names_until_shutdown() -> None:
    registry = CollectorRegistry()
    telemetry = build_telemetry(TelemetryConfig(exporters=["prometheus"]), prometheus_registry=registry)
    telemetry.record_request(
        MODEL, QueryType.SILO, "long-output", e2e_s=2.0, ttft_s=0.2, tpot_s=0.05,
        input_tokens=30, output_tokens=600, status_code=200,
    )
    exposition = generate_latest(registry).decode()
    assert 'oasis_requests_total{model="oasis-tiny-llama"' in exposition
    assert 'query_type="SILO"' in exposition and 'route="long-output"' in exposition
    assert "oasis_request_duration_seconds_count" in exposition
    assert 'service_name="oasis-ray"' in exposition
    telemetry.shutdown()
    assert "oasis_" not in generate_latest(registry).decode()


def test_prometheus_port_serves_the_metrics_until_shutdown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = TelemetryConfig(exporters=["prometheus"], prometheus_port=port)
    telemetry = build_telemetry(config, prometheus_registry=CollectorRegistry())
    telemetry.set_replicas("m/short", "cpu", 1)
    url = f"http://127.0.0.1:{port}/metrics"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=10) as response:
        assert "oasis_route_replicas{" in response.read().decode()
    telemetry.shutdown()
    with pytest.raises(OSError):
        direct.open(url, timeout=10)


def test_without_a_span_exporter_spans_do_not_record_and_the_carrier_says_unsampled() -> None:
    telemetry = build_telemetry(TelemetryConfig(exporters=["prometheus"]), prometheus_registry=CollectorRegistry())
    with telemetry.span("oasis.ingress") as span:
        carrier = telemetry.inject()
    telemetry.shutdown()
    assert not span.is_recording()
    assert int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0


def test_the_global_providers_are_left_to_ray_and_vllm(telemetry: Telemetry) -> None:
    with telemetry.span("oasis.ingress"):
        telemetry.record_request(
            MODEL, QueryType.SISO, "s", e2e_s=0.1, ttft_s=None, tpot_s=None,
            input_tokens=1, output_tokens=1, status_code=200,
        )
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_memory_readers_must_be_configured_to_be_read() -> None:
    telemetry = build_telemetry(TelemetryConfig(exporters=["prometheus"]), prometheus_registry=CollectorRegistry())
    with pytest.raises(RuntimeError, match="memory"):
        telemetry.memory_metrics()
    telemetry.shutdown()


def test_otlp_http_endpoints_get_the_signal_paths_and_grpc_keeps_the_address() -> None:
    spans, metrics_exporter = otlp_exporters(TelemetryConfig(exporters=["otlp"], otlp_endpoint="http://collector:4318/"))
    # The HTTP exporters keep their URL only in a private attribute.
    assert (vars(spans)["_endpoint"], vars(metrics_exporter)["_endpoint"]) == (
        "http://collector:4318/v1/traces", "http://collector:4318/v1/metrics"
    )
    grpc_spans, grpc_metrics = otlp_exporters(
        TelemetryConfig(exporters=["otlp"], otlp_endpoint="http://collector:4317", otlp_protocol="grpc")
    )
    assert "grpc" in type(grpc_spans).__module__ and "grpc" in type(grpc_metrics).__module__


def test_disabled_telemetry_records_nothing_and_propagates_nothing() -> None:
    registry = CollectorRegistry()
    config = TelemetryConfig(enabled=False, exporters=["prometheus", "memory"])
    telemetry = build_telemetry(config, prometheus_registry=registry)
    assert isinstance(telemetry, DisabledTelemetry)
    with telemetry.span("oasis.ingress", {SPAN_ROUTE: "r"}) as span:
        span.set_attribute(SPAN_ENERGY_J, 1.0)
        carrier = telemetry.inject()
    telemetry.record_request(
        MODEL, QueryType.SISO, "r", e2e_s=0.1, ttft_s=None, tpot_s=None, input_tokens=1, output_tokens=1,
        status_code=200,
    )
    telemetry.update_gpu("node-a", [gpu_sample(0)])
    assert not span.is_recording()
    assert carrier == {}
    assert "oasis_" not in generate_latest(registry).decode()
    assert telemetry.memory_metrics() == [] and telemetry.finished_spans() == []


def test_disabled_telemetry_offers_exactly_the_same_calls() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")
        }

    assert public(DisabledTelemetry) == public(Telemetry)
