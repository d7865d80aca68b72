"""``Idempotency-Key`` on every POST of the key-authenticated API.

Applied as ASGI middleware to any POST route that depends on the API key (see
``requires_api_key``), so POST endpoints added later get it without opting in; ``/capture``
(unauthenticated) is left alone.

- The first request with a key claims it (``rex.db.idempotency``), runs, and its response
  (any status below 500) is stored for 24 hours before it is sent.
- A repeat with the same key and the same request (method, path, query and body; JSON bodies
  compared after parsing) gets the stored response again, with ``Idempotent-Replayed: true``,
  and writes nothing.
- The same key with a different request is a 409 (``idempotency_key_reused``); a repeat while
  the first is still running is a 409 (``idempotency_key_in_use``) with ``Retry-After``.
- A 5xx, or a crash, releases the key, so the client's retry runs the request again.
Keys are scoped to the workspace of the API key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex.api.deps import api_key_from_headers
from rex.api.errors import error_response
from rex.api.routes import api_operations
from rex.db import idempotency as store
from rex.db.engine import Database
from rex.runtime import runtime_of
from rex.workspaces import service as workspaces

log = structlog.get_logger("rex.api")

HEADER = "idempotency-key"
MAX_KEY_LENGTH = 255


def _canonical_body(body: bytes, content_type: str) -> bytes:
    if content_type.startswith("application/json") and body:
        try:
            return json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            pass
    return body


def request_fingerprint(scope: Scope, body: bytes, content_type: str) -> str:
    digest = hashlib.sha256()
    for part in (
        scope["method"].encode(),
        scope["path"].encode("utf-8", "surrogateescape"),
        scope.get("query_string", b""),
        _canonical_body(body, content_type),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _idempotent_post_paths(app: Any) -> list[re.Pattern[str]]:
    """Path patterns of the POST operations that take an API key."""
    return [
        op.path_regex for op in api_operations(app) if "POST" in op.methods and op.requires_api_key
    ]


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The app's routes are complete by its first request: read once, then.
        self._post_paths: list[re.Pattern[str]] | None = None

    def _authenticated_post(self, scope: Scope) -> bool:
        if self._post_paths is None:
            self._post_paths = _idempotent_post_paths(scope["app"])
        return any(pattern.match(scope["path"]) for pattern in self._post_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get(HEADER)
        if key is None or not self._authenticated_post(scope):
            await self.app(scope, receive, send)
            return
        if not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()):
            await error_response(
                400,
                f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters "
                "(a UUID is a good choice).",
                field="Idempotency-Key",
            )(scope, receive, send)
            return
        db = runtime_of(scope["app"]).db
        api_key = api_key_from_headers(headers)
        found = None
        if api_key:
            async with db.read() as conn:
                found = await workspaces.authenticate(conn, api_key)
        if found is None:  # the route answers 401
            await self.app(scope, receive, send)
            return
        workspace_id = found[1].id

        body, receive = await _read_body(receive)
        fingerprint = request_fingerprint(scope, body, headers.get("content-type", "").lower())
        clock = runtime_of(scope["app"]).clock
        async with db.transaction() as conn:
            claim = await store.claim(
                conn, workspace_id=workspace_id, key=key, request_hash=fingerprint, now=clock.now()
            )
        if claim.outcome is store.ClaimOutcome.MISMATCH:
            response = error_response(
                409,
                "This Idempotency-Key was already used with a different request; "
                "use a new key for a new request.",
                type="idempotency_key_reused",
                field="Idempotency-Key",
            )
            await response(scope, receive, send)
            return
        if claim.outcome is store.ClaimOutcome.IN_FLIGHT:
            response = error_response(
                409,
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                type="idempotency_key_in_use",
                field="Idempotency-Key",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        if claim.outcome is store.ClaimOutcome.REPLAY:
            withheld = _withheld_answer(claim.status or 200, claim.body or "")
            if withheld is not None:
                await withheld(scope, receive, send)
                return
            await _send_stored(send, claim.status or 200, claim.body or "")
            return

        assert claim.claimed_at is not None
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await _release(db, workspace_id, key, claim.claimed_at)
            raise
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        response_body = b"".join(
            m.get("body", b"") for m in messages if m["type"] == "http.response.body"
        )
        try:
            async with db.transaction() as conn:
                if status < 500:
                    await store.complete(
                        conn,
                        workspace_id=workspace_id,
                        key=key,
                        claimed_at=claim.claimed_at,
                        status=status,
                        body=_without_secret(response_body),
                    )
                else:
                    await store.release(
                        conn, workspace_id=workspace_id, key=key, claimed_at=claim.claimed_at
                    )
        except Exception:
            # The write itself committed; the client still gets its answer. The key stays
            # "in flight" until it goes stale (store.STALE_AFTER).
            log.exception("idempotency_store_failed", key=key)
        for message in messages:
            await send(message)


_WITHHELD = "rex_secret_withheld"


def _without_secret(body: bytes) -> str:
    """The response body to keep for replays: one whose ``data`` holds a signing secret is
    kept without it (and marked), so no secret is ever stored in an idempotency record."""
    text = body.decode("utf-8", "replace")
    if b'"secret"' not in body:
        return text
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or "secret" not in data:
        return text
    return orjson.dumps({_WITHHELD: True, "id": data.get("id")}).decode()


def _withheld_answer(status: int, stored: str) -> Any:
    if _WITHHELD not in stored:
        return None
    try:
        document = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return None
    if not (isinstance(document, dict) and document.get(_WITHHELD)):
        return None
    return error_response(
        409,
        f"The first request with this Idempotency-Key succeeded (HTTP {status}, id "
        f"{document.get('id')}). Its answer held a signing secret, which Rex does not keep, so "
        "it cannot be replayed: read the object without its secret, or rotate the secret if "
        "the first answer was lost.",
        type="idempotent_replay_withheld",
        field="Idempotency-Key",
    )


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    extra: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            extra.append(message)
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if extra:
            return extra.pop(0)
        return await receive()

    return body, replay


async def _release(db: Database, workspace_id: str, key: str, claimed_at: Any) -> None:
    try:
        async with db.transaction() as conn:
            await store.release(conn, workspace_id=workspace_id, key=key, claimed_at=claimed_at)
    except Exception:
        log.exception("idempotency_release_failed", key=key)


async def _send_stored(send: Send, status: int, body: str) -> None:
    payload = body.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"idempotent-replayed", b"true"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
