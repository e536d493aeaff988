"""Every metric and label the Grafana dashboard queries is one the app exports, under Prometheus's naming.

The names come from the exporter itself: a Telemetry built as the ingress
builds it (Prometheus exporter, its own registry), with every instrument fed
once (a GPU reading with a MIG device included, as a GPU node's sampler
sends), then read back as Prometheus exposition text. So a renamed
instrument, a changed unit (which changes the suffix) or a dropped label
fails here, not on an operator's empty panel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from oasis_ray.query_types import QueryType
from oasis_ray.telemetry.instruments import build_telemetry
from oasis_ray.telemetry.settings import TelemetryConfig
from tests.test_telemetry import gpu_sample, mig_sample, scaling_record

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "oasis-ray.json"
METRIC = re.compile(r"\boasis_[a-z0-9_]+\b")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Labels Prometheus itself adds, or that histogram_quantile consumes.
SCRAPE_LABELS = {"le", "job", "instance"}


def exported() -> dict[str, set[str]]:
    """Sample name -> its label names, from the exporter's own output."""
    registry = CollectorRegistry()
    telemetry = build_telemetry(TelemetryConfig(exporters=["prometheus"]), prometheus_registry=registry)
    telemetry.record_request("m", QueryType.SILO, "long-output", e2e_s=2.0, ttft_s=0.2, tpot_s=0.05,
                             input_tokens=30, output_tokens=60, status_code=503)
    telemetry.record_request_energy("m", QueryType.SILO, "long-output", 3.0)
    telemetry.record_request_energy("m", QueryType.SILO, "long-output", None)
    telemetry.set_replicas("long-output", "1g.10gb", 1)
    telemetry.record_scaling(scaling_record("m/long-output", "scale_up", False))
    mig = mig_sample(0, "1g.10gb", gpu_util_pct=40, unsupported=())
    telemetry.update_gpu("node-a", [gpu_sample(0, mig_mode_enabled=True, mig_devices=(mig,))])
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    telemetry.shutdown()
    return names


def queries() -> list[tuple[str, str, str]]:
    """(panel title, expr, legend) of every query of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"], target.get("legendFormat", ""))
            for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_queried_metric_and_label_is_exported() -> None:
    names = exported()
    found = 0
    for title, expr, legend in queries():
        metrics = METRIC.findall(expr)
        if not metrics:
            assert expr.startswith("vector($"), f"{title}: {expr} queries no oasis metric"
            continue
        unknown = [m for m in metrics if m not in names]
        assert not unknown, f"{title}: {unknown} are not exported (exported: {sorted(names)})"
        labels = set().union(*(names[m] for m in metrics)) | SCRAPE_LABELS
        used = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
        used |= set(LEGEND_LABEL.findall(legend))
        assert used <= labels, f"{title}: labels {sorted(used - labels)} are not on {metrics}"
        found += len(metrics)
    assert found >= 15


def test_the_dashboard_covers_what_operators_look_at() -> None:
    exprs = " ".join(expr for _, expr, _ in queries())
    for needed in ("oasis_request_energy_joules_sum", "oasis_gpu_power_watts", "oasis_gpu_energy_joules_total",
                   "oasis_requests_total", "oasis_request_duration_seconds_bucket", "vector($slo_p95_s)",
                   "oasis_route_replicas", "oasis_scaling_decisions_total"):
        assert needed in exprs
