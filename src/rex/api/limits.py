"""Request guards in front of every route: a body size limit and no NUL characters.

Pure ASGI (no BaseHTTPMiddleware): the body is read once, checked, and handed on unchanged.
NUL characters are refused up front because PostgreSQL cannot store them in text or JSONB;
without this a NUL in any string would surface as a database error instead of a 4xx.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.api.errors import error_response

_ESCAPED_NUL = b"\\u0000"


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def body_has_nul(body: bytes, content_type: str) -> bool:
    if content_type.startswith("application/json") or content_type.endswith("+json"):
        if _ESCAPED_NUL not in body.lower():
            return False
        try:
            return _has_nul(json.loads(body))
        except ValueError:
            return False  # not JSON: the route answers 400
    if content_type.startswith("application/x-www-form-urlencoded"):
        return b"%00" in body or b"\x00" in body
    return False


class RequestGuardMiddleware:
    """413 for bodies over ``max_body_bytes``; 400/422 for NUL characters in the URL or a
    JSON or form body."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"\x00" in unquote_to_bytes(
            scope.get("query_string", b"")
        ):
            await error_response(400, "The URL contains a NUL character.")(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        too_large = error_response(413, f"Request body is larger than {self.max_body_bytes} bytes.")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        passthrough: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                passthrough.append(message)  # a disconnect: hand it on
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get("content-type", "").lower()
        if body and body_has_nul(body, content_type):
            await error_response(422, "Text fields cannot contain NUL characters.")(
                scope, receive, send
            )
            return

        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            if passthrough:
                return passthrough.pop(0)
            return await receive()

        await self.app(scope, replay, send)
