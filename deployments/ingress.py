"""The classifying ingress: OpenAI API in, one route per query type out.

It extends Ray Serve LLM's OpenAiIngress rather than replacing it, so streaming,
chat sanitising, session affinity and the model list stay Ray's. What it adds
is admission: count input tokens with the model's tokenizer, take the output
budget, classify, and pick the route's handle instead of the model's.
"""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args, get_origin

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from opentelemetry.trace import Span
from pydantic import BaseModel, ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.llm.ingress import OpenAiIngress
# The parent ingress and LLMServer speak these internal classes; the public
# re-exports are subclasses and would not match them in isinstance checks.
from ray.llm._internal.serve.core.protocol import RawRequestInfo
from ray.llm._internal.serve.core.configs.openai_api_models import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    ModelCard,
    OpenAIHTTPException,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from vllm.exceptions import VLLMClientError

from deployments.app_observer import AppObserver
from deployments.dispatch import CHOSEN_TARGET, Dispatcher
from deployments.http_guards import ApiKeyMiddleware, MaxBodyMiddleware
from deployments.observed_response import StreamObservation, completion_tokens, timed_stream
from deployments.replica_failures import guarded_stream
from deployments.running_replicas import RunningReplicas
from oasis_ray.api import GenerateRequest, GenerateResponse, OasisRequestError
from oasis_ray.config import AutoscalingSettings, OasisAppConfig, route_key
from oasis_ray.failover import RouteHealth
from oasis_ray.intent_routing import IntentTargets, parse_intent
from oasis_ray.intents import INTENT_HEADER, Intent
from oasis_ray.query_types import QueryType
from oasis_ray.request_rates import RateWindow
from oasis_ray.routing import QueryRouter, RouteDecision
from oasis_ray.scaling.traffic import TrafficReport
from oasis_ray.telemetry.instruments import build_telemetry, request_attributes
from oasis_ray.telemetry.export import MetricPoint, SpanRecord
from oasis_ray.telemetry.latency_window import LatencyWindow
from oasis_ray.telemetry.request_energy import EnergyOwner
from oasis_ray.telemetry.status_view import QueryTypeStatus, RouteStatus, StatusSnapshot, render_status
from oasis_ray.tokens import TokenCounter

logger = logging.getLogger("ray.serve")

ENDPOINTS = {
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
    "completions": lambda app: app.post("/v1/completions"),
    "chat": lambda app: app.post("/v1/chat/completions"),
    "health": lambda app: app.get("/health"),
    "status": lambda app: app.get("/oasis/status"),
}

ENERGY_HEADER = "x-oasis-energy-j"
# On an answer from another route than the request's type belongs to (failover): the route it was meant for.
FAILOVER_HEADER = "x-oasis-failover-from"


def error_response(error: OasisRequestError) -> JSONResponse:
    return JSONResponse(error.to_openai(), status_code=error.status_code, headers=error.headers())


def _validation_param(first: dict[str, Any]) -> str:
    named = (first.get("ctx") or {}).get("field")
    if isinstance(named, str):
        return named
    return ".".join(str(p) for p in first.get("loc", ()) if p != "body" and not isinstance(p, int)) or "body"


async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ("body",)}
    if first.get("type") == "json_invalid":
        return error_response(OasisRequestError(400, "Invalid request: the body is not valid JSON", param="body"))
    param = _validation_param(first)
    return error_response(OasisRequestError(400, f"Invalid request: {param}: {first.get('msg')}", param=param))


def _accepts_none(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _accepts_none(get_args(annotation)[0])
    return annotation is Any or annotation is None or type(None) in get_args(annotation)


def validated_body(model: type[BaseModel]) -> Any:
    """The request model as FastAPI parses the body, where any fault its validators raise is a 400.

    vLLM's request models run validators of their own before pydantic checks
    types, and some raise TypeError on a wrong type (`"messages": null` fails
    iterating None); pydantic passes such errors through and FastAPI would
    answer 500. Here a top-level null where the field takes none is refused
    naming the field, and any other fault of validation is refused as the
    body's. The schema (and so /openapi.json) stays the model's.
    """
    not_nullable = frozenset(name for name, field in model.model_fields.items() if not _accepts_none(field.annotation))

    def refuse_faults(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, dict):
            for name in not_nullable.intersection(value):
                if value[name] is None:
                    raise PydanticCustomError("null_field", "must not be null", {"field": name})
        try:
            return handler(value)
        except (ValidationError, VLLMClientError):
            raise
        except Exception as exc:  # noqa: BLE001 - a validator's own fault on client input is the client's 400
            raise PydanticCustomError("invalid_body", "{error}", {"error": f"{type(exc).__name__}: {exc}"}) from exc

    return Annotated[model, WrapValidator(refuse_faults)]


CompletionBody = validated_body(CompletionRequest)
ChatBody = validated_body(ChatCompletionRequest)


async def _on_request_error(_: Request, exc: OasisRequestError) -> JSONResponse:
    return error_response(exc)


async def _on_openai_http_error(_: Request, exc: OpenAIHTTPException) -> JSONResponse:
    return error_response(OasisRequestError(exc.status_code, exc.message, error_type=exc.type))


async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing's own refusals (unknown path, wrong method) in OpenAI's shape too."""
    return error_response(OasisRequestError(exc.status_code, str(exc.detail)))


async def _on_engine_validation_error(_: Request, exc: VLLMClientError) -> JSONResponse:
    """vLLM's request models validate some fields themselves, outside pydantic's errors."""
    message = exc.args[0] if exc.args else str(exc)
    return error_response(OasisRequestError(400, f"Invalid request: {message}", param=getattr(exc, "parameter", None)))


async def _on_unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("oasis ingress: unexpected error", exc_info=exc)
    return error_response(OasisRequestError(500, "Internal server error", error_type="server_error"))


def make_http_app(config: OasisAppConfig) -> FastAPI:
    app = FastAPI(title="oasis-ray", description="OpenAI-compatible API with query-type routing")
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(VLLMClientError, _on_engine_validation_error)
    app.add_exception_handler(OasisRequestError, _on_request_error)
    app.add_exception_handler(OpenAIHTTPException, _on_openai_http_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
    app.add_middleware(MaxBodyMiddleware, max_bytes=config.max_request_bytes)
    api_key = config.resolved_api_key()
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    return app


class OasisIngress(OpenAiIngress):
    def __init__(
        self,
        config: OasisAppConfig,
        model_sources: dict[str, str],
        shape_handles: dict[str, dict[str, DeploymentHandle]],
        slo_p95_e2e_s: float | None = None,
        intent_targets: IntentTargets | None = None,
    ):
        """`slo_p95_e2e_s`: the cost table's SLO, which the status view checks latency against (None: no table);
        `intent_targets`: the deployed routes' figures that per-request intents rank (None: no table)."""
        self._config = config
        self._intent_targets = intent_targets
        self._router = QueryRouter(config)
        self._shape_handles = {
            key: {shape: handle.options(stream=True) for shape, handle in shapes.items()}
            for key, shapes in shape_handles.items()
        }
        self._counters = {model_id: TokenCounter(source) for model_id, source in model_sources.items()}
        health = RouteHealth()
        self._running = RunningReplicas(shape_handles, health)
        settings = config.autoscaling or AutoscalingSettings(hct_path="")
        self._window_s = settings.rate_window_s
        self._type_rates = RateWindow(settings.rate_window_s, started_s=time.monotonic())
        # Each (model, query type) is served by exactly one route, so the per-type window gives each route's mix.
        self._type_routes = {
            _type_key(route.model, qt): (route.key, qt)
            for route in config.routes for qt in QueryType if self._router.route_name(route.model, qt) == route.name
        }
        self._latencies = LatencyWindow(settings.rate_window_s)
        self._slo_p95_e2e_s = slo_p95_e2e_s
        self._telemetry = build_telemetry(config.telemetry)
        self._dispatch = Dispatcher(config, self._router, health, self._telemetry)
        self._observer = (
            AppObserver(serve.get_replica_context().app_name, self._telemetry, self._running,
                        config.telemetry.gpu_sample_period_s, settings.rate_window_s)
            if config.telemetry.enabled else None
        )
        default_handles = {
            m.model_id: next(iter(shape_handles[route_key(m.model_id, m.default_route)].values()))
            for m in config.models
        }
        super().__init__(llm_deployments=default_handles, model_cards=self._model_cards())

    def _model_cards(self) -> dict[str, ModelCard]:
        """OpenAI model cards that also tell clients the model's tau and the route of each query type."""
        return {
            m.model_id: ModelCard(
                id=m.model_id,
                object="model",
                owned_by="oasis-ray",
                permission=[],
                metadata={
                    "tau_tokens": m.tau_tokens,
                    "routes": {qt.value: self._router.route_name(m.model_id, qt) for qt in QueryType},
                },
            )
            for m in self._config.models
        }

    def _get_configured_serve_handle(self, model_id: str) -> DeploymentHandle:
        key, shape = CHOSEN_TARGET.get()
        return self._shape_handles[key][shape]

    async def model_data(self, model: str) -> ModelCard:
        """GET /v1/models/{id}: the card, or 404 in the same shape as every other unknown model."""
        return self._model_cards[self._router.resolve_model(model)]

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Request rates per (route, query type), read by the app-level autoscaling policy (autoscaling/policy.py)
        as a TrafficReport: their sum is what it sizes, their mix sets the route's MSRR."""
        type_rates: dict[str, dict[QueryType, float]] = {}
        for key, rate in self._type_rates.rates(time.monotonic(), list(self._type_routes)).items():
            route, query_type = self._type_routes[key]
            type_rates.setdefault(route, {})[query_type] = rate
        return TrafficReport(type_rates=type_rates).to_metrics()

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    def _admit(self, body: CompletionRequest | ChatCompletionRequest, intent: Intent,
               intent_field: str = INTENT_HEADER) -> RouteDecision:
        """Settle model and output budget on the body itself, so engine and classifier agree.

        `intent_field` names where the intent came from in a refusal (the header, or the handle API's field).
        """
        model_id = self._router.resolve_model(body.model)
        body.model = model_id
        counter = self._counters[model_id]
        if isinstance(body, ChatCompletionRequest):
            budget = body.max_completion_tokens or body.max_tokens
            input_tokens = counter.count_chat(body.messages)
        else:
            budget = body.max_tokens
            if body.prompt is None or body.prompt == "" or body.prompt == []:
                raise OasisRequestError(400, "'prompt' is required", param="prompt")
            input_tokens = counter.count_prompt(body.prompt)
        if budget is None:
            budget = body.max_tokens = self._config.default_max_tokens
        decision = self._with_intent(self._router.decide(model_id, input_tokens, budget), intent, intent_field)
        logger.info(
            "oasis route model=%s query_type=%s route=%s input_tokens=%d max_tokens=%d intent=%s shape=%s",
            decision.model_id, decision.query_type.value, decision.route, decision.input_tokens,
            decision.output_tokens, decision.intent.value, decision.shape or "spread",
        )
        return decision

    def _with_intent(self, decision: RouteDecision, intent: Intent, intent_field: str) -> RouteDecision:
        """The running (route, shape) the request's intent prefers, from the cached replica view; never a new one."""
        if intent is Intent.SLO:
            return decision
        if self._intent_targets is None:
            raise OasisRequestError(400, f"{intent_field}: '{intent.value}' needs the app's cost table "
                                         "(hct_path), and this app has none", param=intent_field)
        running = {route.name: self._running.counts(route.key) for route in self._config.routes
                   if route.model == decision.model_id}
        target = self._intent_targets.choose(
            intent, model_id=decision.model_id, query_type=decision.query_type,
            tokens=decision.input_tokens + decision.output_tokens, configured_route=decision.route, running=running,
        )
        if target is None:
            return replace(decision, intent=intent)
        return replace(decision, intent=intent, route=target.route, shape=target.shape)

    @contextmanager
    def _traced(self, decision: RouteDecision) -> Iterator[tuple[Span, Span, dict[str, str]]]:
        """One request's spans: the ingress span, the route span and the ingress span's carrier (for the energy span).

        Inside, the oasis.route span is current, so its traceparent goes to the
        engine. The request is counted for the autoscaler here, under the route
        its type belongs to, wherever failover sends it: that route is the one
        that needs the capacity.
        """
        self._type_rates.record(_type_key(decision.model_id, decision.query_type), time.monotonic())
        attributes = request_attributes(model=decision.model_id, query_type=decision.query_type,
                                        route=decision.route, input_tokens=decision.input_tokens)
        with self._telemetry.span("oasis.ingress", attributes) as span:
            carrier = self._telemetry.inject()
            with self._telemetry.span("oasis.route", attributes) as route_span:
                yield span, route_span, carrier

    async def _handle(self, body: CompletionRequest | ChatCompletionRequest, method: str,
                      request: Request | None) -> Response:
        """`request` is None for a handle call to completions/chat (the benchmarks make them)."""
        started = time.perf_counter()
        try:
            intent = parse_intent(request.headers.get(INTENT_HEADER)) if request is not None else Intent.SLO
            decision = self._admit(body, intent)
        except OasisRequestError as error:
            return self._refuse(error, started)
        with self._traced(decision) as (span, route_span, carrier):
            try:
                dispatched = await self._dispatch.send(decision, lambda: self._call_route(body, method, request))
            except OasisRequestError as error:  # shed, or no replica of the model can serve
                span.set_attributes(request_attributes(status_code=error.status_code))
                self._record(decision, error.status_code, time.perf_counter() - started, 0, None, None)
                response = error_response(error)
                response.headers.update(decision.headers())
                return response
            response = dispatched.result
            served = dispatched.decision
            route_span.set_attributes({"oasis.shape": dispatched.shape, **request_attributes(route=served.route)})
            span.set_attributes(request_attributes(status_code=response.status_code))
        response.headers.update({**served.headers(), "x-oasis-shape": dispatched.shape})
        if served.route != decision.route:
            response.headers[FAILOVER_HEADER] = decision.route
        if isinstance(response, StreamingResponse):
            observation = StreamObservation(started_s=started)
            broken: list[str] = []

            def on_break(error: BaseException) -> str:
                broken.append(type(error).__name__)
                return self._dispatch.stream_broke(served, dispatched.shape, error)

            def on_done(finished: float) -> None:
                dispatched.release()
                status_code = 503 if broken else response.status_code
                self._record(served, status_code, finished - started, observation.output_tokens,
                             observation.ttft_s(), observation.tpot_s(finished))
                self._served(served, status_code, observation.output_tokens, carrier)

            response.body_iterator = timed_stream(guarded_stream(response.body_iterator, on_break), observation,
                                                  on_done)
            # A client gone before the first chunk leaves the stream never started, so on_done never runs.
            weakref.finalize(response, dispatched.release)
        else:
            dispatched.release()
            output_tokens = completion_tokens(response.body)
            self._record(served, response.status_code, time.perf_counter() - started, output_tokens, None, None)
            request_id = self._served(served, response.status_code, output_tokens, carrier,
                                      awaited=self._config.telemetry.energy_header)
            if self._config.telemetry.energy_header:
                response.headers[ENERGY_HEADER] = await self._energy_header(request_id)
        return response

    def _served(self, decision: RouteDecision, status_code: int, output_tokens: int, carrier: dict[str, str],
                *, awaited: bool = False) -> str | None:
        """Hand an answered request's tokens to per-request energy; its id, if it was counted."""
        if self._observer is None or status_code != 200:
            return None
        request_id = uuid.uuid4().hex
        self._observer.energy.served(request_id, decision.input_tokens + output_tokens, time.time())
        owner = EnergyOwner(decision.model_id, decision.query_type, decision.route, carrier)
        self._observer.energy.finish(request_id, owner, awaited=awaited)
        return request_id

    async def _energy_header(self, request_id: str | None) -> str:
        """Joules, or "unavailable" when not measured, not settled within three sample periods, or not counted."""
        if request_id is None or self._observer is None:
            return "unavailable"
        energy_j = await self._observer.energy.energy_of(
            request_id, timeout_s=3 * self._config.telemetry.gpu_sample_period_s + 1.0
        )
        return "unavailable" if energy_j is None else f"{energy_j:.6g}"

    async def _call_route(self, body, method: str, request: Request | None) -> Response:
        """One trip to the route dispatch chose; an engine's refusal of the request is its answer, a server error
        is raised for dispatch to try elsewhere."""
        forwarded = self._with_trace_context(request.headers if request else {})
        try:
            return await self._process_llm_request(body, call_method=method, raw_request=forwarded)
        except OpenAIHTTPException as exc:
            if exc.status_code >= 500:
                raise
            return error_response(OasisRequestError(exc.status_code, exc.message, error_type=exc.type))

    def _with_trace_context(self, headers: Mapping[str, str]) -> Request | None:
        """The headers the engine gets, plus the current (route) span's traceparent, which vLLM's tracing joins.

        The parent ingress forwards only a request's headers to the engine
        (as Ray's RawRequestInfo), so a request rebuilt from them is all it needs.
        """
        forwarded = {**headers, **self._telemetry.inject()}
        return RawRequestInfo(headers=forwarded).to_starlette_request() if forwarded else None

    def _record(self, decision: RouteDecision | None, status_code: int, e2e_s: float, output_tokens: int,
                ttft_s: float | None, tpot_s: float | None) -> None:
        if decision is not None and status_code == 200:
            self._latencies.record(_type_key(decision.model_id, decision.query_type), time.monotonic(), e2e_s)
        self._telemetry.record_request(
            decision.model_id if decision else None, decision.query_type if decision else None,
            decision.route if decision else None, e2e_s=e2e_s, ttft_s=ttft_s, tpot_s=tpot_s,
            input_tokens=decision.input_tokens if decision else 0, output_tokens=output_tokens,
            status_code=status_code,
        )

    def _refuse(self, error: OasisRequestError, started: float) -> JSONResponse:
        self._record(None, error.status_code, time.perf_counter() - started, 0, None, None)
        return error_response(error)

    async def status_snapshot(self) -> StatusSnapshot:
        """What `python -m deployments.status` and GET /oasis/status show; this replica's view of the app."""
        now = time.monotonic()
        routes = [RouteStatus(model=r.model, route=r.name, replicas=self._running.counts(r.key))
                  for r in self._config.routes]
        keys = [_type_key(m.model_id, qt) for m in self._config.models for qt in QueryType]
        rates = self._type_rates.rates(now, keys)
        p95 = self._latencies.p95(now)
        query_types = [
            QueryTypeStatus(model=m.model_id, query_type=qt, route=self._router.route_name(m.model_id, qt),
                            rate_rps=rates[_type_key(m.model_id, qt)], p95_e2e_s=p95.get(_type_key(m.model_id, qt)),
                            slo_p95_e2e_s=self._slo_p95_e2e_s)
            for m in self._config.models for qt in QueryType
        ]
        observer = self._observer
        return StatusSnapshot(
            taken_at=datetime.now(UTC), window_s=self._window_s, routes=routes, query_types=query_types,
            scaling=list(observer.decisions) if observer else [],
            gpus=observer.gpus.statuses(time.time()) if observer else [],
            gpu_status=self._telemetry.gpu_status(),
            clock_control=self._config.clock_control,
            gpu_settings=observer.gpu_settings if observer and self._config.clock_control != "off" else [],
        )

    async def status(self, format: Literal["text", "json"] = "text") -> Response:
        snapshot = await self.status_snapshot()
        if format == "json":
            return Response(snapshot.model_dump_json(), media_type="application/json")
        return PlainTextResponse(render_status(snapshot))

    def telemetry_snapshot(self) -> tuple[list[MetricPoint], list[SpanRecord]]:
        """What the in-memory exporter holds (telemetry.exporters: [memory]); for tests and debugging."""
        return self._telemetry.memory_metrics(), self._telemetry.finished_spans()

    async def completions(self, body: CompletionBody, request: Request) -> Response:
        return await self._handle(body, "completions", request)

    async def chat(self, body: ChatBody, request: Request) -> Response:
        return await self._handle(body, "chat", request)

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        """The typed handle API (see oasis_ray.api); raises OasisRequestError."""
        started = time.perf_counter()
        common = {"model": request.model, "max_tokens": request.max_tokens,
                  "temperature": request.temperature, "seed": request.seed}
        if request.messages is not None:
            body = ChatCompletionRequest(messages=[m.model_dump() for m in request.messages], **common)
            method = "chat"
        else:
            body = CompletionRequest(prompt=request.prompt, **common)
            method = "completions"
        try:
            decision = self._admit(body, request.intent, intent_field="intent")
        except OasisRequestError as error:
            self._refuse(error, started)
            raise
        with self._traced(decision) as (_, route_span, carrier):
            try:
                dispatched = await self._dispatch.send(decision, lambda: self._first_response(body, method))
            except OasisRequestError as error:
                self._record(decision, error.status_code, time.perf_counter() - started, 0, None, None)
                raise
            route_span.set_attributes({"oasis.shape": dispatched.shape})
        dispatched.release()
        first, decision = dispatched.result, dispatched.decision
        if isinstance(first, ErrorResponse):
            self._record(decision, first.error.code, time.perf_counter() - started, 0, None, None)
            raise OasisRequestError(first.error.code, first.error.message, error_type=first.error.type)
        self._record(decision, 200, time.perf_counter() - started, first.usage.completion_tokens, None, None)
        self._served(decision, 200, first.usage.completion_tokens, carrier)
        choice = first.choices[0]
        return GenerateResponse(
            model=decision.model_id,
            text=choice.message.content if method == "chat" else choice.text,
            finish_reason=choice.finish_reason,
            query_type=decision.query_type,
            route=decision.route,
            shape=dispatched.shape,
            intent=decision.intent,
            input_tokens=first.usage.prompt_tokens,
            output_tokens=first.usage.completion_tokens,
        )

    async def _first_response(self, body, method: str):
        """The route's whole answer (the handle API does not stream); a server error is raised for dispatch."""
        first = await self._get_response(body=body, call_method=method,
                                         raw_request=self._with_trace_context({})).__anext__()
        if isinstance(first, ErrorResponse) and first.error.code >= 500:
            raise OpenAIHTTPException(status_code=first.error.code, message=first.error.message, type=first.error.type)
        return first


def _type_key(model_id: str, query_type: QueryType) -> str:
    return f"{model_id}/{query_type.value}"

