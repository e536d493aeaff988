"""The maximum serviceable request rate (MSRR): the highest throughput whose P95 latency meets the SLO.

This is the paper's eq. 3, searched over closed-loop concurrency. Every load
point costs a fresh round of requests on a real engine, so the number of
points measured is the cost being minimised.

`bisection` (the default): measure concurrency 1, 2, 4, ... until a level
misses the SLO (or `max_concurrency` is reached), then bisect between the
last passing and the first failing concurrency. It stops when the bracket
is one concurrency wide, or when the failing end's throughput is within
`tolerance` of the best passing throughput. Stated tolerance: because
throughput does not fall as concurrency rises below saturation, no
concurrency inside the bracket can exceed the failing end's throughput, so
the MSRR returned is within `tolerance` (relative) of the best one the
bracket can hold.

`linear`: concurrency step, 2*step, ... until the first miss, as the
paper's ramp does; kept to measure what bisection saves.

`ladder`: concurrency 1, 2, 4, ... until a level misses the SLO, reaches
`max_concurrency`, or raises throughput by no more than `tolerance` over the
best level so far (the engine is saturated). It measures a load curve rather
than a boundary: fingerprint profiling (oasis_ray.profiling.fingerprint_estimate)
runs it on shallow copies of a model, then searches the deeper model's
predicted curve instead of an engine. A deeper model is slower at every
concurrency, so its SLO boundary lies inside the shallow model's ladder.

Pure: the engine is reached only through `measure(concurrency)`.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from oasis_ray.profiling.measurement import LoadPoint
from oasis_ray.profiling.sweep_spec import SearchSettings, SloSpec

Measure = Callable[[int], LoadPoint]


class SearchResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    points: list[LoadPoint]
    best: LoadPoint | None
    capped: bool

    @property
    def msrr_req_s(self) -> float:
        """0 when even concurrency 1 misses the SLO: no rate is serviceable."""
        return self.best.requests_per_s if self.best is not None else 0.0


def meets_slo(point: LoadPoint, slo: SloSpec) -> bool:
    """Every configured limit must hold; a NaN percentile (nothing measured) never meets one."""
    limits = [(point.e2e_p95_s, slo.p95_e2e_s), (point.ttft_p95_s, slo.p95_ttft_s), (point.tpot_p95_s, slo.p95_tpot_s)]
    return all(value <= limit for value, limit in limits if limit is not None)


def search_msrr(measure: Measure, slo: SloSpec, settings: SearchSettings) -> SearchResult:
    points: dict[int, LoadPoint] = {}

    def passes(concurrency: int) -> bool:
        if concurrency not in points:
            points[concurrency] = measure(concurrency)
        return meets_slo(points[concurrency], slo)

    if settings.mode == "linear":
        _ramp(passes, settings)
    elif settings.mode == "ladder":
        _ladder(passes, points, settings)
    else:
        _bracket_and_bisect(passes, points, slo, settings)
    passing = [p for p in points.values() if meets_slo(p, slo)]
    best = max(passing, key=lambda p: p.requests_per_s, default=None)
    capped = settings.max_concurrency in points and meets_slo(points[settings.max_concurrency], slo)
    return SearchResult(points=list(points.values()), best=best, capped=capped)


def _ramp(passes: Callable[[int], bool], settings: SearchSettings) -> None:
    for concurrency in range(settings.linear_step, settings.max_concurrency + 1, settings.linear_step):
        if not passes(concurrency):
            return


def _ladder(passes: Callable[[int], bool], points: dict[int, LoadPoint], settings: SearchSettings) -> None:
    concurrency, best_rate = 1, 0.0
    while passes(concurrency) and concurrency < settings.max_concurrency:
        rate = points[concurrency].requests_per_s
        if best_rate and rate <= (1 + settings.tolerance) * best_rate:
            return
        best_rate = max(best_rate, rate)
        concurrency = min(2 * concurrency, settings.max_concurrency)


def _bracket_and_bisect(
    passes: Callable[[int], bool], points: dict[int, LoadPoint], slo: SloSpec, settings: SearchSettings
) -> None:
    low, high = 0, 1
    while passes(high):
        if high == settings.max_concurrency:
            return
        low, high = high, min(2 * high, settings.max_concurrency)
    if low == 0:
        return
    while high - low > 1:
        best_rate = max(p.requests_per_s for p in points.values() if meets_slo(p, slo))
        if points[high].requests_per_s <= (1 + settings.tolerance) * best_rate:
            return
        middle = (low + high) // 2
        if passes(middle):
            low = middle
        else:
            high = middle
