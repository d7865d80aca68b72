"""Verify Rex webhooks inside an ASGI app (FastAPI, Starlette) without importing one.

::

    from fastapi import FastAPI, HTTPException, Request
    import rex

    @app.post("/webhooks/rex")
    async def rex_webhook(request: Request) -> dict[str, str]:
        try:
            event = await rex.construct_event_from_request(request, WEBHOOK_SECRET)
        except rex.SignatureError as exc:
            raise HTTPException(401, str(exc)) from exc
        except rex.InvalidPayloadError as exc:
            raise HTTPException(400, str(exc)) from exc
        ...  # dedupe on event["id"], hand off to a background task, answer 2xx
        return {"status": "ok"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rex._signing import DEFAULT_TOLERANCE, SignatureError, construct_event

__all__ = ["SIGNATURE_HEADER", "WebhookRequest", "construct_event_from_request"]

SIGNATURE_HEADER = "x-rex-signature"


class WebhookRequest(Protocol):
    """What is read from a request: a Starlette/FastAPI ``Request`` fits."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def body(self) -> bytes: ...


async def construct_event_from_request(
    request: WebhookRequest,
    secret: str,
    tolerance: int | None = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Read the raw body, verify ``X-Rex-Signature`` and return the parsed event.

    Same checks and errors as :func:`rex.construct_event`; a missing header raises
    :class:`rex.SignatureError` with reason ``"malformed_header"``. Header lookup is
    by the lower-case name, which Starlette's case-insensitive headers accept.
    """
    signature = request.headers.get(SIGNATURE_HEADER)
    if signature is None:
        raise SignatureError("malformed_header", "the request has no X-Rex-Signature header")
    return construct_event(await request.body(), signature, secret, tolerance)
