"""Fingerprints of a model (iServe §5.1): copies with one or two hidden layers and everything else unchanged.

Profiling a model costs what the model costs to run, and most of that is its
stack of identical hidden layers. iServe (seed 003, §5) profiles *fingerprints*
instead: the same embedding, width, attention heads, KV heads, vocabulary and
LM head, with only 1-2 hidden layers, and extrapolates the full model's
latency from them (oasis_ray.profiling.fingerprint_estimate does that).

A fingerprint here is a model directory holding the source's config.json with
the layer count cut, and the source's tokenizer and generation files. It holds
no weights: it is always run with vLLM's `load_format: dummy` (random weights
of the right shapes), which costs the same per token as the real ones, since
trials force exact output lengths with `ignore_eos`. So a fingerprint of a
70B model is a few kilobytes on disk and is built without reading the weights.

`fingerprint_config` is the pure part; `build_fingerprint` writes the
directory once into the oasis-ray cache, next to the embedded model, keyed by
a hash of the source config and the layer count.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from oasis_ray.embedded_model import default_cache_dir

FINGERPRINT_LAYERS = (1, 2)
MARKER_FILE = "OASIS_FINGERPRINT.json"
# Where Hugging Face configs keep the hidden-layer count, by family (Llama/Mistral/Qwen/Falcon, GPT-2/GPT-J, others).
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
# Per-layer lists some configs carry (e.g. sliding vs full attention per layer); they are cut with the stack.
PER_LAYER_LISTS = ("layer_types",)
# Files that hold weights (or index them); a fingerprint runs on dummy weights and copies none of them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack")
_WEIGHT_INDEX_SUFFIX = ".index.json"
# oasis-ray's own marker files (the embedded model's, a fingerprint's) describe their directory, not a copy.
_OASIS_MARKER_PREFIX = "OASIS_"
_FORMAT = 1


class FingerprintError(ValueError):
    """A model a fingerprint cannot be made of; the message names the file or config field."""


def layer_count(config: dict[str, Any]) -> int:
    """The model's hidden-layer count, from whichever key its family uses."""
    if isinstance(config.get("text_config"), dict):
        raise FingerprintError(
            "text_config: a multimodal config nests its language model; fingerprints cover decoder-only models"
        )
    for key in LAYER_COUNT_KEYS:
        value = config.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FingerprintError(f"{key}: {value!r} is not a layer count")
            return value
    raise FingerprintError(f"config.json names no hidden-layer count (looked for {', '.join(LAYER_COUNT_KEYS)})")


def fingerprint_config(config: dict[str, Any], layers: int) -> dict[str, Any]:
    """The source config with `layers` hidden layers; every other field (width, heads, vocabulary) is kept.

    A fingerprint must be shallower than its model: one as deep is the model.
    """
    total = layer_count(config)
    if not 1 <= layers < total:
        raise FingerprintError(f"layers: {layers} must be at least 1 and below the model's {total} hidden layers")
    key = next(k for k in LAYER_COUNT_KEYS if config.get(k) is not None)
    cut = {**config, key: layers}
    for name in PER_LAYER_LISTS:
        value = config.get(name)
        if isinstance(value, list):
            if len(value) != total:
                raise FingerprintError(f"{name}: {len(value)} entries for {total} hidden layers")
            cut[name] = value[:layers]
    return cut


def fingerprint_model_id(model_id: str, layers: int) -> str:
    """The name a fingerprint's trials are filed under in its own cost table."""
    return f"{model_id}@fingerprint-{layers}L"


def fingerprint_path(source_dir: Path, layers: int, cache_dir: Path | None = None) -> Path:
    """Where the fingerprint of `source_dir` lives: named after the source, keyed by its config and `layers`."""
    config_text = _config_path(source_dir).read_text()
    key = hashlib.sha256(json.dumps([_FORMAT, layers, config_text]).encode()).hexdigest()[:12]
    return (cache_dir or default_cache_dir()) / "fingerprints" / f"{source_dir.name}-{layers}L-{key}"


def build_fingerprint(source_dir: Path, layers: int, cache_dir: Path | None = None) -> Path:
    """Write the fingerprint once and return its directory; later calls only return it.

    Built in a temporary sibling and renamed into place, as the embedded
    model is, so an interrupted build never leaves half a fingerprint.
    """
    source_dir = Path(source_dir)
    config = _read_config(source_dir)
    cut = fingerprint_config(config, layers)
    target = fingerprint_path(source_dir, layers, cache_dir)
    if (target / MARKER_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0o700 would hide it from Ray workers running as another user
        for item in sorted(source_dir.iterdir()):
            if item.is_file() and _copied(item.name):
                shutil.copy2(item, staging / item.name)
        (staging / "config.json").write_text(json.dumps(cut, indent=2, sort_keys=True) + "\n")
        (staging / MARKER_FILE).write_text(
            json.dumps(
                {
                    "source": str(source_dir.resolve()),
                    "source_layers": layer_count(config),
                    "layers": layers,
                    "note": "no weights: run with load_format dummy",
                },
                indent=2,
            )
            + "\n"
        )
        try:
            staging.rename(target)
        except OSError:
            if not (target / MARKER_FILE).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _config_path(source_dir: Path) -> Path:
    path = Path(source_dir) / "config.json"
    if not path.is_file():
        raise FingerprintError(f"{path}: no such file; a fingerprint is built from a local model directory")
    return path


def _read_config(source_dir: Path) -> dict[str, Any]:
    path = _config_path(source_dir)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FingerprintError(f"{path}: not JSON ({error})") from None
    if not isinstance(config, dict):
        raise FingerprintError(f"{path}: expected a JSON object")
    return config


def _copied(name: str) -> bool:
    """Tokenizer, generation and template files; not weights, not the config (rewritten), not oasis markers."""
    weights = name.endswith(_WEIGHT_SUFFIXES) or name.endswith(_WEIGHT_INDEX_SUFFIX)
    return not weights and name != "config.json" and not name.startswith(_OASIS_MARKER_PREFIX)
