"""A model's cost-table rows estimated from its fingerprints' load curves (iServe §5.3, method L2, under load).

iServe (seed 003, §5.3, eqs. 2-3) splits latency into the hidden layers and
everything else (embedding, LM head, sampling, the scheduler):

    TTFT(L) = TTFT_other + L x TTFT_layer        TPOT(L) = TPOT_other + L x TPOT_layer

and solves the two unknowns of each from fingerprints with one and two hidden
layers. iServe measures single requests; an MSRR needs the latency under load,
so here the split is solved per closed-loop concurrency: both fingerprints run
the same engine configuration and query lengths through the sweep's `ladder`
search (concurrency 1, 2, 4, ... up to a miss or saturation), and at every
concurrency both measured, each latency figure (TTFT, TPOT, end to end; P50,
P95, P99) and the mean time a request holds a slot (concurrency / throughput,
Little's law for a closed loop) are split into `other + L x per_layer` and
evaluated at the model's depth. That predicted load curve is then searched
for the MSRR with the same search code and settings a measured trial uses,
interpolating linearly in concurrency between measured levels. The deeper
model is slower at every concurrency, so its SLO boundary lies inside the
fingerprints' ladder.

Nothing is clamped: where the fingerprints do not resolve a positive
per-layer cost in throughput (noise larger than one layer's work) or a
percentile the SLO limits, the estimate fails with the figures named, and its
row says so; another percentile they cannot resolve is NaN, never a guess.
Power is not estimated (iServe leaves extrapolating power from fingerprints
to further work, seed 003 §9): estimated rows carry NaN power with the reason.

Pure: load points in, load points and a SearchResult out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from oasis_ray.profiling.measurement import LoadPoint
from oasis_ray.profiling.msrr_search import SearchResult, search_msrr
from oasis_ray.profiling.sweep_plan import Trial
from oasis_ray.profiling.sweep_spec import SloSpec
from oasis_ray.profiling.trial_outcome import TrialOutcome, estimated_outcome, failed_outcome, utc_now

LATENCY_FIELDS = tuple(f"{metric}_p{p}_s" for metric in ("e2e", "ttft", "tpot") for p in (50, 95, 99))
METHOD = "fingerprint estimate (iServe L2, seed 003 §5.3): t(L) = t_other + L x t_layer"


class EstimateError(ValueError):
    """Fingerprint measurements that cannot be extrapolated; the message names the figure and concurrency."""


class LayerSplit(BaseModel):
    """One latency figure split into the hidden layers' share and the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    other_s: float
    per_layer_s: float

    def at(self, layers: int) -> float:
        return self.other_s + layers * self.per_layer_s


def split_by_layers(latency_s: Mapping[int, float]) -> LayerSplit:
    """The line through (hidden layers, latency): the 2x2 solve for two fingerprints, least squares for more."""
    if len(latency_s) < 2:
        raise EstimateError(f"need fingerprints of two depths to split latency, got {sorted(latency_s)}")
    layers = np.array(sorted(latency_s), dtype=float)
    values = np.array([latency_s[int(n)] for n in layers], dtype=float)
    per_layer, other = np.polyfit(layers, values, 1)
    return LayerSplit(other_s=float(other), per_layer_s=float(per_layer))


def predicted_point(by_layers: Mapping[int, LoadPoint], layers: int, slo: SloSpec) -> LoadPoint:
    """The `layers`-deep model's load point at the fingerprints' (common) concurrency.

    What the MSRR rests on must resolve, or the estimate fails: a positive
    per-layer cost in the time a request holds a slot (throughput) and a
    positive value for every percentile the SLO limits. Another percentile
    the fingerprints' noise drives to a non-positive value is left NaN,
    unknown, rather than written as a latency.
    """
    concurrencies = {point.concurrency for point in by_layers.values()}
    if len(concurrencies) != 1:
        raise EstimateError(f"fingerprint load points at different concurrencies {sorted(concurrencies)}")
    (concurrency,) = concurrencies
    slot = split_by_layers({n: _slot_s(point) for n, point in by_layers.items()})
    if not slot.per_layer_s > 0:
        shown = ", ".join(f"{n} layer(s) {_slot_s(p):.4f} s" for n, p in sorted(by_layers.items()))
        raise EstimateError(
            f"concurrency {concurrency}: the fingerprints show no per-layer cost in the time a request holds "
            f"a slot ({shown}); the measurement noise exceeds one layer's work"
        )
    latencies = {name: split_by_layers({n: getattr(p, name) for n, p in by_layers.items()}) for name in LATENCY_FIELDS}
    figures = {name: split.at(layers) for name, split in latencies.items()}
    bad = [f"{name} {figures[name]:.4g} s" for name in _slo_limited(slo) if not figures[name] > 0]
    if bad:
        raise EstimateError(f"concurrency {concurrency}: predicted {', '.join(bad)}, not a latency")
    figures = {name: value if value > 0 else math.nan for name, value in figures.items()}
    output_tokens = _output_tokens(next(iter(by_layers.values())))
    return _point(concurrency, figures, slot.at(layers), output_tokens)


def predicted_curve(curves: Mapping[int, Sequence[LoadPoint]], layers: int, slo: SloSpec) -> dict[int, LoadPoint]:
    """Predicted load points at every concurrency all fingerprints measured, by concurrency."""
    by_concurrency = [{point.concurrency: point for point in curve} for curve in curves.values()]
    common = sorted(set.intersection(*(set(points) for points in by_concurrency)))
    if not common:
        raise EstimateError("the fingerprints share no measured concurrency")
    return {
        c: predicted_point({n: points[c] for n, points in zip(curves, by_concurrency)}, layers, slo) for c in common
    }


def interpolated_point(curve: Mapping[int, LoadPoint], concurrency: int) -> LoadPoint:
    """The curve at `concurrency`: a predicted level, or linear in concurrency between the two around it."""
    if concurrency in curve:
        return curve[concurrency]
    below = [c for c in curve if c < concurrency]
    above = [c for c in curve if c > concurrency]
    if not below or not above:
        raise EstimateError(f"concurrency {concurrency} is outside the fingerprints' ladder {sorted(curve)}")
    low, high = curve[max(below)], curve[min(above)]
    share = (concurrency - low.concurrency) / (high.concurrency - low.concurrency)

    def between(a: float, b: float) -> float:
        return a + share * (b - a)

    figures = {name: between(getattr(low, name), getattr(high, name)) for name in LATENCY_FIELDS}
    return _point(concurrency, figures, between(_slot_s(low), _slot_s(high)), _output_tokens(low))


def search_predicted(curve: Mapping[int, LoadPoint], trial: Trial) -> SearchResult:
    """The trial's own search (mode, tolerance, SLO) run over the predicted curve instead of an engine.

    It may not go past the ladder's last level: beyond it nothing was measured.
    """
    settings = trial.search.model_copy(update={"max_concurrency": min(trial.search.max_concurrency, max(curve))})
    return search_msrr(lambda c: interpolated_point(curve, c), trial.slo, settings)


def estimate_outcome(trial: Trial, fingerprints: Mapping[int, TrialOutcome], layers: int, run_id: str) -> TrialOutcome:
    """The trial's row and predicted load points, derived from its fingerprints' trials; a failed row if it cannot be.

    `fingerprints` maps each fingerprint's hidden-layer count to its trial
    (same engine configuration and query lengths as `trial`, ladder search).
    """
    names = ", ".join(f"{n}L {fp.row.trial_id}" for n, fp in sorted(fingerprints.items()))
    note = f"{METHOD}, fitted per concurrency to fingerprint trials {names}, evaluated at {layers} layers"
    try:
        curves = _ladder_curves(fingerprints)
        result = search_predicted(predicted_curve(curves, layers, trial.slo), trial)
    except EstimateError as error:
        started = min((fp.row.started_at for fp in fingerprints.values()), default=utc_now())
        return failed_outcome(
            trial,
            run_id=run_id,
            error=f"fingerprint estimate failed: {error}",
            started_at=started,
            provenance="derived",
            provenance_note=note,
        )
    rows = [fingerprints[n].row for n in sorted(fingerprints)]
    # The estimate is capped only where every ladder ran out of concurrency while still meeting the SLO.
    capped = result.capped and all(row.msrr_capped for row in rows)
    return estimated_outcome(trial, run_id=run_id, result=result, capped=capped, basis=rows, note=note)


def _ladder_curves(fingerprints: Mapping[int, TrialOutcome]) -> dict[int, list[LoadPoint]]:
    if len(fingerprints) < 2:
        raise EstimateError(f"need fingerprints of two depths, got {sorted(fingerprints)}")
    failed = [
        f"{n}L trial {fp.row.trial_id}: {fp.row.error}"
        for n, fp in sorted(fingerprints.items())
        if fp.row.status != "ok"
    ]
    if failed:
        raise EstimateError("fingerprint trial failed: " + "; ".join(failed))
    fields = set(LoadPoint.model_fields)
    return {
        n: [LoadPoint(**point.model_dump(include=fields)) for point in fp.load_points]
        for n, fp in sorted(fingerprints.items())
    }


def _slo_limited(slo: SloSpec) -> list[str]:
    """The percentiles the SLO sets a limit on: the end-to-end P95 always, TTFT and TPOT P95 when given."""
    limits = {"e2e_p95_s": slo.p95_e2e_s, "ttft_p95_s": slo.p95_ttft_s, "tpot_p95_s": slo.p95_tpot_s}
    return [name for name, limit in limits.items() if limit is not None]


def _slot_s(point: LoadPoint) -> float:
    """Mean seconds a request holds one of the closed loop's slots: concurrency / throughput (Little's law)."""
    return point.concurrency / point.requests_per_s


def _output_tokens(point: LoadPoint) -> float:
    return point.output_tokens_per_s / point.requests_per_s


def _point(concurrency: int, latencies: Mapping[str, float], slot_s: float, output_tokens: float) -> LoadPoint:
    """A predicted level: no request was measured at it and nothing was metered."""
    requests_per_s = concurrency / slot_s
    return LoadPoint(
        concurrency=concurrency,
        warmup_requests=0,
        measured_requests=0,
        window_s=math.nan,
        **latencies,
        requests_per_s=requests_per_s,
        output_tokens_per_s=requests_per_s * output_tokens,
        power_available=False,
        mean_power_w=math.nan,
        energy_j=math.nan,
        energy_per_token_j=math.nan,
        sm_clock_mhz=math.nan,
    )

