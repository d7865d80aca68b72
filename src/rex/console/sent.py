"""What a delivery's attempt sent, rebuilt exactly as the worker builds it.

The body is the event's stored payload, byte for byte (``rex.outbox.envelope``). The headers
come from ``rex.worker.headers.signed_headers`` with the attempt's time as the signature
timestamp (the worker signs with ``int(at.timestamp())`` of the ``at`` it records) and the
secrets that signed at that time. Secrets are never shown, only the signatures they make.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from rex.outbox.records import ClaimedDelivery
from rex.webhooks.service import ROTATION_OVERLAP
from rex.worker.headers import signed_headers


@dataclass(frozen=True)
class SentRequest:
    headers: dict[str, str]
    body: str
    timestamp: int
    exact: bool
    """True when the signatures are those sent; False when they could not be rebuilt."""
    note: str


def secrets_at(endpoint: Any, at: datetime) -> tuple[tuple[str, ...], bool, str]:
    """The secrets that signed a request made at ``at``, newest first, whether that is
    known for sure, and a sentence saying which secrets the signature is made with."""
    current: str = endpoint.secret
    previous: str | None = endpoint.previous_secret
    expires: datetime | None = endpoint.previous_secret_expires_at
    if previous is None or expires is None:
        return (current,), True, "Signed with the endpoint's current secret, as sent."
    rotated_at = expires - ROTATION_OVERLAP
    if at >= rotated_at:
        if at < expires:
            return (
                (current, previous),
                True,
                "Sent during a secret rotation: one v1= per secret, the new one first.",
            )
        return (current,), True, "Signed with the endpoint's current secret, as sent."
    return (
        (previous,),
        False,
        "This attempt predates the endpoint's last secret rotation: the signature shown is "
        "made with the secret in force then. If that attempt was itself sent during an "
        "earlier rotation, the request also carried a v1= for an older secret, no longer kept.",
    )


def rebuild(
    *,
    delivery_id: str,
    event_id: str,
    event_type: str,
    payload: str,
    endpoint: Any,
    at: datetime | None,
    now: datetime,
) -> SentRequest:
    """The request of the attempt made at ``at`` (``None``: the next attempt, as if sent
    ``now``)."""
    moment = at or now
    secrets, exact, note = secrets_at(endpoint, moment)
    if at is None:
        note = (
            "Not sent yet: the headers of its next attempt, signed as if it were sent now "
            "(the real attempt signs with its own time)."
        )
        exact = False
    claimed = ClaimedDelivery(
        id=delivery_id,
        workspace_id="",
        endpoint_id=endpoint.id,
        event_id=event_id,
        event_type=event_type,
        attempt_count=0,
        url=endpoint.url,
        secrets=secrets,
        payload=payload.encode("utf-8"),
    )
    timestamp = int(moment.timestamp())
    headers = {
        **transport_headers(endpoint.url, claimed.payload),
        **signed_headers(claimed, timestamp),
    }
    return SentRequest(
        headers=headers,
        body=payload,
        timestamp=timestamp,
        exact=exact,
        note=note,
    )


def transport_headers(url: str, body: bytes) -> dict[str, str]:
    """The headers the worker's HTTP client adds to those it is given (``Accept-Encoding``
    is set by ``rex.worker.transport``, the others by aiohttp)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    default = {"http": ":80", "https": ":443"}.get(parts.scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return {
        "Host": host,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
        "Content-Length": str(len(body)),
    }
