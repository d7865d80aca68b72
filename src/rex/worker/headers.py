"""The headers every delivery carries, signatures included: built here for the worker's
POST and for the deliveries a ``rex listen`` stream hands to its CLI."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rex._signing import is_standard_webhooks_secret, sign, sign_standard_webhooks
from rex._version import __version__
from rex.outbox.records import ClaimedDelivery

USER_AGENT = f"Rex-Webhooks/{__version__}"


def signed_headers(delivery: ClaimedDelivery, timestamp: int) -> dict[str, str]:
    """Every header a delivery carries: the endpoint's own (``headers``), then Rex's,
    signatures included (an endpoint's own can never name one of Rex's)."""
    headers = {
        **dict(delivery.headers),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Rex-Event": delivery.event_type,
        "X-Rex-Event-Id": delivery.event_id,
        "X-Rex-Delivery-Id": delivery.id,
        "X-Rex-Signature": sign(delivery.payload, delivery.secrets, timestamp),
    }
    standard = [s for s in delivery.secrets if is_standard_webhooks_secret(s)]
    if standard:
        # Standard Webhooks (webhook-*) headers, for receivers using that library. The
        # message id is the event id: it stays the same across retries, as the spec asks.
        headers["webhook-id"] = delivery.event_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign_standard_webhooks(
            delivery.event_id, timestamp, delivery.payload, standard
        )
    return headers


# -- an endpoint's own headers --------------------------------------------------------------

MAX_CUSTOM_HEADERS = 20
MAX_HEADER_VALUE_LENGTH = 4096
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# What Rex sets on every delivery (above, and the transport's Accept-Encoding), and what
# belongs to a connection rather than to a request (RFC 9110 section 7.6.1; RFC 9112).
_OWN_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "host", "user-agent"}
    | {"accept-encoding"}
)
_OWN_PREFIXES = ("x-rex-", "webhook-")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)


def check_custom_headers(value: Any) -> dict[str, str | None] | None:
    """An endpoint's ``headers`` as given (a value of null removes that header in a PATCH),
    or ``ValueError`` naming the header that cannot be sent."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError('headers is an object of names to values, like {"Authorization": "..."}')
    if len(value) > MAX_CUSTOM_HEADERS:
        raise ValueError(f"at most {MAX_CUSTOM_HEADERS} headers, got {len(value)}")
    seen: set[str] = set()
    checked: dict[str, str | None] = {}
    for name, header_value in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid header name (RFC 9110 token characters)")
        lower = name.lower()
        if lower in seen:
            raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
        seen.add(lower)
        if lower in _OWN_HEADERS or lower.startswith(_OWN_PREFIXES):
            raise ValueError(
                f"header {name!r} is set by Rex itself on every delivery and cannot be "
                "replaced (nor any X-Rex-* or webhook-* header)"
            )
        if lower in _HOP_BY_HOP:
            raise ValueError(
                f"header {name!r} belongs to the connection, not to the request; it cannot be set"
            )
        if header_value is not None:
            if not isinstance(header_value, str):
                raise ValueError(f"header {name!r}: the value must be a string")
            if len(header_value) > MAX_HEADER_VALUE_LENGTH or not _VALUE.fullmatch(header_value):
                raise ValueError(
                    f"header {name!r}: the value must be at most {MAX_HEADER_VALUE_LENGTH} "
                    "characters, with no line breaks or control characters"
                )
            header_value = header_value.strip(" \t")
        checked[name] = header_value
    return checked
