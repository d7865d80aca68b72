"""The headers every delivery carries, signatures included: built here for the worker's
POST and for the deliveries a ``rex listen`` stream hands to its CLI."""

from __future__ import annotations

from rex._signing import is_standard_webhooks_secret, sign, sign_standard_webhooks
from rex._version import __version__
from rex.outbox.records import ClaimedDelivery

USER_AGENT = f"Rex-Webhooks/{__version__}"


def signed_headers(delivery: ClaimedDelivery, timestamp: int) -> dict[str, str]:
    """Every header a delivery carries, signatures included."""
    headers = {
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
