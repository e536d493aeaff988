"""ASGI guards in front of the OpenAI routes: API key and body size.

They answer before any JSON is parsed or any engine is touched, with the same
OpenAI-style error body as the rest of the API.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oasis_ray.api import OasisRequestError

# Liveness probes and Serve's own routes stay open without a key.
_OPEN_PATHS = ("/health", "/-/")


async def send_error(send: Send, error: OasisRequestError, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error.to_openai()).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """Bearer-token check, as vLLM's OpenAI server does with --api-key."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_OPEN_PATHS):
            return await self.app(scope, receive, send)
        given = dict(scope.get("headers", [])).get(b"authorization", b"")
        if not hmac.compare_digest(given, self._expected):
            return await send_error(
                send, OasisRequestError(401, "Missing or invalid API key: send 'Authorization: Bearer <key>'.",
                                        error_type="authentication_error"))
        return await self.app(scope, receive, send)


class MaxBodyMiddleware:
    """Refuse bodies over the limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self._max = max_bytes

    def _too_large(self) -> OasisRequestError:
        return OasisRequestError(413, f"Request body exceeds the limit of {self._max} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            return await send_error(send, self._too_large())
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message]), send)
            size += len(message.get("body", b""))
            if size > self._max:
                return await send_error(send, self._too_large())
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replay = _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)
        return await self.app(scope, replay, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive
