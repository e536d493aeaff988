"""What telemetry costs the ingress per request: the per-request calls with telemetry on vs the no-op, in one run.

Each simulated request does what the ingress will: an ingress span with
admission and route child spans, a carrier injected for the route call,
attributes set after the fact, `record_request`, and (when on) the energy
ledger's add_tokens/finish with an interval closed every 100 requests. No Ray,
no exporter I/O: Prometheus is collected only when scraped, and OTLP ships
from a background thread, so what runs on the request path is what is timed.
Time is this process's CPU time, not wall time: what telemetry takes from
the ingress is CPU, and on a shared machine wall time mostly measures the
other tenants. Modes alternate in rounds so the remaining noise (caches,
frequency) hits them alike; the median round is reported.

The ≤ 5% throughput target is about the whole ingress, so the added time is
also expressed as a share of the ingress's per-request budget at a given
rate given with --ingress-rps (say, what benchmarks/router_overhead.py measured on the same machine);
without it, the rate up to which the added time stays within 5% of each request's budget.

    .venv/bin/python benchmarks/telemetry_overhead.py [--requests 5000] [--rounds 5] [--ingress-rps RPS]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

from prometheus_client import CollectorRegistry

from oasis_ray.telemetry.energy_ledger import EnergyLedger
from oasis_ray.query_types import QueryType
from oasis_ray.telemetry.instruments import AnyTelemetry, build_telemetry, request_attributes
from oasis_ray.telemetry.settings import Exporter, TelemetryConfig

MODEL = "oasis-tiny-llama"
ROUTE = "short-output"
REQUESTS_PER_INTERVAL = 100


def _serve(telemetry: AnyTelemetry, ledger: EnergyLedger | None, request: int) -> None:
    request_id = f"req-{request}"
    now = time.time()
    with telemetry.span("oasis.ingress", request_attributes(model=MODEL)) as span:
        with telemetry.span("oasis.admission"):
            pass
        with telemetry.span("oasis.route", request_attributes(route=ROUTE)):
            telemetry.inject()
        span.set_attributes(
            request_attributes(query_type=QueryType.SISO, route=ROUTE, input_tokens=32, output_tokens=16)
        )
    telemetry.record_request(
        MODEL, QueryType.SISO, ROUTE, e2e_s=0.012, ttft_s=0.004, tpot_s=0.0005,
        input_tokens=32, output_tokens=16, status_code=200,
    )
    if ledger is not None:
        ledger.add_tokens(request_id, 48, now)
        ledger.finish(request_id)
        if request % REQUESTS_PER_INTERVAL == 0:
            ledger.close_interval(now + 1e-6, 25.0)


def _round(telemetry: AnyTelemetry, with_ledger: bool, requests: int) -> float:
    """CPU nanoseconds per request; a fresh ledger per round, as the ingress keeps one that settles as it goes."""
    serve = functools.partial(_serve, telemetry, EnergyLedger() if with_ledger else None)
    start = time.process_time_ns()
    for request in range(requests):
        serve(request)
    return (time.process_time_ns() - start) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="requests per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ingress-rps", type=float, help="ingress throughput to relate the cost to")
    args = parser.parse_args()

    def enabled(*exporters: Exporter) -> AnyTelemetry:
        return build_telemetry(TelemetryConfig(exporters=list(exporters)), prometheus_registry=CollectorRegistry())

    modes: dict[str, tuple[AnyTelemetry, bool]] = {
        "off (enabled: false)": (build_telemetry(TelemetryConfig(enabled=False)), False),
        "on, prometheus (spans unsampled)": (enabled("prometheus"), True),
        "on, prometheus + spans recorded": (enabled("prometheus", "memory"), True),
    }
    for telemetry, with_ledger in modes.values():
        _round(telemetry, with_ledger, min(args.requests, 500))
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name, (telemetry, with_ledger) in modes.items():
            samples[name].append(_round(telemetry, with_ledger, args.requests))
    for telemetry, _ in modes.values():
        telemetry.shutdown()

    off_name = next(iter(modes))
    off_ns = statistics.median(samples[off_name])
    print(f"CPU ns per request, median of {args.rounds} rounds x {args.requests} requests "
          "(3 spans, inject, record_request, and the energy ledger when on):")
    for name, per_round in samples.items():
        ns = statistics.median(per_round)
        line = f"  {name:<34} {ns:>9,.0f} ns"
        if name != off_name:
            added_ns = ns - off_ns
            line += f"  ratio {ns / off_ns:.1f}x the no-op; +{added_ns:,.0f} ns"
            if args.ingress_rps is None:
                line += f", within 5% of the per-request budget up to {0.05e9 / added_ns:,.0f} req/s"
            else:
                share = 100 * added_ns * args.ingress_rps / 1e9
                line += f", {share:.2f}% of a {args.ingress_rps:g} req/s ingress's time"
        print(line)
        print(f"  {'':<34} rounds: {', '.join(f'{value:,.0f}' for value in per_round)} ns")

if __name__ == "__main__":
    main()
