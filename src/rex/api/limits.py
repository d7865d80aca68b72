"""Request guards in front of every route: a body size limit, no NUL characters, no lone
surrogates, no non-finite numbers, no JSON nested deeper than 32 levels, JSON only in UTF-8.

Pure ASGI (no BaseHTTPMiddleware): the body is read once, checked, and handed on unchanged.
PostgreSQL cannot store NUL characters in text or JSONB, no JSON can carry Infinity or NaN
(``1e400`` parses as infinity), and a lone surrogate (``"\\ud800"``) cannot be encoded as UTF-8
by any database driver or JSON response; refusing them here, for every route, keeps them from
surfacing later as a database or serialisation error (a 500) instead of a 4xx.

The guard decides what is JSON exactly as FastAPI does (a ``json`` or ``+json`` subtype of
``application``, whatever the parameters), and refuses JSON that is not UTF-8 (RFC 8259):
Python's ``json.loads`` would otherwise decode UTF-16 and UTF-32 bodies that the byte-level
checks below cannot see into.
"""

from __future__ import annotations

import email.message
import functools
import json
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.api.errors import error_response

MAX_JSON_DEPTH = 32
TOO_DEEP = f"JSON is nested more than {MAX_JSON_DEPTH} levels deep."
NOT_UTF8 = "Request body is not valid JSON: JSON must be UTF-8 text."
# Only bodies with one of these are parsed here (the routes parse the rest themselves):
# an escaped NUL or surrogate, NaN, Infinity, or a three-digit exponent.
_SUSPECT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|nan|infinity|[eE]\+?\d{3}", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "Text fields cannot contain NUL characters."
        if _SURROGATE.search(value):
            return (
                "Text fields cannot contain lone surrogates (\\ud800-\\udfff): send valid Unicode."
            )
        return None
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


@functools.lru_cache(maxsize=256)  # on every request: a handful of distinct values
def _json_media(content_type: str) -> bool:
    """Whether FastAPI parses a body with this ``Content-Type`` as JSON (its own test)."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why this body cannot be stored anywhere (a 422), or None.

    A body without a ``Content-Type`` is checked as JSON too: ``/capture`` parses it so.
    """
    if not content_type or _json_media(content_type):
        return _json_problem(body)
    if content_type.startswith("application/x-www-form-urlencoded") and (
        b"%00" in body or b"\x00" in body
    ):
        return "Text fields cannot contain NUL characters."
    return None


def json_not_utf8(body: bytes, content_type: str) -> bool:
    """A body sent as JSON that is not UTF-8 text (a 400)."""
    return bool(content_type) and _json_media(content_type) and not _utf8(body)


def _utf8(body: bytes) -> bool:
    """UTF-8 without NUL bytes (a raw NUL is never valid JSON; UTF-16 is full of them)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in body


def _json_problem(body: bytes) -> str | None:
    """Why this JSON body cannot be stored, or None (also for a body that is not JSON)."""
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


class RequestGuardMiddleware:
    """413 for bodies over ``max_body_bytes``; 400 for a NUL character in the URL or JSON that
    is not UTF-8; 422 for a NUL character, a lone surrogate, a non-finite number or too deep
    nesting in a JSON or form body; nothing at all (the app never runs) for a request whose
    client disconnected before sending its whole body."""

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
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before its body was complete (fewer bytes than its
                # Content-Length, a chunked body without its last chunk). What arrived is not
                # the request: handing it on as whole would act on half a form or half a JSON
                # document. Nobody is left to answer.
                return
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
        if body and json_not_utf8(body, content_type):
            await error_response(400, NOT_UTF8)(scope, receive, send)
            return
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
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"Request body is larger than {self.max_body_bytes} bytes."
        await error_response(413, message)(scope, receive, send)
