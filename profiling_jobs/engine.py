"""The vLLM engine a trial measures, in the trial's own process, reached the way the load generator needs.

In-process AsyncLLM rather than a Serve deployment: profiling measures the
engine, and an HTTP or Serve hop would add latency the cost table would then
attribute to the hardware. Prompts are token ids, so input length is exact;
`ignore_eos` with `max_tokens` makes output length exact; outputs stream as
deltas so the first token's arrival is timed, not inferred.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs import TokensPrompt
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM

from oasis_ray.config import EMBEDDED_SOURCE
from oasis_ray.embedded_model import build_embedded_model
from oasis_ray.profiling.loadgen import SendRequest, prompt_token_ids
from oasis_ray.profiling.measurement import RequestRecord
from oasis_ray.profiling.sweep_plan import EngineConfig
from oasis_ray.profiling.sweep_spec import QueryLengths


def model_path(source: str) -> str:
    return str(build_embedded_model()) if source == EMBEDDED_SOURCE else source


def engine_args(config: EngineConfig) -> AsyncEngineArgs:
    kwargs: dict[str, Any] = config.engine_kwargs()
    return AsyncEngineArgs(
        model=model_path(config.model.source),
        served_model_name=config.model.model_id,
        disable_log_stats=True,
        **kwargs,
    )


class ProfiledEngine:
    """One started engine; `start` must run inside the event loop that will drive its requests."""

    def __init__(self, engine: AsyncLLM, token_pool: list[int]) -> None:
        self._engine = engine
        self.token_pool = token_pool
        self._request_numbers = itertools.count()

    @classmethod
    async def start(cls, config: EngineConfig) -> ProfiledEngine:
        engine = AsyncLLM.from_engine_args(engine_args(config))
        tokenizer = engine.get_tokenizer()
        special = set(tokenizer.all_special_ids)
        return cls(engine, [i for i in range(len(tokenizer)) if i not in special])

    def sender(self, query: QueryLengths, label: str) -> SendRequest:
        """Requests of exactly the query's lengths; each gets a new prompt, across all levels of the trial."""
        params = SamplingParams(
            max_tokens=query.output_tokens, ignore_eos=True, temperature=0.0, output_kind=RequestOutputKind.DELTA
        )

        async def send(index: int) -> RequestRecord:
            number = next(self._request_numbers)
            prompt = TokensPrompt(prompt_token_ids=prompt_token_ids(self.token_pool, query.input_tokens, number))
            start_s = time.perf_counter()
            first_token_s: float | None = None
            tokens = 0
            async for output in self._engine.generate(prompt, params, request_id=f"{label}-{number}"):
                new = len(output.outputs[0].token_ids)
                if new and first_token_s is None:
                    first_token_s = time.perf_counter()
                tokens += new
            end_s = time.perf_counter()
            return RequestRecord(
                index=index,
                start_s=start_s,
                first_token_s=first_token_s if first_token_s is not None else end_s,
                end_s=end_s,
                output_tokens=tokens,
            )

        return send

    def shutdown(self) -> None:
        self._engine.shutdown()
