"""One vLLM engine on one board or MIG slice: step times from the model's shapes, a closed loop from the steps.

The form, and why:

- A step reads the layers' weights once and each running sequence's KV
  cache, and does 2 FLOPs per weight per token plus attention. Its GPU time
  is the larger of bytes / (bandwidth x efficiency; weights and paged KV
  reads each with their own efficiency) and FLOPs / (peak x
  efficiency x f/f_max) (a roofline: decode is bandwidth-bound, prefill
  compute-bound), plus a fixed per-step GPU time that scales with 1/clock.
  Below a knee clock the SMs cannot issue loads fast enough to keep the HBM
  busy, so achievable bandwidth falls with the clock there (fitted per chip).
  The host adds a time per step and per running sequence (scheduling,
  sampling, output processing); with asynchronous scheduling (vLLM 0.11)
  the host overlaps the GPU, otherwise it adds to it.
- A slice has its share of compute (compute slices / 7) and of bandwidth
  (memory slices / 8), and its own memory for weights and KV cache.
- Standard scheduling runs prefills as steps of their own and the running
  sequences' decodes in between, so at concurrency c with B = min(c,
  max_num_seqs, KV capacity) running, B completions take (O - 1) decode
  steps and B / k prefill steps, k the requests one decode step finishes
  (their replacements are prefilled together): X = B / ((B/k) t_prefill +
  (O-1) t_decode), and by Little's law the closed loop's mean latency is c / X.
- Chunked prefill fills each step's token budget with the running decodes
  first and a prefill chunk after, so prefill compute rides in the steps
  the decodes need anyway.
- Prefix caching skips the prefill work of the cached share of a prompt
  (`Query.prefix_hit`); the profiled queries share no prefix (hit 0), so it
  costs what standard scheduling costs.
- Latency about its mean is log-normal with a fitted spread per stack.

Everything is vectorised over concurrency, so an MSRR search evaluates a
thousand load levels at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from oasis_ray.gpu_model.hardware import Architecture, Device, Shape
from oasis_ray.gpu_model.params import Chip, StackParams
from oasis_ray.gpu_model.stacks import GPU_MEMORY_UTILIZATION, RESERVED_GB, StackFacts

# Tokens one standard prefill step may batch: vLLM's max_num_batched_tokens, the 8K context of these models.
PREFILL_BATCH_TOKENS = 8192
_Z95 = 1.6449
_Z99 = 2.3263


@dataclass(frozen=True)
class Query:
    input_tokens: float
    output_tokens: float
    prefix_hit: float = 0.0


@dataclass(frozen=True)
class Engine:
    """One engine configuration; `clock_mhz` None is the board's maximum (boost) clock."""

    arch: Architecture
    board: Device
    shape: Shape
    stack: StackParams
    facts: StackFacts
    chip: Chip
    clock_mhz: float | None = None
    max_num_seqs: int = 256
    chunked_prefill: bool = False

    @property
    def clock_fraction(self) -> float:
        return 1.0 if self.clock_mhz is None else self.clock_mhz / self.board.max_sm_clock_mhz

    def kv_capacity_tokens(self) -> float:
        free_gb = self.shape.memory_gb * GPU_MEMORY_UTILIZATION - self.arch.weight_bytes / 1e9 - RESERVED_GB
        return max(free_gb, 0.0) * 1e9 / self.arch.kv_bytes_per_token

    def holds(self, query: Query) -> bool:
        """The weights fit and at least one request of this query fits in the KV cache."""
        return self.kv_capacity_tokens() >= query.input_tokens + query.output_tokens


@dataclass(frozen=True)
class Steps:
    """Averages over an engine's busy time at each load level (arrays, one entry per level)."""

    concurrency: np.ndarray
    running: np.ndarray
    throughput_rps: np.ndarray
    latency_mean_s: np.ndarray
    ttft_s: np.ndarray
    decode_step_s: np.ndarray
    gpu_active: np.ndarray
    flop_util: np.ndarray
    mem_util: np.ndarray
    latency_sigma: float

    @property
    def busy(self) -> np.ndarray:
        """A closed loop keeps the engine stepping whenever a request is in it."""
        return np.minimum(self.concurrency, 1.0)

    def quantile_s(self, z: float) -> np.ndarray:
        sigma = self.latency_sigma
        return self.latency_mean_s * math.exp(z * sigma - sigma * sigma / 2)

    @property
    def p50_s(self) -> np.ndarray:
        return self.quantile_s(0.0)

    @property
    def p95_s(self) -> np.ndarray:
        return self.quantile_s(_Z95)

    @property
    def p99_s(self) -> np.ndarray:
        return self.quantile_s(_Z99)


@dataclass(frozen=True)
class _Step:
    seconds: np.ndarray
    gpu_s: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray


def _step(
    engine: Engine,
    x: np.ndarray,
    *,
    decode_seqs: np.ndarray,
    context: float,
    prefill_tokens: np.ndarray,
    prefill_context: float,
    prefill_seqs: np.ndarray,
) -> _Step:
    arch, stack, shape, board = engine.arch, engine.stack, engine.shape, engine.board
    flop_rate = board.peak_bf16_tflops * 1e12 * shape.compute_share * stack.flop_efficiency * x
    byte_rate = (board.memory_bandwidth_gbs * 1e9 * shape.bandwidth_share
                 * np.minimum(1.0, x / engine.chip.bandwidth_knee))
    kv = arch.kv_bytes_per_token
    kv_bytes = decode_seqs * context * kv + prefill_tokens * kv + prefill_seqs * prefill_context * kv
    nbytes = arch.step_weight_bytes + kv_bytes
    memory_s = (arch.step_weight_bytes / stack.bandwidth_efficiency + kv_bytes / stack.kv_bandwidth_efficiency) / byte_rate
    flops = ((decode_seqs + prefill_tokens) * arch.flops_per_token
             + arch.attention_flops(decode_seqs, context)
             + arch.attention_flops(prefill_tokens, prefill_context + prefill_tokens / np.maximum(prefill_seqs, 1) / 2)
             + (decode_seqs + prefill_seqs) * arch.lm_head_flops)
    gpu = np.maximum(memory_s, flops / flop_rate) + stack.gpu_step_s / x
    host = stack.host_step_s + stack.host_seq_s * (decode_seqs + prefill_seqs)
    seconds = np.maximum(gpu, host) if engine.facts.async_scheduling else gpu + host
    return _Step(seconds=seconds, gpu_s=gpu, flops=flops, bytes=nbytes)


def _utilisation(engine: Engine, x: np.ndarray, steps: list[tuple[np.ndarray, _Step]]) -> tuple[np.ndarray, ...]:
    """Time-weighted GPU-active share, FLOP-rate share and bandwidth share over a mix of steps."""
    board, shape = engine.board, engine.shape
    total = sum(weight * step.seconds for weight, step in steps)
    active = sum(weight * step.gpu_s for weight, step in steps) / total
    flops = sum(weight * step.flops for weight, step in steps) / total
    nbytes = sum(weight * step.bytes for weight, step in steps) / total
    flop_util = flops / (board.peak_bf16_tflops * 1e12 * shape.compute_share * x)
    mem_util = nbytes / (board.memory_bandwidth_gbs * 1e9 * shape.bandwidth_share)
    return active, flop_util, mem_util


def closed_loop(
    engine: Engine, query: Query, concurrency: np.ndarray, *, clock_fraction: np.ndarray | None = None,
    kv_limited: bool = True,
) -> Steps:
    """Steady state of `concurrency` clients each sending its next request when the last one ends.

    `clock_fraction` overrides the engine's clock per level (the power cap
    uses it); `kv_limited` False takes the running batch as given (for
    measurements that report the batch they ran at).
    """
    c = np.asarray(concurrency, dtype=float)
    x = np.broadcast_to(engine.clock_fraction if clock_fraction is None else clock_fraction, c.shape).astype(float)
    inp, out = float(query.input_tokens), float(query.output_tokens)
    decodes = max(out - 1.0, 0.0)
    computed_input = inp * (1.0 - query.prefix_hit)
    limit = float(engine.max_num_seqs)
    if kv_limited:
        limit = min(limit, math.floor(engine.kv_capacity_tokens() / (inp + out / 2)))
    running = np.minimum(c, max(limit, 1.0))
    context = inp + out / 2
    if engine.chunked_prefill:
        throughput, latency, ttft, decode_step, mix = _chunked(engine, x, running, c, inp, computed_input, decodes,
                                                               context)
    else:
        throughput, latency, ttft, decode_step, mix = _standard(engine, x, running, c, inp, computed_input, decodes,
                                                                context)
    active, flop_util, mem_util = _utilisation(engine, x, mix)
    return Steps(
        concurrency=c, running=running, throughput_rps=throughput, latency_mean_s=latency, ttft_s=ttft,
        decode_step_s=decode_step, gpu_active=active, flop_util=flop_util, mem_util=mem_util,
        latency_sigma=engine.stack.latency_sigma,
    )


def _standard(engine, x, running, c, inp, computed_input, decodes, context):
    """Prefill steps apart from decode steps; requests that finished in one decode step are prefilled together."""
    zero = np.zeros_like(running)
    together = np.clip(running / max(decodes, 1.0), 1.0, max(1.0, PREFILL_BATCH_TOKENS / max(computed_input, 1.0)))
    prefill = _step(engine, x, decode_seqs=zero, context=context, prefill_tokens=together * computed_input,
                    prefill_context=inp - computed_input, prefill_seqs=together)
    decode = _step(engine, x, decode_seqs=running, context=context, prefill_tokens=zero, prefill_context=0.0,
                   prefill_seqs=zero)
    prefill_steps = running / together
    cycle = prefill_steps * prefill.seconds + decodes * decode.seconds
    throughput = running / cycle
    latency = c / throughput
    ttft = np.maximum(c - running, 0) / throughput + prefill.seconds + 0.5 * decode.seconds
    return throughput, latency, np.minimum(ttft, latency), decode.seconds, [(prefill_steps, prefill),
                                                                            (zero + decodes, decode)]


def _chunked(engine, x, running, c, inp, computed_input, decodes, context):
    budget = float(engine.facts.chunk_budget_tokens)
    per_step_cap = budget / (decodes + max(computed_input, 1.0))
    in_decode = running * decodes / (decodes + 1.0)
    for _ in range(6):
        prefill_steps = np.maximum(1.0, computed_input / np.maximum(budget - in_decode, 1.0))
        completions = np.minimum(running / (decodes + prefill_steps), per_step_cap)
        in_decode = completions * decodes
    step = _step(engine, x, decode_seqs=in_decode, context=context, prefill_tokens=completions * computed_input,
                 prefill_context=inp - computed_input, prefill_seqs=completions)
    throughput = completions / step.seconds
    latency = c / throughput
    # The mean step above spreads every prompt's prefill over all steps, which is right for throughput but
    # not for the first token: that waits for a free slot, then for the steps that carry this prompt's own
    # chunks beside the running decodes. (Taking the latency less the decodes left the prefill almost out of
    # the unloaded TTFT, and so out of the cost a longer prompt adds: ServiceCurve.length_factor.)
    chunk = _step(engine, x, decode_seqs=in_decode, context=context, prefill_tokens=computed_input / prefill_steps,
                  prefill_context=inp - computed_input, prefill_seqs=np.ones_like(running))
    ttft = np.maximum(c - running, 0) / throughput + prefill_steps * chunk.seconds
    return throughput, latency, np.minimum(ttft, latency), step.seconds, [(np.ones_like(running), step)]
