"""A RayService manifest from a Serve config: the app as serveConfigV2, a head group, one worker group per shape.

The worker groups follow the routes of every oasis application in the config:
one group per GPU shape the routes use (full GPUs of an accelerator type and
tensor-parallel width, one group per MIG profile, and one for CPU routes),
each pod sized for one replica of that shape. A MIG group's pods ask the
NVIDIA device plugin for `nvidia.com/mig-<profile>` and start their raylet
with one GPU and the `MIG-<profile>` resource, which is what a MIG-shaped
replica asks Ray for (the README's MIG section does the same by hand with
`ray start`). The in-tree autoscaler is on, so pods follow the replicas the
OASIS policy places on each shape, down to none for an idle shape.

GPU pods carry what the NVML sampler needs: the NVIDIA container runtime and
NVIDIA_DRIVER_CAPABILITIES including `utility` (NVML); reading power, energy
and clocks needs no privilege. Every pod is annotated for Prometheus on the
ingress's metrics port (telemetry.prometheus_port), since the ingress replica
may be placed on any pod with a spare CPU; pods without it refuse the scrape.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.config import OasisAppConfig, RouteConfig, RouteResources, parse_config
from oasis_ray.kuberay.manifest import (
    Container,
    ContainerPort,
    EnvVar,
    HeadGroupSpec,
    ObjectMeta,
    PodSpec,
    PodTemplateSpec,
    RayClusterSpec,
    RayService,
    RayServiceSpec,
    ResourceRequirements,
    WorkerGroupSpec,
)

OASIS_IMPORT_PATH = "deployments.app:build_app"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
RAY_MIG_PREFIX = "MIG-"
# NVML lives in the driver's "utility" capability; CUDA in "compute".
NVML_DRIVER_CAPABILITIES = "compute,utility"
# The raylet, the object store and the GPU sampler share the pod with the replica.
RAY_OVERHEAD_CPUS = 1
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001}
DEFAULT_SERVE_PORT = 8000


class RenderError(ValueError):
    """A Serve config the renderer cannot turn into a manifest; the message names the part."""


class RenderOptions(BaseModel):
    """What the Serve config does not say about the Kubernetes cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("oasis", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", description="RayService name.")
    namespace: str | None = None
    image: str = Field("oasis-ray:latest", description="An image with oasis-ray and vLLM installed.")
    ray_version: str = Field(description="The image's Ray version (KubeRay's rayVersion).")
    head_cpus: int = Field(4, ge=1)
    head_memory: str = "16Gi"
    gpu_worker_memory: str = Field("64Gi", description="Host memory of a full-GPU worker pod.")
    mig_worker_memory: str = Field("16Gi", description="Host memory of a MIG-slice worker pod.")
    cpu_worker_memory: str = "8Gi"
    gpu_runtime_class: str | None = Field(
        "nvidia", description="RuntimeClass of GPU pods (the GPU operator's); None where nvidia is the default runtime."
    )
    gpu_products: dict[str, str] = Field(
        default_factory=dict,
        description="accelerator_type -> the node label nvidia.com/gpu.product to select (e.g. A100 -> "
        "NVIDIA-A100-SXM4-80GB); without one, a group of that type may land on any GPU node.",
    )


@dataclass
class ShapeGroup:
    """One worker group: pods that each hold one replica of a shape, and the Ray resources that replica asks for."""

    name: str
    gpus: int
    accelerator_type: str | None
    mig_profile: str | None
    cpus: float
    custom_resources: dict[str, float]
    replicas: int = 0
    max_replicas: int = 0
    routes: list[str] = field(default_factory=list)

    @property
    def pod_cpus(self) -> int:
        return math.ceil(self.cpus) + RAY_OVERHEAD_CPUS

    def ray_resources(self) -> dict[str, float]:
        """What the group's raylet advertises: its CPUs, GPUs and custom resources."""
        return {"CPU": float(self.pod_cpus), "GPU": float(self.gpus), **self.custom_resources}


def oasis_apps(serve_config: Mapping[str, Any]) -> list[OasisAppConfig]:
    """The validated args of every oasis application in a Serve config."""
    applications = serve_config.get("applications")
    if not isinstance(applications, list) or not applications:
        raise RenderError("applications: the Serve config has none")
    apps = [parse_config(app.get("args") or {}) for app in applications if app.get("import_path") == OASIS_IMPORT_PATH]
    if not apps:
        raise RenderError(f"applications: none has import_path {OASIS_IMPORT_PATH}")
    return apps


def shape_groups(apps: list[OasisAppConfig]) -> list[ShapeGroup]:
    """One group per distinct replica shape across every route, in first-use order."""
    groups: dict[str, ShapeGroup] = {}
    for app in apps:
        for route in app.routes:
            for index, (shape, resources) in enumerate(route.shapes().items()):
                group = _group_for(groups, shape, resources)
                group.cpus = max(group.cpus, resources.cpus)
                group.max_replicas += route.max_replicas
                # The whole shape starts with the route's first replicas (deployments/llm_routes.py); MIG shapes at 0.
                group.replicas += max(route.min_replicas, 1) if index == 0 else 0
                group.routes.append(f"{route.key}@{shape}")
    return list(groups.values())


def _group_for(groups: dict[str, ShapeGroup], shape: str, resources: RouteResources) -> ShapeGroup:
    mig = [name[len(RAY_MIG_PREFIX):] for name in resources.custom_resources if name.startswith(RAY_MIG_PREFIX)]
    if resources.accelerator == "cpu":
        name, gpus, accelerator, profile = "cpu", 0, None, None
    elif mig:
        profile = mig[0]
        name, gpus, accelerator = f"mig-{profile.replace('.', '-')}", 1, None
    else:
        accelerator, profile, gpus = resources.accelerator_type, None, resources.tensor_parallel_size
        name = f"gpu-{(accelerator or 'any').lower()}-x{gpus}"
    name = name if name not in groups or groups[name].custom_resources == resources.custom_resources else (
        f"{name}-{len(groups)}"
    )
    if name not in groups:
        groups[name] = ShapeGroup(name=name, gpus=gpus, accelerator_type=accelerator, mig_profile=profile,
                                  cpus=resources.cpus, custom_resources=dict(resources.custom_resources))
    return groups[name]


def render_rayservice(serve_config: Mapping[str, Any], options: RenderOptions) -> RayService:
    apps = oasis_apps(serve_config)
    metrics_ports = sorted({app.telemetry.prometheus_port for app in apps if app.telemetry.prometheus_port})
    annotations = _scrape_annotations(metrics_ports)
    serve_port = int((serve_config.get("http_options") or {}).get("port", DEFAULT_SERVE_PORT))
    head_ports = {**HEAD_PORTS, "serve": serve_port, **{f"metrics-{port}": port for port in metrics_ports}}
    head = HeadGroupSpec(
        ray_start_params={"dashboard-host": "0.0.0.0"},
        template=PodTemplateSpec(
            metadata=ObjectMeta(annotations=annotations),
            spec=PodSpec(containers=[Container(
                name="ray-head",
                image=options.image,
                resources=_quantities(cpu=str(options.head_cpus), memory=options.head_memory),
                ports=[ContainerPort(name=name, container_port=port) for name, port in head_ports.items()],
            )]),
        ),
    )
    workers = [_worker_group(group, options, annotations) for group in shape_groups(apps)]
    return RayService(
        metadata=ObjectMeta(name=options.name, namespace=options.namespace),
        spec=RayServiceSpec(
            serve_config_v2=yaml.safe_dump(dict(serve_config), sort_keys=False),
            ray_cluster_config=RayClusterSpec(
                ray_version=options.ray_version,
                enable_in_tree_autoscaling=True,
                head_group_spec=head,
                worker_group_specs=workers,
            ),
        ),
    )


def _worker_group(group: ShapeGroup, options: RenderOptions, annotations: dict[str, str] | None) -> WorkerGroupSpec:
    start_params = {"num-cpus": str(group.pod_cpus), "num-gpus": str(group.gpus)}
    if group.custom_resources:
        # KubeRay passes the value to `ray start --resources` verbatim, so the JSON keeps its own quotes.
        amounts = {name: int(v) if float(v).is_integer() else v for name, v in group.custom_resources.items()}
        start_params["resources"] = '"' + json.dumps(amounts).replace('"', '\\"') + '"'
    limits: dict[str, str] = {}
    if group.mig_profile is not None:
        limits[MIG_RESOURCE_PREFIX + group.mig_profile] = "1"
        memory = options.mig_worker_memory
    elif group.gpus:
        limits[GPU_RESOURCE] = str(group.gpus)
        memory = options.gpu_worker_memory
    else:
        memory = options.cpu_worker_memory
    on_gpu = bool(limits)
    selector = options.gpu_products.get(group.accelerator_type) if group.accelerator_type else None
    container = Container(
        name="ray-worker",
        image=options.image,
        resources=_quantities(cpu=str(group.pod_cpus), memory=memory, extra=limits),
        env=[EnvVar(name="NVIDIA_DRIVER_CAPABILITIES", value=NVML_DRIVER_CAPABILITIES)] if on_gpu else None,
    )
    return WorkerGroupSpec(
        group_name=group.name,
        replicas=group.replicas,
        min_replicas=0,
        max_replicas=group.max_replicas,
        ray_start_params=start_params,
        template=PodTemplateSpec(
            metadata=ObjectMeta(labels={"oasis-ray/shape": group.name}, annotations=annotations),
            spec=PodSpec(
                containers=[container],
                runtime_class_name=options.gpu_runtime_class if on_gpu else None,
                node_selector={"nvidia.com/gpu.product": selector} if selector else None,
            ),
        ),
    )


def _quantities(*, cpu: str, memory: str, extra: dict[str, str] | None = None) -> ResourceRequirements:
    """Requests equal to limits: a replica's engine should not be throttled below what Ray thinks it has."""
    limits = {"cpu": cpu, "memory": memory, **(extra or {})}
    return ResourceRequirements(requests={"cpu": cpu, "memory": memory}, limits=limits)


def _scrape_annotations(ports: list[int]) -> dict[str, str] | None:
    if not ports:
        return None
    if len(ports) > 1:
        raise RenderError(f"telemetry.prometheus_port: applications use {ports}; one pod annotation takes one port")
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(ports[0]), "prometheus.io/path": "/metrics"}
