"""Typed configuration of an oasis-ray application.

One object carries every knob, as vLLM's EngineArgs does, and it is validated
before anything starts: an unknown key, tau <= 0, a route naming a missing
model or an engine setting vLLM would refuse stops startup with a message that
names the field (`routes[1].engine.max_num_batched_tokens: ...`).

The config is deliberately flat: models, and routes that name their model. A
route is one replica group with its own engine settings; several query types
may share it, and a model's types without a route of their own go to its
default route.

A route's `intent` (else the app's) says how it is configured: `slo` runs the
engine settings written here; `min-latency`, `min-energy` and `min-cost` take
the batch size and variant from the cost table (`hct_path`), see
oasis_ray.costs.intent_config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from oasis_ray.device_setting import ClockControl, DeviceSetting
from oasis_ray.intents import Intent
from oasis_ray.query_types import DEFAULT_TAU_TOKENS, QueryType
from oasis_ray.scaling.settings import RouteLimits, ScalingConfig
from oasis_ray.scaling.shapes import CPU, FULL_GPU, MIG_PROFILE_PATTERN
from oasis_ray.telemetry.settings import TelemetryConfig
from oasis_ray.validation import error_lines

EMBEDDED_SOURCE = "embedded"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
INGRESS_DEPLOYMENT = "OasisIngress"


class ConfigError(ValueError):
    """A config that cannot start; the message lists every bad field by path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSettings(_Strict):
    """The vLLM engine arguments a route controls; the names are vLLM's."""

    max_num_seqs: int = Field(16, ge=1, description="vLLM batch size (the OASIS 'batch' knob).")
    max_model_len: int = Field(2048, ge=16, description="Context length: prompt plus output tokens.")
    max_num_batched_tokens: int | None = Field(None, ge=1, description="Tokens per scheduler step.")
    enable_prefix_caching: bool = False
    enable_chunked_prefill: bool = False
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="On CPU builds: the share of NUMA node 0 memory vLLM reserves."
    )
    load_format: Literal["auto", "safetensors", "pt", "dummy"] = Field(
        "auto", description="'dummy' gives the real architecture with random weights (profiling without downloads)."
    )
    extra_engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Other vLLM EngineArgs, passed through unchanged."
    )

    @model_validator(mode="after")
    def _schedulable(self) -> EngineSettings:
        budget = self.max_num_batched_tokens
        if budget is not None:
            if not self.enable_chunked_prefill and budget < self.max_model_len:
                raise ValueError(
                    f"max_num_batched_tokens: {budget} is below max_model_len {self.max_model_len}; "
                    "without chunked prefill a full-length prompt could never be scheduled "
                    "(raise it or set enable_chunked_prefill: true)"
                )
            if budget < self.max_num_seqs:
                raise ValueError(
                    f"max_num_batched_tokens: {budget} is below max_num_seqs {self.max_num_seqs}; "
                    "a decode step needs one token per sequence"
                )
        overlap = set(self.extra_engine_kwargs) & set(type(self).model_fields)
        if overlap:
            raise ValueError(f"extra_engine_kwargs: {sorted(overlap)} have their own fields; set them there")
        return self

    def engine_kwargs(self) -> dict[str, Any]:
        kwargs = self.model_dump(exclude={"extra_engine_kwargs"}, exclude_none=True)
        return {**kwargs, **self.extra_engine_kwargs}


class RouteResources(_Strict):
    """What one replica of the route asks Ray for."""

    accelerator: Literal["cpu", "gpu"] = "gpu"
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. A100 or H100 (GPU only).")
    cpus: float = Field(1.0, gt=0, description="CPU cores per replica; fractional values share cores.")
    tensor_parallel_size: int = Field(
        1, ge=1, description="GPUs per replica, one engine sharded over them (vLLM tensor parallelism), "
                             "placed together on one node."
    )
    custom_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources per replica, e.g. {'MIG-1g.10gb': 1}."
    )

    @model_validator(mode="after")
    def _consistent(self) -> RouteResources:
        if self.accelerator == "cpu" and self.accelerator_type is not None:
            raise ValueError("accelerator_type: only applies to accelerator 'gpu'")
        if self.accelerator == "cpu" and self.tensor_parallel_size != 1:
            raise ValueError("tensor_parallel_size: CPU routes run one engine process per replica")
        mig = sorted(name for name in self.custom_resources if name.startswith("MIG-"))
        if mig and self.tensor_parallel_size != 1:
            raise ValueError(f"tensor_parallel_size: a MIG slice ({mig[0]}) cannot run tensor parallelism; "
                             "each replica holds one slice")
        return self

    @property
    def gpus(self) -> int:
        """GPUs one replica holds (0 on CPU): Algorithm 1 counts a tensor-parallel replica as this many."""
        return 0 if self.accelerator == "cpu" else self.tensor_parallel_size


def route_key(model_id: str, route_name: str) -> str:
    """A route's id across the system: ingress handles, rate metrics and the scaling core."""
    return f"{model_id}/{route_name}"


def mig_slice_resources(profile: str) -> RouteResources:
    """One MIG slice: a GPU as its profile's raylet sees it, plus the profile's resource (see oasis_ray.telemetry.mig)."""
    return RouteResources(accelerator="gpu", custom_resources={f"MIG-{profile}": 1})


class MigShape(_Strict):
    """A sub-GPU shape of a route: same engine settings, a MIG slice instead of a full GPU."""

    profile: str = Field(pattern=MIG_PROFILE_PATTERN, description="MIG profile, e.g. 1g.10gb.")
    resources: RouteResources | None = Field(
        None, description="Defaults to one GPU of the profile's raylet plus its MIG-<profile> resource."
    )

    @model_validator(mode="after")
    def _one_slice(self) -> MigShape:
        if self.resources is not None and self.resources.tensor_parallel_size != 1:
            raise ValueError("resources.tensor_parallel_size: a MIG slice cannot run tensor parallelism; "
                             "each replica holds one slice")
        return self

    def replica_resources(self) -> RouteResources:
        return self.resources or mig_slice_resources(self.profile)


class RouteConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    model: str = Field(description="The model_id this route serves.")
    query_types: list[QueryType] = Field(default_factory=list, description="Types sent here; may be empty.")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    resources: RouteResources = Field(default_factory=RouteResources)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica works on at once.")
    max_queued_requests: int = Field(
        128, ge=1, description="Requests waiting for this route; past it callers get 503 with Retry-After."
    )
    mig_shapes: list[MigShape] = Field(
        default_factory=list, description="Sub-GPU shapes the autoscaler may move this route's capacity to."
    )
    gpu_setting: DeviceSetting | None = Field(
        None, description="SM clock and power limit of the route's whole-GPU replicas (see clock_control); "
                          "None: the cost table's choice under autoscaling with clock_control apply, else the "
                          "GPU's defaults. MIG slices share their parent's setting and never change it.",
    )
    intent: Intent | None = Field(
        None, description="What this route's configuration is chosen for (oasis_ray.intents); None: the app's intent."
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> RouteConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas: {self.min_replicas} exceeds max_replicas {self.max_replicas}")
        profiles = [shape.profile for shape in self.mig_shapes]
        if len(set(profiles)) != len(profiles):
            raise ValueError(f"mig_shapes: profiles {profiles} repeat")
        return self

    @property
    def key(self) -> str:
        return route_key(self.model, self.name)

    def deployment_name(self, shape: str) -> str:
        """The Serve deployment of one shape; the autoscaling policy finds routes by these names."""
        return f"route:{self.name}@{shape}:{self.model}"

    @property
    def whole_shape(self) -> str:
        return CPU if self.resources.accelerator == "cpu" else FULL_GPU

    def shapes(self) -> dict[str, RouteResources]:
        """Every shape a replica of this route can take, whole unit first."""
        return {self.whole_shape: self.resources, **{m.profile: m.replica_resources() for m in self.mig_shapes}}

    @property
    def cold_start_shape(self) -> str:
        """Where the first request of an idle route goes: the smallest shape, since Algorithm 1 starts small."""
        return min(self.mig_shapes, key=lambda m: int(m.profile[0])).profile if self.mig_shapes else self.whole_shape


class ModelConfig(_Strict):
    model_id: str = Field(min_length=1, description="The name clients send as `model`.")
    source: str = Field(
        EMBEDDED_SOURCE,
        description="Hugging Face id or local path; 'embedded' builds the tiny smoke-test model.",
    )
    tau_tokens: int = Field(DEFAULT_TAU_TOKENS, gt=0, description="Small/large split for input and output.")
    default_route: str = Field(description="Route for this model's query types that no route claims.")


def resolve_table_path(hct_path: str) -> Path:
    """Relative paths resolve against the oasis-ray checkout, not the process's working directory.

    The policy runs in Serve's controller, whose working directory is Ray's,
    not the one `serve run` was started from.
    """
    path = Path(hct_path)
    return path if path.is_absolute() else PROJECT_ROOT / path


class AutoscalingSettings(_Strict):
    """Cost-table-driven autoscaling; the policy in autoscaling/ reads these same settings."""

    hct_path: str = Field(
        description="The hardware cost table (its directory, hct.parquet or hct.csv); relative to the checkout. "
                    "Defaults to the app's hct_path."
    )
    scaling: ScalingConfig = Field(default_factory=ScalingConfig)
    rate_window_s: float = Field(30.0, gt=0, description="Window of the ingress's request-rate estimate.")

    def table_path(self) -> Path:
        return resolve_table_path(self.hct_path)


class OasisAppConfig(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    routes: list[RouteConfig] = Field(min_length=1)
    default_max_tokens: int = Field(256, ge=1, description="Output budget when a request gives no max_tokens.")
    api_key: SecretStr | None = Field(None, description="Clients must send 'Authorization: Bearer <key>'.")
    api_key_env: str | None = Field(
        "OASIS_API_KEY", description="Environment variable read for the key when api_key is not set."
    )
    max_request_bytes: int = Field(1_048_576, ge=1024, description="Larger bodies get 413.")
    ingress_cpus: float = Field(0.1, ge=0, description="CPU share of each ingress replica.")
    ingress_replicas: int = Field(1, ge=1)
    engine_env_vars: dict[str, str] = Field(
        default_factory=dict, description="Environment of every engine replica (e.g. VLLM_CPU_KVCACHE_SPACE)."
    )
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    clock_control: ClockControl = Field(
        "advisory", description="apply: replicas set their route's SM clock and power limit through NVML and "
                                "restore them when they stop; advisory: log and show what would be set; off: nothing.",
    )
    autoscaling: AutoscalingSettings | None = Field(
        None, description="Size routes from the cost table; without it every route keeps its configured replicas."
    )
    hct_path: str | None = Field(
        None, description="The hardware cost table intents and autoscaling read (directory, hct.parquet or hct.csv)."
    )
    intent: Intent = Field(Intent.SLO, description="The intent of routes that set none (oasis_ray.intents).")

    @model_validator(mode="before")
    @classmethod
    def _one_table(cls, raw: Any) -> Any:
        """One cost table for the app: autoscaling reads the app's hct_path unless it names the same one itself."""
        if not isinstance(raw, dict) or raw.get("hct_path") is None or not isinstance(raw.get("autoscaling"), dict):
            return raw
        autoscaling = raw["autoscaling"]
        named = autoscaling.get("hct_path")
        if named is None:
            return {**raw, "autoscaling": {**autoscaling, "hct_path": raw["hct_path"]}}
        if resolve_table_path(str(named)) != resolve_table_path(str(raw["hct_path"])):
            raise ValueError(f"autoscaling.hct_path: '{named}' is not the app's hct_path '{raw['hct_path']}'; "
                             "intents and autoscaling read one cost table (set hct_path only)")
        return raw

    @model_validator(mode="after")
    def _cross_references(self) -> OasisAppConfig:
        model_ids = [m.model_id for m in self.models]
        problems: list[str] = []
        for i, model_id in enumerate(model_ids):
            if model_id in model_ids[:i]:
                problems.append(f"models[{i}].model_id: duplicate '{model_id}'")
        seen_routes: set[tuple[str, str]] = set()
        claimed: dict[tuple[str, QueryType], str] = {}
        for i, route in enumerate(self.routes):
            if route.model not in model_ids:
                problems.append(f"routes[{i}].model: '{route.model}' is not a configured model (known: {model_ids})")
            key = (route.model, route.name)
            if key in seen_routes:
                problems.append(f"routes[{i}].name: duplicate route '{route.name}' for model '{route.model}'")
            seen_routes.add(key)
            for qtype in route.query_types:
                owner = claimed.setdefault((route.model, qtype), route.name)
                if owner != route.name:
                    problems.append(
                        f"routes[{i}].query_types: {qtype.value} of '{route.model}' is already served by route '{owner}'"
                    )
        if self.telemetry.energy_header and self.ingress_replicas > 1:
            problems.append(
                "telemetry.energy_header: per-request energy needs ingress_replicas 1; each ingress replica "
                "would split the whole GPUs' energy over only the requests it saw"
            )
        if self.table_path() is None:
            if self.intent is not Intent.SLO:
                problems.append(f"intent: '{self.intent.value}' chooses from the cost table; set hct_path")
            problems += [
                f"routes[{i}].intent: '{route.intent.value}' chooses from the cost table; set hct_path"
                for i, route in enumerate(self.routes) if route.intent not in (None, Intent.SLO)
            ]
        for i, model in enumerate(self.models):
            if (model.model_id, model.default_route) not in seen_routes:
                problems.append(
                    f"models[{i}].default_route: '{model.default_route}' is not a route of model '{model.model_id}'"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def model(self, model_id: str) -> ModelConfig:
        return next(m for m in self.models if m.model_id == model_id)

    def route(self, model_id: str, name: str) -> RouteConfig:
        return next(r for r in self.routes if r.model == model_id and r.name == name)

    def route_intent(self, route: RouteConfig) -> Intent:
        return route.intent or self.intent

    def table_path(self) -> Path | None:
        """The app's one cost table (hct_path, or autoscaling's), None without one."""
        if self.autoscaling is not None:
            return self.autoscaling.table_path()
        return resolve_table_path(self.hct_path) if self.hct_path is not None else None

    def scaling_config(self) -> ScalingConfig:
        """The decision core's config, with each route's bounds taken from the route (min_replicas 0 allows
        scale to zero); limits set explicitly under autoscaling.scaling.route_limits win."""
        if self.autoscaling is None:
            raise ValueError("autoscaling: not configured")
        scaling = self.autoscaling.scaling
        derived = {
            route.key: RouteLimits(
                min_replicas=max(route.min_replicas, 1),
                max_replicas=route.max_replicas,
                allow_scale_to_zero=route.min_replicas == 0,
            )
            for route in self.routes
        }
        return scaling.model_copy(update={"route_limits": {**derived, **scaling.route_limits}})

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


def parse_config(raw: dict[str, Any] | OasisAppConfig) -> OasisAppConfig:
    """Validate a raw mapping; every problem is reported with its field path."""
    if isinstance(raw, OasisAppConfig):
        return raw
    try:
        return OasisAppConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("invalid oasis-ray config:\n  " + "\n  ".join(error_lines(exc))) from None


def check_against_model(config: OasisAppConfig, model_dirs: dict[str, Path]) -> None:
    """Refuse a max_model_len the model cannot attend over, for models on local disk."""
    problems = []
    for i, route in enumerate(config.routes):
        model_dir = model_dirs.get(route.model)
        if model_dir is None or not (model_dir / "config.json").exists():
            continue
        limit = json.loads((model_dir / "config.json").read_text()).get("max_position_embeddings")
        if limit is not None and route.engine.max_model_len > limit:
            problems.append(
                f"routes[{i}].engine.max_model_len: {route.engine.max_model_len} exceeds the model's "
                f"max_position_embeddings {limit}"
            )
    if problems:
        raise ConfigError("invalid oasis-ray config:\n  " + "\n  ".join(problems))
