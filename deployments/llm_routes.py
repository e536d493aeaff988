"""One Ray Serve LLM deployment per (model, route).

Ray Serve LLM already wraps vLLM as an `LLMServer` deployment with OpenAI
semantics; a route only chooses its engine arguments, resources and queue bound.
"""

from __future__ import annotations

from typing import Any

from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment

from oasis_ray.config import RouteConfig

# Serve allows a retiring replica this long to finish in-flight requests.
_GRACEFUL_SHUTDOWN_S = 60.0


def route_deployment_prefix(route: RouteConfig) -> str:
    return f"route:{route.name}:"


def route_llm_config(route: RouteConfig, model_source: str, env_vars: dict[str, str]) -> LLMConfig:
    resources = route.resources
    engine_kwargs: dict[str, Any] = route.engine.engine_kwargs()
    llm: dict[str, Any] = {
        "model_loading_config": {"model_id": route.model, "model_source": model_source},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "autoscaling_config": {"min_replicas": route.min_replicas, "max_replicas": route.max_replicas,
                                   "initial_replicas": max(route.min_replicas, 1)},
            "max_ongoing_requests": route.max_ongoing_requests,
            "max_queued_requests": route.max_queued_requests,
            "graceful_shutdown_timeout_s": _GRACEFUL_SHUTDOWN_S,
            # The replica actor shares its engine's bundle; `cpus` is the whole replica's.
            "ray_actor_options": {"num_cpus": 0},
        },
        "runtime_env": {"env_vars": dict(env_vars)} if env_vars else None,
        "log_engine_metrics": False,
    }
    if resources.accelerator == "cpu":
        llm["accelerator_config"] = {"kind": "cpu"}
        llm["placement_group_config"] = {"bundles": [{"CPU": resources.cpus}]}
    else:
        llm["accelerator_config"] = {"kind": "gpu"}
        engine_kwargs["tensor_parallel_size"] = resources.tensor_parallel_size
        if resources.accelerator_type:
            llm["accelerator_type"] = resources.accelerator_type
    return LLMConfig(**llm)


def build_route_deployment(route: RouteConfig, model_source: str, env_vars: dict[str, str]) -> Application:
    return build_llm_deployment(
        route_llm_config(route, model_source, env_vars), name_prefix=route_deployment_prefix(route)
    )
