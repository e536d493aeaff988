"""The profiling sweep as one YAML document, validated completely before any engine starts.

A sweep costs GPU-hours, so a typo must not surface an hour in, after the
first trials have run: an unknown variant, an empty list of batch sizes, a
negative SLO or a misspelt key is refused at load time with the field's path
(`slo.p95_e2e_s: Input should be greater than 0`). Every engine the sweep will
start is also validated here through the serving config's own EngineSettings,
so a combination vLLM would refuse (a token budget below the batch size, a
query longer than the context) is caught before the first trial too.

Query lengths default to the OASIS paper's: small is 50 tokens, large 1000
(LISO 1000 in / 50 out, SILO 50 / 1000, SISO 50 / 50, LILO 1000 / 1000). They
may be scaled down freely for smoke runs, so they are not checked against tau.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError, model_validator

from oasis_ray.config import EMBEDDED_SOURCE, EngineSettings
from oasis_ray.validation import NAMES_ITS_FIELD, error_lines, field_path
from oasis_ray.query_types import QueryType

SMALL_TOKENS = 50
LARGE_TOKENS = 1000
PAPER_QUERY_LENGTHS: dict[QueryType, tuple[int, int]] = {
    QueryType.SISO: (SMALL_TOKENS, SMALL_TOKENS),
    QueryType.LISO: (LARGE_TOKENS, SMALL_TOKENS),
    QueryType.SILO: (SMALL_TOKENS, LARGE_TOKENS),
    QueryType.LILO: (LARGE_TOKENS, LARGE_TOKENS),
}
# Engine fields each trial sets itself; a base value for them would be silently overridden.
_TRIAL_OWNED_ENGINE_FIELDS = ("max_num_seqs", "enable_prefix_caching", "enable_chunked_prefill")
_HARDWARE_KINDS = ("cpu", "gpu", "mig")


class SpecError(ValueError):
    """A sweep spec that must not start; the message names every bad field by path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variant(str, Enum):
    """The engine variants OASIS compares; each is one vLLM scheduling feature switched on alone."""

    STANDARD = "standard"
    PREFIX_CACHING = "prefix_caching"
    CHUNKED_PREFILL = "chunked_prefill"

    def engine_flags(self) -> dict[str, bool]:
        return {
            "enable_prefix_caching": self is Variant.PREFIX_CACHING,
            "enable_chunked_prefill": self is Variant.CHUNKED_PREFILL,
        }


class SweepModel(_Strict):
    model_id: str = Field(min_length=1, description="The name the cost table files the results under.")
    source: str = Field(
        EMBEDDED_SOURCE, min_length=1, description="Hugging Face id or local path; 'embedded' builds the tiny model."
    )


class CpuTarget(_Strict):
    """CPU cores; the trial asks Ray for exactly `num_cpus`, plus `custom_resources` to pick a kind of node.

    The custom resources are how a CPU node stands in for a GPU or MIG node in a
    multi-node test (the serving side's `routes[].resources.custom_resources`).
    """

    kind: Literal["cpu"]
    num_cpus: float = Field(1.0, gt=0)
    custom_resources: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="Ray custom resources the trial also holds, e.g. {'MIG-1g.10gb': 1}."
    )

    def label(self) -> str:
        held = "".join(f" +{name}" for name in sorted(self.custom_resources))
        return f"cpu x{self.num_cpus:g}{held}"


class GpuTarget(_Strict):
    """Whole GPUs of `accelerator_type` when given (Ray's names: A100, H100, L4, ...): one, or N tensor parallel."""

    kind: Literal["gpu"]
    accelerator_type: str | None = None
    clocks_mhz: list[PositiveInt] = Field(
        default_factory=list, description="SM clocks to lock during trials; empty profiles the default clocks."
    )
    power_limits_w: list[PositiveInt] = Field(
        default_factory=list, description="Power limits (W) to set during trials; empty profiles the default limit."
    )
    tensor_parallel_sizes: list[PositiveInt] = Field(
        default_factory=lambda: [1],
        description="GPUs per engine (vLLM tensor parallelism); a trial holds that many GPUs of one node.",
    )
    num_cpus: float = Field(1.0, gt=0, description="CPU cores for the trial process that drives the engine.")

    @model_validator(mode="after")
    def _distinct_settings(self) -> GpuTarget:
        problems = [
            *_duplicates("clocks_mhz[{i}]", self.clocks_mhz),
            *_duplicates("power_limits_w[{i}]", self.power_limits_w),
            *_duplicates("tensor_parallel_sizes[{i}]", self.tensor_parallel_sizes),
        ]
        if not self.tensor_parallel_sizes:
            problems.append("tensor_parallel_sizes: list at least one degree (1 for one GPU per engine)")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def label(self) -> str:
        return f"gpu {self.accelerator_type or 'any'}"


class MigTarget(_Strict):
    """One MIG slice, scheduled through the `MIG-<profile>` resource that `python -m oasis_ray.telemetry.mig` sets up.

    No clock or power-limit list: both apply to the whole physical GPU, and so to
    every other slice on it, which one slice's trial has no right to change; and
    no tensor parallelism, since an engine holds one slice.
    """

    kind: Literal["mig"]
    mig_profile: str = Field(pattern=r"^(\d+c\.)?\d+g\.\d+gb$", description="e.g. 1g.10gb or 3g.40gb")
    num_cpus: float = Field(1.0, gt=0)

    def label(self) -> str:
        return f"mig {self.mig_profile}"


HardwareTarget = Annotated[CpuTarget | GpuTarget | MigTarget, Field(discriminator="kind")]


class QueryLengths(_Strict):
    """One query type's exact prompt and output lengths; a bare type name takes the paper's lengths."""

    type: QueryType
    input_tokens: PositiveInt
    output_tokens: PositiveInt

    @model_validator(mode="before")
    @classmethod
    def _paper_defaults(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            raw = {"type": raw}
        if isinstance(raw, dict) and raw.get("type") in PAPER_QUERY_LENGTHS:
            paper_in, paper_out = PAPER_QUERY_LENGTHS[QueryType(raw["type"])]
            raw = {"input_tokens": paper_in, "output_tokens": paper_out, **raw}
        return raw

    def label(self) -> str:
        return f"{self.type.value}({self.input_tokens}/{self.output_tokens})"


class SloSpec(_Strict):
    """The latency objective a load level must meet to count toward the MSRR (P95 over its requests)."""

    p95_e2e_s: float = Field(20.0, gt=0, description="P95 end-to-end latency limit in seconds (the paper's SLO).")
    p95_ttft_s: float | None = Field(None, gt=0, description="Optional P95 time-to-first-token limit.")
    p95_tpot_s: float | None = Field(None, gt=0, description="Optional P95 time-per-output-token limit.")


class LoadSettings(_Strict):
    """How many requests one load level sends at a given closed-loop concurrency.

    Counts scale with concurrency because a level must cycle every in-flight
    slot several times before its percentiles describe steady state rather
    than the start-up burst; warm-up rounds are sent first and never measured.
    """

    warmup_rounds: PositiveInt = 1
    measured_rounds: PositiveInt = 3
    min_measured_requests: int = Field(30, ge=2, description="Floor on measured requests, so P95 has samples.")

    def warmup_requests(self, concurrency: int) -> int:
        return self.warmup_rounds * concurrency

    def measured_requests(self, concurrency: int) -> int:
        return max(self.min_measured_requests, self.measured_rounds * concurrency)


class SearchSettings(_Strict):
    """How the MSRR is searched for; see oasis_ray.profiling.msrr_search for the tolerance rule."""

    mode: Literal["bisection", "linear", "ladder"] = Field(
        "bisection",
        description="'linear' ramps concurrency step by step as the paper does, for comparison; "
        "'ladder' doubles it until a miss or saturation, the load curve fingerprint profiling extrapolates.",
    )
    tolerance: float = Field(
        0.05, gt=0, lt=1, description="Relative width of the final MSRR bracket; the ladder's saturation threshold."
    )
    max_concurrency: PositiveInt = Field(256, description="Highest concurrency ever offered.")
    linear_step: PositiveInt = Field(1, description="Concurrency step of the linear ramp.")


class SweepSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    models: list[SweepModel] = Field(min_length=1)
    hardware: list[HardwareTarget] = Field(min_length=1)
    max_num_seqs: list[PositiveInt] = Field(min_length=1, description="vLLM batch sizes to profile.")
    variants: list[Variant] = Field(default_factory=lambda: [Variant.STANDARD], min_length=1)
    query_types: list[QueryLengths] = Field(
        default_factory=lambda: [QueryLengths.model_validate(t.value) for t in PAPER_QUERY_LENGTHS], min_length=1
    )
    slo: SloSpec = Field(default_factory=SloSpec)
    sweep_mode: Literal["one-at-a-time", "grid"] = Field(
        "one-at-a-time",
        description="'one-at-a-time' varies one knob from the baseline (first values) as the paper does; "
        "'grid' profiles every combination.",
    )
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="Base vLLM engine arguments (EngineSettings fields) shared by every trial; "
        "each trial adds its batch size and variant flags, and the result is validated as a whole.",
    )
    engine_env_vars: dict[str, str] = Field(default_factory=dict, description="Environment of every trial process.")
    load: LoadSettings = Field(default_factory=LoadSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    trial_timeout_s: float = Field(1800.0, gt=0, description="Limit on one trial's search, engine start excluded.")

    @model_validator(mode="after")
    def _runnable(self) -> SweepSpec:
        problems = [
            *_duplicates("max_num_seqs[{i}]", self.max_num_seqs),
            *_duplicates("variants[{i}]", self.variants),
            *_duplicates("models[{i}].model_id", [m.model_id for m in self.models]),
            *_duplicates("query_types[{i}].type", [q.type for q in self.query_types]),
        ]
        for name in _TRIAL_OWNED_ENGINE_FIELDS:
            if name in self.engine:
                problems.append(f"engine.{name}: set per trial by the sweep's max_num_seqs and variants lists")
        engine_problems = self._engine_problems()
        problems += engine_problems
        if not engine_problems:
            context = self.engine_settings(self.max_num_seqs[0], self.variants[0]).max_model_len
            for i, query in enumerate(self.query_types):
                needed = query.input_tokens + query.output_tokens
                if needed > context:
                    problems.append(
                        f"query_types[{i}]: {query.label()} needs {needed} tokens of context, "
                        f"over engine.max_model_len {context}"
                    )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def engine_settings(self, max_num_seqs: int, variant: Variant) -> EngineSettings:
        """The complete, validated engine arguments of one trial."""
        return EngineSettings.model_validate({**self.engine, "max_num_seqs": max_num_seqs, **variant.engine_flags()})

    def _engine_problems(self) -> list[str]:
        """Every engine the sweep can start, validated as the serving config validates a route's.

        A problem shared by all combinations is reported once against `engine`;
        one that only some batch sizes or variants hit names them.
        """
        combinations = [(batch, variant) for batch in self.max_num_seqs for variant in self.variants]
        failing: dict[str, list[str]] = {}
        for batch, variant in combinations:
            try:
                self.engine_settings(batch, variant)
            except ValidationError as error:
                for err in error.errors():
                    line = _engine_error_line(err)
                    failing.setdefault(line, []).append(f"max_num_seqs {batch} with variant {variant.value}")
        return [
            line if len(where) == len(combinations) else f"{line} (for {', '.join(where)})"
            for line, where in failing.items()
        ]


def _engine_error_line(err: Any) -> str:
    message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
    where = field_path(err["loc"])
    if not where:
        return f"engine.{message}" if NAMES_ITS_FIELD.match(message) else f"engine: {message}"
    return f"engine.{where}: {message}"


def _duplicates(path: str, values: list[Any]) -> list[str]:
    """One problem per repeated value, at the repeat's index (`path` holds an `{i}`)."""
    return [
        f"{path.format(i=i)}: duplicate {value.value if isinstance(value, Enum) else value}"
        for i, value in enumerate(values)
        if value in values[:i]
    ]


def parse_spec(raw: Any) -> SweepSpec:
    """Validate a raw mapping; every problem is reported with its field path."""
    if not isinstance(raw, dict):
        raise SpecError(f"invalid sweep spec: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError("invalid sweep spec:\n  " + "\n  ".join(error_lines(exc, _spec_field_path))) from None


def _spec_field_path(loc: tuple[Any, ...]) -> str:
    """The path as written in YAML: pydantic's union tag (`hardware[0].gpu.`) is not a key the user wrote."""
    kept = [
        part
        for i, part in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "hardware" and isinstance(loc[i - 1], int) and part in _HARDWARE_KINDS)
    ]
    return field_path(tuple(kept))


def load_spec(path: Path) -> SweepSpec:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SpecError(f"cannot read sweep spec {path}: {error}") from None
    except yaml.YAMLError as error:
        raise SpecError(f"sweep spec {path} is not valid YAML: {error}") from None
    try:
        return parse_spec(raw)
    except SpecError as error:
        raise SpecError(f"{path}: {error}") from None


def spec_hash(spec: SweepSpec) -> str:
    """Stable across runs and key order, so a cost table names the exact sweep that produced it."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
