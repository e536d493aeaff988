"""Per-request intents: which running (route, shape) of a model should serve one request.

A request's `x-oasis-intent` (or GenerateRequest.intent) asks for the lowest
latency, energy or cost *among what is already running*: another route of the
model whose context fits and whose configuration the cost table rates better
for this query type, or another shape of the same route (a full GPU over a
MIG slice for min-latency, often the other way for min-energy). It never
starts, stops or moves a replica; the autoscaler keeps sizing every route by
its own traffic.

Targets are ranked by the same objective the deployment choice uses
(oasis_ray.intents.objective_key), on the table's figures for the
request's query type at each target's configuration and shape (energy at
the MSRR load the autoscaler keeps replicas at, latency unloaded). A target whose figure the intent needs
is unknown (no power measured, no row for the type) is no candidate; when no
target qualifies the request goes where its query type is configured to go.
Ties keep the configured route. Pure: the ingress passes the running replica
counts from its cached view (deployments/running_replicas.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.api import OasisRequestError
from oasis_ray.intents import INTENT_HEADER, Intent, objective_key
from oasis_ray.query_types import QueryType


class ShapeFigures(BaseModel):
    """One query type on one shape at one configuration (oasis_ray.costs.config_choice); None: the table has no figure."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    msrr_rps: float = Field(gt=0)
    gpu_fraction: float = Field(gt=0, le=1)
    p95_unloaded_s: float | None = Field(None, gt=0)
    energy_per_request_j: float | None = Field(None, gt=0)

    def known_for(self, intent: Intent) -> bool:
        if intent is Intent.MIN_ENERGY:
            return self.energy_per_request_j is not None
        if intent is Intent.MIN_LATENCY:
            return self.p95_unloaded_s is not None
        return True

    def key(self, intent: Intent) -> tuple[float, float]:
        return objective_key(intent, msrr_rps=self.msrr_rps, energy_per_request_j=self.energy_per_request_j,
                             p95_unloaded_s=self.p95_unloaded_s, gpu_fraction=self.gpu_fraction)


class Target(BaseModel):
    """A (route, shape) of a model as deployed: its context and the table's figures per query type it has rows for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    route: str
    shape: str
    max_model_len: int = Field(ge=1)
    figures: dict[QueryType, ShapeFigures]


class IntentTargets(BaseModel):
    """Every deployed (route, shape) per model, built once from the cost table when the app is built."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by_model: dict[str, tuple[Target, ...]]

    def choose(
        self, intent: Intent, *, model_id: str, query_type: QueryType, tokens: int, configured_route: str,
        running: Mapping[str, Mapping[str, int]],
    ) -> Target | None:
        """The target that best meets the intent for this request, or None: serve it as configured.

        `tokens` is the prompt plus the output budget (the context it needs);
        `running` maps route name to running replicas per shape.
        """
        if intent is Intent.SLO:
            return None
        eligible = [
            (target.figures[query_type].key(intent), target.route != configured_route, position, target)
            for position, target in enumerate(self.by_model.get(model_id, ()))
            if running.get(target.route, {}).get(target.shape, 0) > 0
            and target.max_model_len >= tokens
            and query_type in target.figures
            and target.figures[query_type].known_for(intent)
        ]
        return min(eligible, key=lambda ranked: ranked[:3])[3] if eligible else None


def parse_intent(value: str | None) -> Intent:
    """The header's intent; absent means `slo` (route by query type, as configured). Unknown values are a 400."""
    if value is None:
        return Intent.SLO
    try:
        return Intent(value.strip().lower())
    except ValueError:
        known = ", ".join(intent.value for intent in Intent)
        raise OasisRequestError(400, f"{INTENT_HEADER}: '{value}' is not an intent; use one of {known}",
                                param=INTENT_HEADER) from None
