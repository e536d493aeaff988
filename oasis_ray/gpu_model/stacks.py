"""The serving stacks the published figures were measured on, and what each one does by default.

These are facts about each vLLM version's scheduler, not fitted numbers:
whether host work overlaps the GPU's (asynchronous scheduling), whether
prefills are chunked into decode steps by default, and the token budget of a
chunked step. How efficiently each version uses the GPU is fitted per version
(params_v1.json, `stacks`), never shared between them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of device memory an engine takes
RESERVED_GB = 1.0  # assumed: activations, CUDA graphs and allocator slack an engine keeps outside weights and KV cache


class StackFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    async_scheduling: bool = Field(description="Host scheduling of step n+1 overlaps the GPU's step n.")
    chunked_prefill: bool = Field(description="Prefills are split into chunks that share steps with decodes.")
    chunk_budget_tokens: int = Field(gt=0, description="Tokens per step when prefills are chunked.")
    default_max_num_seqs: int = Field(gt=0)
    source: str


STACKS: dict[str, StackFacts] = {
    facts.name: facts
    for facts in (
        StackFacts(
            name="vllm-0.4.2", async_scheduling=False, chunked_prefill=False, chunk_budget_tokens=512,
            default_max_num_seqs=256, source="ML.ENERGY rate sweep, image mlenergy/vllm:v0.4.2-openai (reference README)",
        ),
        StackFacts(
            name="vllm-0.5.4", async_scheduling=False, chunked_prefill=False, chunk_budget_tokens=512,
            default_max_num_seqs=256, source="ML.ENERGY leaderboard v2 (reference README); assumed not chunked",
        ),
        StackFacts(
            name="vllm-0.6.3", async_scheduling=False, chunked_prefill=False, chunk_budget_tokens=512,
            default_max_num_seqs=256,
            source="OASIS Section 4.1 (vLLM v0.6.3.post1); chunked prefill off by default below 32K context",
        ),
        StackFacts(
            name="vllm-0.11.1", async_scheduling=True, chunked_prefill=True, chunk_budget_tokens=8192,
            default_max_num_seqs=256,
            source="ML.ENERGY V3 configs: async-scheduling true, max-num-batched-tokens 8192 (reference README)",
        ),
    )
}


def stack_facts(name: str) -> StackFacts:
    if name not in STACKS:
        raise ValueError(f"stack: '{name}' is not a known serving stack (known: {sorted(STACKS)})")
    return STACKS[name]
