"""What a response looked like to its client: output tokens, time to first token, end-to-end time.

The ingress sees responses as Starlette objects, so measuring them belongs to
the Serve layer. A JSON answer carries its own usage; a stream is timed as it
passes through, counting the server-sent events of generated output: vLLM
sends one per engine step (one token, even when its text is empty because it
ends inside a multi-byte character), and a chat stream opens with one that
only names the role.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass
class StreamObservation:
    started_s: float
    first_token_s: float | None = None
    output_tokens: int = 0

    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.started_s

    def tpot_s(self, finished_s: float) -> float | None:
        if self.first_token_s is None or self.output_tokens < 2:
            return None
        return (finished_s - self.first_token_s) / (self.output_tokens - 1)


def completion_tokens(body: bytes) -> int:
    """Generated tokens of a JSON answer, from its usage; 0 for an error body, which has none."""
    usage = json.loads(body).get("usage") or {}
    return int(usage.get("completion_tokens") or 0)


def _is_output_step(event: str) -> bool:
    if not event.startswith("data: {"):
        return False
    for choice in json.loads(event[len("data: "):]).get("choices") or []:
        delta = choice.get("delta") or {}
        if "text" in choice or ("content" in delta and "role" not in delta):
            return True
    return False


async def timed_stream(
    chunks: AsyncIterator[str | bytes], observation: StreamObservation, on_done: Callable[[float], None]
) -> AsyncIterator[str | bytes]:
    """Pass the stream through unchanged, noting first-token time and token events; report when it ends."""
    try:
        async for chunk in chunks:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            tokens = sum(_is_output_step(event) for event in text.split("\n\n") if event)
            if tokens and observation.first_token_s is None:
                observation.first_token_s = time.perf_counter()
            observation.output_tokens += tokens
            yield chunk
    finally:
        on_done(time.perf_counter())
