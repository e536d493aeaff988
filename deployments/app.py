"""The application builder named in serve_config.yaml (`deployments.app:build_app`).

Data flows one way: the validated config decides the routes, each route becomes
a Ray Serve LLM deployment, and the classifying ingress is bound to their handles.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.deployment import Application
from ray.serve.handle import DeploymentHandle
from ray.serve.llm.ingress import make_fastapi_ingress

from deployments.ingress import ENDPOINTS, OasisIngress, make_http_app
from deployments.llm_routes import build_route_deployments
from oasis_ray.config import (
    EMBEDDED_SOURCE,
    INGRESS_DEPLOYMENT,
    ModelConfig,
    OasisAppConfig,
    RouteConfig,
    check_against_model,
    parse_config,
)
from oasis_ray.costs.intent_config import apply_intents, intent_targets
from oasis_ray.costs.source import CapacitySource, read_cost_table
from oasis_ray.device_setting import DeviceSetting
from oasis_ray.scaling.shapes import FULL_GPU, RouteCapacity
from oasis_ray.embedded_model import build_embedded_model
from oasis_ray.intent_routing import IntentTargets

logger = logging.getLogger("ray.serve")


def resolve_source(model: ModelConfig) -> str:
    return str(build_embedded_model()) if model.source == EMBEDDED_SOURCE else model.source


def build_app(args: dict[str, Any] | OasisAppConfig) -> Application:
    config = parse_config(args)
    sources = {m.model_id: resolve_source(m) for m in config.models}
    check_against_model(config, {mid: Path(src) for mid, src in sources.items() if Path(src).is_dir()})
    policy_driven = config.autoscaling is not None
    table = read_cost_table(config)
    targets = None
    if table is not None:
        # Each route's intent picks its engine settings; refuses, naming the route, a table that cannot answer it.
        config, choices = apply_intents(config, table)
        for choice in choices:
            logger.info("oasis intent %s", choice.log_line())
        targets = intent_targets(config, table)
    # Refuses, naming the route, a table that cannot size every route.
    capacity = CapacitySource(config) if policy_driven else None
    table_settings = _table_settings(capacity.capacities()) if capacity and config.clock_control == "apply" else {}
    shape_apps = {
        route.key: build_route_deployments(route, sources[route.model], config.engine_env_vars, policy_driven,
                                            config.telemetry, config.clock_control,
                                            start_settings(route, table_settings.get(route.key)))
        for route in config.routes
    }
    return build_ingress(config, sources, shape_apps, table.slo_p95_e2e_s if table else None, targets)


def _table_settings(capacities: tuple[RouteCapacity, ...]) -> dict[str, DeviceSetting]:
    """The setting of the row each route's full-GPU capacity was read at (clock_control apply)."""
    return {capacity.route: option.setting for capacity in capacities for option in capacity.options
            if option.shape == FULL_GPU}


def start_settings(route: RouteConfig, from_table: DeviceSetting | None = None) -> dict[str, DeviceSetting]:
    """The GPU setting each shape's replicas take at start: the route's configured one, else the cost table's
    row's, else the GPU's defaults. MIG replicas are told it too, and report that they leave it to the parent."""
    setting = route.gpu_setting or from_table or DeviceSetting()
    return dict.fromkeys(route.shapes(), setting)


def build_ingress(
    config: OasisAppConfig,
    model_sources: dict[str, str],
    shape_targets: dict[str, dict[str, Application | DeploymentHandle]],
    slo_p95_e2e_s: float | None = None,
    intent_targets: IntentTargets | None = None,
) -> Application:
    """The classifying ingress over route deployments: built here, or handles to another app's (benchmarks).

    `intent_targets`: the deployed routes' figures per-request intents rank (None: the app has no cost table).
    """
    ingress_cls = make_fastapi_ingress(OasisIngress, endpoint_map=ENDPOINTS, app=make_http_app(config))
    replicas: dict[str, Any] = {"num_replicas": config.ingress_replicas}
    if config.autoscaling is not None:
        # Only deployments with an autoscaling config report custom metrics to the
        # app-level policy; the ingress needs one for its request rates, and the
        # policy leaves its replica count alone.
        replicas = {"autoscaling_config": {"min_replicas": config.ingress_replicas,
                                           "max_replicas": config.ingress_replicas,
                                           "look_back_period_s": config.autoscaling.rate_window_s}}
    ingress = serve.deployment(
        ingress_cls,
        name=INGRESS_DEPLOYMENT,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": config.ingress_cpus},
        **replicas,
    )
    return ingress.bind(config=config, model_sources=model_sources, shape_handles=shape_targets,
                       slo_p95_e2e_s=slo_p95_e2e_s, intent_targets=intent_targets)
