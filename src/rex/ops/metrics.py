"""Rex's Prometheus metrics (names and labels are part of the public contract).

Counters and histograms live in one registry per process. The backlog gauges
(``rex_deliveries_pending``, ``rex_delivery_oldest_pending_age_seconds``,
``rex_endpoints_disabled``) are read from the database at scrape time, so every process
reports the same truth.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.clocksync import CLOCK
from rex.db.outage import STORAGE
from rex.db.schema import deliveries, endpoints
from rex.ids import utcnow

disable_created_metrics()  # type: ignore[no-untyped-call] # no `*_created` series: half the output, no use for alerting
REGISTRY = CollectorRegistry(auto_describe=True)


class _DatabaseConditions(Collector):
    """What this process knows about its database, read at scrape time: whether its writes
    are refused for a full disk (``rex.db.outage``) and its clock's offset to the
    database's (``rex.db.clocksync``)."""

    def collect(self):  # type: ignore[no-untyped-def]
        yield GaugeMetricFamily(
            "rex_storage_full",
            "1 while this process's writes are refused because the database's disk is full.",
            value=1 if STORAGE.full else 0,
        )
        yield CounterMetricFamily(
            "rex_storage_full_refusals",
            "Writes (requests, worker cycles) this process had refused for a full disk.",
            value=STORAGE.refused_total,
        )
        if CLOCK.offset is not None:
            yield GaugeMetricFamily(
                "rex_clock_offset_seconds",
                "The database's clock minus this machine's (PostgreSQL; measured every 30 s).",
                value=CLOCK.offset,
            )


REGISTRY.register(_DatabaseConditions())

CAPTURES = Counter(
    "rex_captures_total",
    "Captures answered, by outcome (accepted, rejected, rate_limited, unavailable, error).",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPT_OUTCOMES = ("success", "http_4xx", "http_5xx", "timeout", "connection_error", "refused")
ATTEMPTS = Counter(
    "rex_delivery_attempts_total",
    "Delivery attempts made by this process, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPT_DURATION = Histogram(
    "rex_delivery_attempt_duration_seconds",
    "How long one delivery attempt took (request sent to answer or failure).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
    registry=REGISTRY,
)
CAPTURE_TO_DELIVERY = Histogram(
    "rex_capture_to_delivery_seconds",
    "From the event being recorded to its delivery's successful attempt.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "rex_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "rex_http_request_duration_seconds",
    "HTTP request duration, by route template.",
    ["route"],
    registry=REGISTRY,
)
PENDING = Gauge(
    "rex_deliveries_pending",
    "Deliveries not finished yet (waiting, due or being sent), read from the database.",
    registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "rex_delivery_oldest_pending_age_seconds",
    "Seconds since the longest-waiting due delivery became due (0 when none is due).",
    registry=REGISTRY,
)
ENDPOINTS_DISABLED = Gauge(
    "rex_endpoints_disabled",
    "Webhook endpoints disabled (by Rex after failing, or by their owner).",
    registry=REGISTRY,
)

for _outcome in ATTEMPT_OUTCOMES:
    ATTEMPTS.labels(_outcome)
for _outcome in ("accepted", "rejected", "rate_limited"):
    CAPTURES.labels(_outcome)


def attempt_outcome(status_code: int | None, error: str | None) -> str:
    """The ``outcome`` label of one attempt."""
    if status_code is not None:
        if 200 <= status_code < 300:
            return "success"
        if 400 <= status_code < 500:
            return "http_4xx"
        return "http_5xx"
    text = (error or "").lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if text.startswith(("destination refused", "url is not valid")):
        # Rex refused to send: the destination policy (SSRF guard) or a bad URL.
        return "refused"
    return "connection_error"


def record_attempt(
    status_code: int | None, error: str | None, seconds: float, event_id: str
) -> None:
    """Count one attempt; a success also observes the time since its event was recorded
    (read from the event id's ULID, which carries its creation time)."""
    outcome = attempt_outcome(status_code, error)
    counter = _ATTEMPT_COUNTERS.get(outcome)
    if counter is None:
        counter = _ATTEMPT_COUNTERS[outcome] = ATTEMPTS.labels(outcome)
    counter.inc()
    ATTEMPT_DURATION.observe(seconds)
    if outcome == "success":
        created = _id_millis(event_id)
        if created is not None:
            CAPTURE_TO_DELIVERY.observe(max(0.0, time.time() - created / 1000))


# The counter of each outcome (``labels`` looks it up under a lock on every call).
_ATTEMPT_COUNTERS: dict[str, Any] = {}
_CROCKFORD = {char: value for value, char in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def _id_millis(object_id: str) -> int | None:
    """The creation time (Unix milliseconds) an id's ULID carries: its first 10 characters,
    Crockford base32, read here directly (parsing the whole ULID took longer than signing
    the delivery, on every attempt)."""
    text = object_id.rpartition("_")[2]
    if len(text) != 26:
        return None
    millis = 0
    for char in text[:10]:
        value = _CROCKFORD.get(char.upper())
        if value is None:
            return None
        millis = millis * 32 + value
    return millis if millis < 1 << 48 else None


def capture_outcome(status: int) -> str:
    if status < 400:
        return "accepted"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "error"
    return "rejected"


@dataclass(frozen=True)
class Backlog:
    pending: int
    oldest_due_at: datetime | None
    disabled_endpoints: int


async def read_backlog(conn: AsyncConnection) -> Backlog:
    now = utcnow()
    waiting = deliveries.c.status == "pending"
    pending = (await conn.execute(sa.select(sa.func.count()).where(waiting))).scalar_one()
    oldest = (
        await conn.execute(
            sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                waiting, deliveries.c.next_attempt_at <= now
            )
        )
    ).scalar_one()
    disabled = (
        await conn.execute(sa.select(sa.func.count()).where(endpoints.c.enabled.is_(False)))
    ).scalar_one()
    return Backlog(int(pending), oldest, int(disabled))


async def render(conn: AsyncConnection | None) -> tuple[bytes, str]:
    """The exposition text (backlog gauges refreshed from ``conn`` when given)."""
    if conn is not None:
        backlog = await read_backlog(conn)
        PENDING.set(backlog.pending)
        ENDPOINTS_DISABLED.set(backlog.disabled_endpoints)
        age = (utcnow() - backlog.oldest_due_at).total_seconds() if backlog.oldest_due_at else 0
        OLDEST_PENDING_AGE.set(max(0.0, age))
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def token_ok(expected: str | None, authorization: str | None) -> bool:
    """True when no token is configured, or ``authorization`` is ``Bearer <token>``."""
    if not expected:
        return True
    scheme, _, presented = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    )
