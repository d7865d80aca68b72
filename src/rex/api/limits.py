"""Request guards in front of every route: a body size limit, no NUL characters, no
non-finite numbers, no JSON nested deeper than 32 levels.

Pure ASGI (no BaseHTTPMiddleware): the body is read once, checked, and handed on unchanged.
PostgreSQL cannot store NUL characters in text or JSONB, and no JSON can carry Infinity or NaN
(``1e400`` parses as infinity); refusing them here, for every route, keeps them from surfacing
later as a database or serialisation error (a 500) instead of a 4xx.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.api.errors import error_response

MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON is nested more than {MAX_JSON_DEPTH} levels deep."
# Only bodies with one of these are parsed here (the routes parse the rest themselves).
_SUSPECT = re.compile(rb"\\u0000|nan|infinity|[eE]\+?\d{3}", re.IGNORECASE)


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        return "Text fields cannot contain NUL characters." if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "Numbers must be finite."
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        problem = _unstorable(item)
        if problem:
            return problem
    return None


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((item, level + 1) for item in node)
    return deepest


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why this body cannot be stored anywhere, or None."""
    if content_type.startswith("application/json") or content_type.endswith("+json"):
        nested = body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH
        if not nested and not _SUSPECT.search(body):
            return None
        try:
            parsed = json.loads(body)
        except RecursionError:
            return TOO_DEEP
        except ValueError:
            return None  # not JSON: the route answers 400
        if nested and _depth(parsed) > MAX_JSON_DEPTH:
            # Stored, it could not be sent back: serialisers stop at a few hundred levels.
            return TOO_DEEP
        return _unstorable(parsed)
    if content_type.startswith("application/x-www-form-urlencoded") and (
        b"%00" in body or b"\x00" in body
    ):
        return "Text fields cannot contain NUL characters."
    return None


class RequestGuardMiddleware:
    """413 for bodies over ``max_body_bytes``; 400 for a NUL character in the URL; 422 for a
    NUL character, a non-finite number or too deep nesting in a JSON or form body."""

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
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
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
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = headers.get("content-type", "").lower()
        problem = body_problem(body, content_type) if body else None
        if problem:
            await error_response(422, problem)(scope, receive, send)
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

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"Request body is larger than {self.max_body_bytes} bytes."
        await error_response(413, message)(scope, receive, send)
