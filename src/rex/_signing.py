"""Webhook signatures: the ``X-Rex-Signature`` scheme and Standard Webhooks.

``X-Rex-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`` where each hex value is
HMAC-SHA256 keyed with a secret's UTF-8 bytes over ``b"<t>." + raw body``: the same
scheme as Stripe's ``Stripe-Signature``, so Stripe's libraries verify it too.

Standard library only: receivers import this without pulling in Rex's server stack.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets as _random
import time
from collections.abc import Sequence
from typing import Any, Literal

__all__ = [
    "DEFAULT_TOLERANCE",
    "InvalidPayloadError",
    "SignatureError",
    "construct_event",
    "generate_secret",
    "is_standard_webhooks_secret",
    "sign",
    "sign_standard_webhooks",
    "verify_signature",
]

DEFAULT_TOLERANCE = 300
"""Seconds a signature's timestamp may be away from the receiver's clock."""

SCHEME = "v1"
SECRET_PREFIX = "whsec_"
_MAX_TIMESTAMP_DIGITS = 15

SignatureErrorReason = Literal[
    "malformed_header", "no_matching_signature", "timestamp_too_old", "timestamp_in_future"
]


class SignatureError(ValueError):
    """A webhook's signature header did not verify.

    ``reason`` says why, for logs and metrics: ``"malformed_header"``,
    ``"no_matching_signature"``, ``"timestamp_too_old"`` or ``"timestamp_in_future"``.
    ``str(error)`` is a sentence a person can act on. Answer the request with a 4xx.
    """

    def __init__(self, reason: SignatureErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: SignatureErrorReason = reason


class InvalidPayloadError(ValueError):
    """A correctly signed payload is not a JSON object (so it is not a Rex event)."""


def generate_secret() -> str:
    """Return a new random endpoint secret: ``"whsec_"`` + base64 of 32 random bytes.

    The secret is used as-is (its UTF-8 bytes) for ``X-Rex-Signature`` and, decoded,
    as a Standard Webhooks key.
    """
    # Standard Webhooks secrets are standard-alphabet base64, and its reference Python
    # library decodes them without validation, silently dropping '-' and '_'. Secrets
    # also travel through URLs, form posts, shells and .env files, where '+' turns into
    # a space and '/' splits paths. Drawing again until neither '+' nor '/' appears
    # (about 4 draws on average) gives a secret that every base64 decoder, standard or
    # URL-safe, strict or lax, reads as the same 32 bytes. Rejection sampling keeps the
    # draw uniform over the accepted secrets; they still carry about 254 bits.
    while True:
        encoded = base64.b64encode(_random.token_bytes(32)).decode("ascii")
        if "+" not in encoded and "/" not in encoded:
            return SECRET_PREFIX + encoded


def sign(payload: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """Return the ``X-Rex-Signature`` value for ``payload`` sent at ``timestamp``.

    One ``v1=`` per secret, in the order given (during a rotation pass the newest
    first). Raises ``ValueError`` when ``secrets`` is empty.
    """
    _check_secrets(secrets)
    signatures = ",".join(f"{SCHEME}={_hex_signature(s, timestamp, payload)}" for s in secrets)
    return f"t={timestamp},{signatures}"


def verify_signature(
    payload: bytes | str,
    signature: str,
    secret: str,
    tolerance: int | None = DEFAULT_TOLERANCE,
) -> None:
    """Check an ``X-Rex-Signature`` header against the raw request body.

    ``payload`` must be the body exactly as received (a ``str`` is encoded as UTF-8).
    The header passes when any of its ``v1=`` values matches ``secret``; other schemes
    are ignored. Its timestamp may be at most ``tolerance`` seconds in the past or the
    future; ``tolerance=None`` skips that check (for replaying stored events).

    Returns ``None``; raises :class:`SignatureError` otherwise.
    """
    if tolerance is not None and tolerance < 0:
        raise ValueError("tolerance must be a number of seconds >= 0, or None")
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    timestamp, candidates = _parse_header(signature)

    expected = _hex_signature(secret, timestamp, body).encode("ascii")
    # Every candidate is compared, in constant time, so timing reveals neither which
    # one matched nor how much of it.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
    if not matched:
        raise SignatureError(
            "no_matching_signature",
            "no v1 signature in the header matches this payload and secret: check the "
            "secret, and pass the raw request body, not re-serialized JSON",
        )

    # Checked after the signature, so a stale timestamp is only reported for a
    # message that Rex really sent (a clock or queueing problem, not a forgery).
    if tolerance is not None:
        age = int(time.time()) - timestamp
        if age > tolerance:
            raise SignatureError(
                "timestamp_too_old",
                f"signature timestamp is {age} seconds old, more than the {tolerance} "
                "second tolerance (a replay, or a clock out of sync)",
            )
        if -age > tolerance:
            raise SignatureError(
                "timestamp_in_future",
                f"signature timestamp is {-age} seconds in the future, more than the "
                f"{tolerance} second tolerance (check this machine's clock)",
            )


def construct_event(
    payload: bytes | str,
    signature: str,
    secret: str,
    tolerance: int | None = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Verify a delivery with :func:`verify_signature` and return the parsed event.

    Raises :class:`SignatureError` when the signature does not verify, and
    :class:`InvalidPayloadError` (a ``ValueError``) when the verified body is not a
    JSON object. Deduplicate on the event's ``"id"``: delivery is at-least-once.
    """
    verify_signature(payload, signature, secret, tolerance)
    try:
        event = json.loads(payload)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidPayloadError(f"webhook payload is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InvalidPayloadError(
            f"webhook payload is JSON {type(event).__name__}, expected an event object"
        )
    return event


def is_standard_webhooks_secret(secret: str) -> bool:
    """Whether ``secret`` is ``"whsec_"`` + strict base64 of at least 16 bytes.

    Rex also sends Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) to endpoints whose secret has this form.
    """
    return _standard_webhooks_key(secret) is not None


def sign_standard_webhooks(
    msg_id: str, timestamp: int, payload: bytes, secrets: Sequence[str]
) -> str:
    """Return the Standard Webhooks ``webhook-signature`` value: ``"v1,<base64> ..."``.

    One space-separated ``v1,`` signature per secret, in the order given. Raises
    ``ValueError`` when ``secrets`` is empty or one is not a Standard Webhooks secret.
    """
    _check_secrets(secrets)
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    signatures = []
    for secret in secrets:
        key = _standard_webhooks_key(secret)
        if key is None:
            raise ValueError(
                "not a Standard Webhooks secret: expected 'whsec_' followed by base64 "
                "of at least 16 bytes"
            )
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append(f"{SCHEME},{base64.b64encode(digest).decode('ascii')}")
    return " ".join(signatures)


def _check_secrets(secrets: Sequence[str]) -> None:
    if isinstance(secrets, str):  # a lone str is a Sequence[str] of its characters
        raise TypeError("secrets must be a sequence of secrets, not one string")
    if not secrets:
        raise ValueError("at least one secret is needed to sign a payload")


def _hex_signature(secret: str, timestamp: int, payload: bytes) -> str:
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def _parse_header(header: str) -> tuple[int, list[str]]:
    """Split ``t=...,v1=...,v1=...`` into the timestamp and the ``v1`` values."""
    if not header or not header.strip():
        raise SignatureError("malformed_header", "signature header is missing or empty")
    timestamps: list[str] = []
    candidates: list[str] = []
    for element in header.split(","):
        key, sep, value = element.strip().partition("=")
        if not sep:
            raise SignatureError(
                "malformed_header",
                f"signature header element {element.strip()!r} is not of the form key=value",
            )
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            candidates.append(value)
        # Other schemes (v0=, a future v2=) are skipped so new ones can be added.
    if len(timestamps) != 1:
        raise SignatureError(
            "malformed_header",
            f"signature header needs exactly one t=<unix seconds> element, found {len(timestamps)}",
        )
    raw = timestamps[0]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_TIMESTAMP_DIGITS):
        raise SignatureError(
            "malformed_header", f"signature timestamp {raw!r} is not a unix time in seconds"
        )
    if not candidates:
        raise SignatureError("malformed_header", f"signature header has no {SCHEME}= signature")
    return int(raw), candidates


def _standard_webhooks_key(secret: str) -> bytes | None:
    if not secret.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) >= 16 else None
