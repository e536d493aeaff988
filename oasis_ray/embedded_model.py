"""The embedded default model: a tiny random-weight Llama built on this machine.

There is no model hub on CI or on air-gapped clusters, yet the serving path must
be real from the first command. So oasis-ray builds its own smoke-test model: a
byte-level BPE tokenizer trained on a seeded synthetic corpus plus a 2-layer
Llama with random weights. Its text is nonsense by design; it exists to exercise
Ray Serve, vLLM and the router end to end. Real deployments name a Hugging Face
model id or a local path instead.

The build is deterministic (fixed seeds, fixed corpus) and cached outside git,
keyed by a hash of its specification, so a second call returns at once. Deeper
variants (same width, heads and tokenizer, more hidden layers) are built the
same way on request; they exist to check fingerprint profiling against a full
profile of a model whose layers dominate its latency more than the default's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

EMBEDDED_MODEL_ID = "oasis-tiny-llama"

# head_dim = hidden_size / num_attention_heads must be 64: vLLM's CPU attention
# kernels reject smaller heads.
_MODEL_SPEC = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "vocab_size": 4096,
    "seed": 0,
    "format": 1,
}

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>"]

_WORDS = (
    "the a of to and in is for on that with as by it from at be this are or an was "
    "energy power watt joule latency token request route query serve model cluster "
    "replica gpu slice memory clock batch prefill decode cache input output small "
    "large rate load trace table profile plan deploy observe scale queue budget "
    "time second minute hour day node rack cloud price carbon green fast slow"
).split()


DEFAULT_HIDDEN_LAYERS = _MODEL_SPEC["num_hidden_layers"]


def model_spec(num_hidden_layers: int = DEFAULT_HIDDEN_LAYERS) -> dict[str, int]:
    """The default's specification with `num_hidden_layers` hidden layers; the default itself is unchanged."""
    if num_hidden_layers < 1:
        raise ValueError(f"num_hidden_layers: {num_hidden_layers} must be at least 1")
    return {**_MODEL_SPEC, "num_hidden_layers": num_hidden_layers}


def spec_hash(num_hidden_layers: int = DEFAULT_HIDDEN_LAYERS) -> str:
    return hashlib.sha256(json.dumps(model_spec(num_hidden_layers), sort_keys=True).encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    """Where built artefacts live: OASIS_CACHE_DIR, else the user's cache dir."""
    root = os.environ.get("OASIS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "oasis-ray"
    )
    return Path(root)


def embedded_model_path(cache_dir: Path | None = None, num_hidden_layers: int = DEFAULT_HIDDEN_LAYERS) -> Path:
    return (cache_dir or default_cache_dir()) / f"{EMBEDDED_MODEL_ID}-{spec_hash(num_hidden_layers)}"


def _synthetic_corpus(seed: int, lines: int = 4000) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) for _ in range(lines)]


def _build_tokenizer(out_dir: Path) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_MODEL_SPEC["vocab_size"],
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_synthetic_corpus(_MODEL_SPEC["seed"]), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=_MODEL_SPEC["max_position_embeddings"],
    )
    fast.chat_template = _CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return len(fast)


def _build_weights(out_dir: Path, vocab_size: int, spec: dict[str, int]) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(spec["seed"])
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        torch_dtype="float32",
    )
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)


def build_embedded_model(cache_dir: Path | None = None, num_hidden_layers: int = DEFAULT_HIDDEN_LAYERS) -> Path:
    """Build the model once and return its directory; later calls only return it.

    The build happens in a temporary sibling directory and is renamed into place
    at the end, so an interrupted build never leaves a half-written model behind.
    """
    spec = model_spec(num_hidden_layers)
    target = embedded_model_path(cache_dir, num_hidden_layers)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        vocab_size = _build_tokenizer(staging)
        _build_weights(staging, vocab_size, spec)
        (staging / "OASIS_EMBEDDED_MODEL.json").write_text(
            json.dumps({"id": EMBEDDED_MODEL_ID, "spec": spec, "note": "random weights; text is nonsense"})
        )
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description="Build (once) the embedded tiny smoke-test model.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: OASIS_CACHE_DIR or ~/.cache/oasis-ray")
    parser.add_argument(
        "--layers", type=int, default=DEFAULT_HIDDEN_LAYERS, help=f"hidden layers (default {DEFAULT_HIDDEN_LAYERS})"
    )
    args = parser.parse_args()
    print(build_embedded_model(args.cache_dir, args.layers))


if __name__ == "__main__":
    main()
