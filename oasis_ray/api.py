"""The typed request/response of oasis-ray's Python handle API.

Other Ray applications call the ingress without HTTP:

    handle = serve.get_app_handle("oasis")
    reply: GenerateResponse = await handle.generate.remote(GenerateRequest(prompt="...", max_tokens=32))

The same admission rules as the HTTP API apply; a refused request raises
OasisRequestError carrying the HTTP status it would have had.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oasis_ray.intents import Intent
from oasis_ray.query_types import QueryType


class OasisRequestError(Exception):
    """A request refused before or by the engine, with an OpenAI-style status and type."""

    def __init__(self, status_code: int, message: str, param: str | None = None, error_type: str | None = None,
                 retry_after_s: int | None = None):
        """`retry_after_s`: for a refusal that passes (overload, no replica up), when to try again (HTTP Retry-After)."""
        super().__init__(status_code, message, param, error_type, retry_after_s)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.error_type = error_type or ("invalid_request_error" if status_code < 500 else "server_error")
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return f"{self.status_code} {self.error_type}: {self.message}"

    def to_openai(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.status_code}}

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(BaseModel):
    """Exactly one of `prompt` (completion) or `messages` (chat)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, description="Defaults to the only model when one is served.")
    prompt: str | list[int] | None = None
    messages: list[ChatMessage] | None = None
    max_tokens: int | None = Field(None, description="Output budget; the app's default_max_tokens when absent.")
    temperature: float = Field(1.0, ge=0)
    seed: int | None = None
    intent: Intent = Field(
        Intent.SLO, description="Pick among the running routes and shapes for this request (oasis_ray.intents)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self


class GenerateResponse(BaseModel):
    model: str
    text: str
    finish_reason: str | None
    query_type: QueryType
    route: str
    shape: str
    intent: Intent
    input_tokens: int
    output_tokens: int
