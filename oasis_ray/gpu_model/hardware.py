"""What the GPU model knows about models and boards: transformer shapes and datasheet figures.

Both are public facts, read from `data/architectures.json` and
`data/devices.json`, where each entry names its source. Everything the model
derives about cost (FLOPs and bytes per token, KV-cache size, which MIG slice
holds a model) is computed here from those shapes, so a new model or board is
a data entry, not code.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oasis_ray.mig_geometry import COMPUTE_SLICES, MEMORY_SLICES, MIG_GEOMETRIES

DATA_DIR = Path(__file__).parent / "data"
BYTES_PER_PARAM = 2  # bf16
FULL = "full"


class Architecture(BaseModel):
    """A dense decoder-only transformer's shapes, from its config.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str
    source: str
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    gated_mlp: bool
    vocab: int = Field(gt=0)
    tied_embeddings: bool

    @property
    def layer_params(self) -> int:
        """Matmul weights of one layer: Q, K, V, O projections and the MLP (norms and biases are negligible)."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = (3 if self.gated_mlp else 2) * self.hidden * self.intermediate_size
        return attention + mlp

    @property
    def matmul_params(self) -> int:
        return self.layers * self.layer_params

    @property
    def weight_bytes(self) -> float:
        """Resident weights: the layers, the embedding and, when untied, the LM head."""
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return BYTES_PER_PARAM * (self.matmul_params + embeddings)

    @property
    def step_weight_bytes(self) -> float:
        """Weights one forward step reads: every layer and the LM head (embedding rows are gathered, not streamed)."""
        return BYTES_PER_PARAM * (self.matmul_params + self.vocab * self.hidden)

    @property
    def flops_per_token(self) -> float:
        """Matmul FLOPs of one token through the layers (2 per multiply-add); attention and LM head come apart."""
        return 2.0 * self.matmul_params

    @property
    def lm_head_flops(self) -> float:
        return 2.0 * self.vocab * self.hidden

    @property
    def kv_bytes_per_token(self) -> float:
        return 2.0 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_PARAM

    def attention_flops(self, query_tokens: float, context_tokens: float) -> float:
        """QK^T and AV for `query_tokens` queries attending to `context_tokens` keys each (on average)."""
        return 4.0 * self.layers * self.heads * self.head_dim * query_tokens * context_tokens


class Device(BaseModel):
    """One board's datasheet figures; `mig_geometry` names its placement table in mig_placement."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    chip: str
    accelerator_type: str
    peak_bf16_tflops: float = Field(gt=0)
    memory_bandwidth_gbs: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    max_sm_clock_mhz: int = Field(gt=0)
    power_limit_w: float = Field(gt=0)
    mig_geometry: str | None
    source: str


class Shape(BaseModel):
    """Where an engine runs: a whole board or one MIG slice, with its shares of compute and bandwidth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    compute_share: float = Field(gt=0, le=1)
    bandwidth_share: float = Field(gt=0, le=1)
    memory_gb: float = Field(gt=0)


class _Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    models: list[Architecture]


class _Devices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    devices: list[Device]
    mig_memory_gb: dict[str, float]


@functools.cache
def architectures() -> dict[str, Architecture]:
    catalogue = _Catalogue.model_validate_json((DATA_DIR / "architectures.json").read_text())
    return {model.model_id: model for model in catalogue.models}


@functools.cache
def _devices() -> _Devices:
    return _Devices.model_validate_json((DATA_DIR / "devices.json").read_text())


def devices() -> dict[str, Device]:
    return {device.name: device for device in _devices().devices}


def architecture(model_id: str) -> Architecture:
    known = architectures()
    if model_id not in known:
        raise ValueError(f"model: '{model_id}' has no architecture in data/architectures.json (known: {sorted(known)})")
    return known[model_id]


def device(name: str) -> Device:
    known = devices()
    if name not in known:
        raise ValueError(f"device: '{name}' is not in data/devices.json (known: {sorted(known)})")
    return known[name]


def shape(board: Device, name: str) -> Shape:
    """The whole board (`full`) or a MIG profile of the board's geometry."""
    if name == FULL:
        return Shape(name=FULL, compute_share=1.0, bandwidth_share=1.0, memory_gb=board.memory_gb)
    if board.mig_geometry is None or name not in MIG_GEOMETRIES[board.mig_geometry]:
        raise ValueError(f"shape: '{name}' is not a MIG profile of {board.name}")
    profile = MIG_GEOMETRIES[board.mig_geometry][name]
    return Shape(
        name=name,
        compute_share=profile.compute_slices / COMPUTE_SLICES,
        bandwidth_share=profile.memory_slices / MEMORY_SLICES,
        memory_gb=_devices().mig_memory_gb[name],
    )


def mig_profiles(board: Device) -> list[str]:
    """The board's MIG profiles, smallest first."""
    if board.mig_geometry is None:
        return []
    profiles = MIG_GEOMETRIES[board.mig_geometry].values()
    return [p.name for p in sorted(profiles, key=lambda p: (p.compute_slices, p.memory_slices))]
