"""The parts of KubeRay's RayService (ray.io/v1) and of a Kubernetes pod template that the renderer emits.

Only those parts, typed and strict, so a typo in the renderer is a
validation error here rather than a field the operator silently ignores.
Field names are the Kubernetes ones (camelCase, through aliases); dump with
`by_alias=True, exclude_none=True`. KubeRay reads every rayStartParams value
as a string, so they are typed as strings.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

API_VERSION = "ray.io/v1"
KIND = "RayService"


class _K8s(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ObjectMeta(_K8s):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class EnvVar(_K8s):
    name: str
    value: str


class ContainerPort(_K8s):
    name: str
    container_port: int = Field(alias="containerPort", ge=1, le=65535)


class ResourceRequirements(_K8s):
    """Quantities as Kubernetes writes them ("4", "16Gi"); extended resources such as nvidia.com/gpu in limits."""

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class Container(_K8s):
    name: str
    image: str
    resources: ResourceRequirements
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None


class PodSpec(_K8s):
    containers: list[Container] = Field(min_length=1)
    runtime_class_name: str | None = Field(None, alias="runtimeClassName")
    node_selector: dict[str, str] | None = Field(None, alias="nodeSelector")


class PodTemplateSpec(_K8s):
    metadata: ObjectMeta | None = None
    spec: PodSpec


class HeadGroupSpec(_K8s):
    ray_start_params: dict[str, str] = Field(alias="rayStartParams")
    template: PodTemplateSpec


class WorkerGroupSpec(_K8s):
    group_name: str = Field(alias="groupName", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    replicas: int = Field(ge=0)
    min_replicas: int = Field(alias="minReplicas", ge=0)
    max_replicas: int = Field(alias="maxReplicas", ge=0)
    ray_start_params: dict[str, str] = Field(alias="rayStartParams")
    template: PodTemplateSpec


class RayClusterSpec(_K8s):
    ray_version: str = Field(alias="rayVersion")
    enable_in_tree_autoscaling: bool = Field(alias="enableInTreeAutoscaling")
    head_group_spec: HeadGroupSpec = Field(alias="headGroupSpec")
    worker_group_specs: list[WorkerGroupSpec] = Field(alias="workerGroupSpecs")


class RayServiceSpec(_K8s):
    serve_config_v2: str = Field(alias="serveConfigV2", description="The Serve config, as a YAML string.")
    ray_cluster_config: RayClusterSpec = Field(alias="rayClusterConfig")


class RayService(_K8s):
    api_version: str = Field(API_VERSION, alias="apiVersion", pattern=f"^{API_VERSION}$")
    kind: str = Field(KIND, pattern=f"^{KIND}$")
    metadata: ObjectMeta
    spec: RayServiceSpec

    def document(self) -> dict:
        """The manifest as Kubernetes reads it."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
