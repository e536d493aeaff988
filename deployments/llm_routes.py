"""One Ray Serve LLM deployment per (model, route, shape).

Ray Serve LLM already wraps vLLM as an `LLMServer` deployment with OpenAI
semantics; a route only chooses its engine arguments, queue bound and, per
shape (full GPU, MIG slice, CPU), the resources a replica asks for. The shapes
of a route run the same engine settings, so the autoscaler can move capacity
between them by replica counts alone.

A GPU replica asks for one placement group of `tensor_parallel_size` GPU
bundles (what Ray Serve LLM builds from vLLM's tensor_parallel_size too), the
first also holding the replica's CPUs and custom resources; a tensor-parallel
group is kept on one node (STRICT_PACK), where its all-reduces stay off the
network. Each replica takes its GPU setting (clock, power limit) through Ray
Serve LLM's start callback and gives it back in its destructor
(deployments/gpu_settings.py).
"""

from __future__ import annotations

from typing import Any

from ray.serve.deployment import Application
from ray.serve.llm import LLMConfig, build_llm_deployment

from deployments.gpu_settings import GpuSettingsCallback, OasisLLMServer, ReplicaSettings
from oasis_ray.config import RouteConfig, RouteResources
from oasis_ray.device_setting import ClockControl, DeviceSetting
from oasis_ray.telemetry.settings import TelemetryConfig

# A retiring replica may finish its in-flight requests for this long (Serve's
# graceful shutdown); it bounds how long a scale-down or shape move drains.
GRACEFUL_SHUTDOWN_S = 120.0


class RouteServer(OasisLLMServer):
    """Ray Serve LLM's LLMServer (giving its GPU setting back at stop), plus a read of the engine's own request count.

    Serve counts requests at the replica, not in the engine; whether a
    cancelled request really left the engine (vLLM aborts it when its stream
    is cancelled) and whether a soak left work behind is the engine's count.
    """

    async def engine_requests(self) -> int:
        """Requests vLLM's engine holds now, running or waiting (AsyncLLM.get_num_unfinished_requests)."""
        # Ray's VLLMEngine keeps vLLM's AsyncLLM as _engine_client and exposes no accessor for it.
        return self.engine._engine_client.get_num_unfinished_requests()


def _replica_bounds(route: RouteConfig, shape: str, policy_driven: bool) -> dict[str, Any]:
    """Serve's own bounds and delays per shape deployment.

    Under the cost-table policy every shape may drop to zero (the policy keeps
    the route's min_replicas across shapes) and Serve's up/down delays are 0,
    because the policy applies its own cooldowns and hysteresis; Serve would
    otherwise delay every decision again (its down delay defaults to 600 s).
    """
    first = shape == route.cold_start_shape
    if not policy_driven:
        low = route.min_replicas if first else 0
        return {"min_replicas": low, "max_replicas": route.max_replicas, "initial_replicas": max(low, int(first))}
    return {
        "min_replicas": 0,
        "max_replicas": route.max_replicas,
        "initial_replicas": max(route.min_replicas, 1) if first else 0,
        "upscale_delay_s": 0.0,
        "downscale_delay_s": 0.0,
        "downscale_to_zero_delay_s": 0.0,
    }


def shape_llm_config(
    route: RouteConfig, shape: str, resources: RouteResources, model_source: str, env_vars: dict[str, str],
    policy_driven: bool, telemetry: TelemetryConfig, settings: ReplicaSettings,
) -> LLMConfig:
    tracing_kwargs, tracing_env = telemetry.engine_tracing()
    engine_kwargs: dict[str, Any] = {**route.engine.engine_kwargs(), **tracing_kwargs}
    env_vars = {**env_vars, **tracing_env}
    llm: dict[str, Any] = {
        "model_loading_config": {"model_id": route.model, "model_source": model_source},
        "engine_kwargs": engine_kwargs,
        "deployment_config": {
            "autoscaling_config": _replica_bounds(route, shape, policy_driven),
            "max_ongoing_requests": route.max_ongoing_requests,
            "max_queued_requests": route.max_queued_requests,
            "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S,
            # The replica actor shares its engine's bundle; `cpus` is the whole replica's.
            "ray_actor_options": {"num_cpus": 0},
        },
        "runtime_env": {"env_vars": dict(env_vars)} if env_vars else None,
        "log_engine_metrics": False,
        "callback_config": {"callback_class": GpuSettingsCallback,
                            "callback_kwargs": {"settings": settings.model_dump(mode="json")}},
    }
    if resources.accelerator == "cpu":
        llm["accelerator_config"] = {"kind": "cpu"}
        llm["placement_group_config"] = {"bundles": [{"CPU": resources.cpus, **resources.custom_resources}]}
    else:
        llm["accelerator_config"] = {"kind": "gpu"}
        tensor_parallel = resources.tensor_parallel_size
        engine_kwargs["tensor_parallel_size"] = tensor_parallel
        llm["placement_group_config"] = {
            "bundles": [{"GPU": 1, "CPU": resources.cpus, **resources.custom_resources}]
            + [{"GPU": 1} for _ in range(tensor_parallel - 1)],
            "strategy": "STRICT_PACK" if tensor_parallel > 1 else "PACK",
        }
        if resources.accelerator_type:
            llm["accelerator_type"] = resources.accelerator_type
    return LLMConfig(**llm)


def build_route_deployments(
    route: RouteConfig, model_source: str, env_vars: dict[str, str], policy_driven: bool, telemetry: TelemetryConfig,
    clock_control: ClockControl, start_settings: dict[str, DeviceSetting],
) -> dict[str, Application]:
    """The route's deployments, keyed by shape; `start_settings` per shape (absent: the GPU's defaults)."""
    return {
        shape: build_llm_deployment(
            shape_llm_config(
                route, shape, resources, model_source, env_vars, policy_driven, telemetry,
                ReplicaSettings(mode=clock_control, route=route.key, shape=shape,
                                setting=start_settings.get(shape, DeviceSetting()),
                                follows_targets=shape == route.whole_shape),
            ),
            override_serve_options={"name": route.deployment_name(shape)},
            deployment_cls=RouteServer,
        )
        for shape, resources in route.shapes().items()
    }
