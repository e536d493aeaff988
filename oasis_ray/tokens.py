"""Counting input tokens with the model's own tokenizer, as the engine will see them."""

from __future__ import annotations

from typing import Any, Sequence

from oasis_ray.api import OasisRequestError

Prompt = str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]]


def _text_of(content: Any) -> str:
    """Flatten OpenAI content parts to their text; non-text parts carry no tokens here."""
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


class TokenCounter:
    def __init__(self, tokenizer_source: str):
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)

    def count_prompt(self, prompt: Prompt) -> int:
        """Tokens of a completion prompt; for a batch, its longest member decides the class."""
        if isinstance(prompt, str):
            try:
                return len(self._tokenizer(prompt, add_special_tokens=True)["input_ids"])
            except Exception as exc:  # text the tokenizer cannot take (a lone surrogate) is the client's error
                raise OasisRequestError(400, f"prompt cannot be tokenized: {exc}", param="prompt") from exc
        if not prompt:
            return 0
        if all(isinstance(t, int) for t in prompt):
            return len(prompt)
        return max(self.count_prompt(p) for p in prompt)

    def count_chat(self, messages: Sequence[dict]) -> int:
        normalised = [{"role": m.get("role"), "content": _text_of(m.get("content"))} for m in messages]
        try:
            ids = self._tokenizer.apply_chat_template(normalised, add_generation_prompt=True, tokenize=True)
        except Exception as exc:  # the template itself rejects the conversation
            raise OasisRequestError(400, f"messages cannot be rendered by the model's chat template: {exc}",
                                    param="messages") from exc
        if hasattr(ids, "keys"):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)
