"""Admission and routing: which route serves a request, or why it is refused.

Pure decision code (no Ray, no I/O) so the ingress, the simulator and the tests
share it. Token counting happens before, in the caller, with the model's own
tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from oasis_ray.api import OasisRequestError
from oasis_ray.config import OasisAppConfig
from oasis_ray.intents import INTENT_HEADER, Intent
from oasis_ray.query_types import QueryType, classify


@dataclass(frozen=True)
class RouteDecision:
    model_id: str
    query_type: QueryType
    route: str
    input_tokens: int
    output_tokens: int
    intent: Intent = Intent.SLO
    shape: str | None = None
    """The shape a per-request intent chose (oasis_ray.intent_routing); None: spread over the route's shapes."""

    def headers(self) -> dict[str, str]:
        return {
            "x-oasis-model": self.model_id,
            "x-oasis-query-type": self.query_type.value,
            "x-oasis-route": self.route,
            "x-oasis-input-tokens": str(self.input_tokens),
            "x-oasis-max-tokens": str(self.output_tokens),
            INTENT_HEADER: self.intent.value,
        }


class QueryRouter:
    def __init__(self, config: OasisAppConfig):
        self._config = config
        self._table: dict[tuple[str, QueryType], str] = {}
        for model in config.models:
            for qtype in QueryType:
                self._table[(model.model_id, qtype)] = model.default_route
        for route in config.routes:
            for qtype in route.query_types:
                self._table[(route.model, qtype)] = route.name

    @property
    def model_ids(self) -> list[str]:
        return [m.model_id for m in self._config.models]

    def route_name(self, model_id: str, query_type: QueryType) -> str:
        return self._table[(model_id, query_type)]

    def resolve_model(self, requested: str | None) -> str:
        if requested is None:
            if len(self.model_ids) == 1:
                return self.model_ids[0]
            raise OasisRequestError(400, f"'model' is required; served models: {self.model_ids}", param="model")
        if requested not in self.model_ids:
            raise OasisRequestError(
                404, f"The model '{requested}' does not exist; served models: {self.model_ids}",
                param="model", error_type="model_not_found",
            )
        return requested

    def decide(self, model_id: str, input_tokens: int, max_tokens: int) -> RouteDecision:
        if max_tokens <= 0:
            raise OasisRequestError(400, f"max_tokens must be at least 1, got {max_tokens}", param="max_tokens")
        if input_tokens <= 0:
            raise OasisRequestError(400, "the prompt is empty", param="prompt")
        model = self._config.model(model_id)
        query_type = classify(input_tokens, max_tokens, model.tau_tokens)
        route = self.route_name(model_id, query_type)
        context = self._config.route(model_id, route).engine.max_model_len
        if input_tokens + max_tokens > context:
            raise OasisRequestError(
                400,
                f"This model's maximum context length is {context} tokens on route '{route}'. However, you "
                f"requested {input_tokens + max_tokens} tokens ({input_tokens} in the prompt, {max_tokens} "
                "for the completion). Please reduce the prompt or max_tokens.",
                param="max_tokens",
            )
        return RouteDecision(model_id, query_type, route, input_tokens, max_tokens)

    def fallbacks(self, decision: RouteDecision) -> list[str]:
        """The model's other routes that can hold this request, its default route first.

        Where the chosen route cannot serve (its replicas died or are gone), any
        route of the same model gives the same answer, only on an engine tuned for
        another query type; a route whose context is too short for the request is no
        fallback.
        """
        model = self._config.model(decision.model_id)
        needed = decision.input_tokens + decision.output_tokens
        others = [r.name for r in self._config.routes
                  if r.model == decision.model_id and r.name != decision.route and r.engine.max_model_len >= needed]
        return sorted(others, key=lambda name: name != model.default_route)
