"""What the console's operations pages read: the Home charts and figures and the backlog
(endpoint health: ``rex.console.endpoint_health``). SQLAlchemy Core, scoped to one workspace,
the same on SQLite and PostgreSQL.

Windows are found through the ids: every id is a prefixed ULID whose first 48 bits are its
creation time, so "created since T" is a range on the ``(workspace_id, id)`` indexes (and on
``(endpoint_id, id)``, ``(workspace_id, status, id)``) instead of a scan of the table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from rex.db.schema import attempts, contacts, deliveries, events
from rex.outbox.records import DeliveryStatus

NO_SOURCE = "(none)"
"""The source shown for contacts captured without one."""
OTHER_SOURCES = "(other)"
"""Sources beyond the ``max_sources`` most frequent ones, summed."""

OUTCOMES = ("delivered", "retrying", "queued", "failed")
"""A delivery's outcome as the Home chart shows it: ``delivered``; ``failed`` (retries
exhausted); ``retrying`` (pending after at least one failed attempt); ``queued`` (pending,
not attempted yet)."""

LATENCY_SAMPLE = 2000
"""Capture-to-delivery percentiles are computed over the newest this many deliveries."""


class TTLCache:
    """Figures that may be a few seconds old (chart buckets already past, 24 h rates), kept
    per process for ``ttl`` seconds under keys that always start with the workspace id; at
    most ``size`` entries (the oldest dropped first)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._items: dict[tuple[Any, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[Any, ...]) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        if found[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        return found[1]

    def put(self, key: tuple[Any, ...], value: Any, ttl: float) -> None:
        if len(self._items) >= self.size:
            self._items.pop(next(iter(self._items)))
        self._items[key] = (time.monotonic() + ttl, value)

    def clear(self) -> None:
        self._items.clear()


PAST_DAYS_TTL = 300.0
"""Seconds the counts of finished days are reused (only a deletion changes them)."""
RECENT_TTL = 15.0
"""Seconds the figures still moving (past hours' outcomes, 24 h rates, percentiles) are
reused."""


def id_floor(prefix: str, moment: datetime) -> str:
    """The smallest id of ``prefix`` created at ``moment`` or later (ids sort by time)."""
    millis = max(0, int(moment.timestamp() * 1000))
    return f"{prefix}_{ULID.from_bytes(millis.to_bytes(6, 'big') + bytes(10))}"


def _bucket(conn: AsyncConnection, column: Any, unit: str) -> sa.ColumnElement[str]:
    """``column`` (a UTC time) truncated to its day (``YYYY-MM-DD``) or hour
    (``YYYY-MM-DD HH``), as text: SQLite stores ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC text."""
    width = 10 if unit == "day" else 13
    if conn.dialect.name == "postgresql":
        pattern = "YYYY-MM-DD" if unit == "day" else "YYYY-MM-DD HH24"
        return sa.func.to_char(sa.func.timezone("UTC", column), pattern)
    return sa.func.substr(column, 1, width)


def _day_keys(now: datetime, days: int) -> list[str]:
    today = now.astimezone(UTC).date()
    return [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]


def _hour_keys(now: datetime, hours: int) -> list[datetime]:
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=hours - 1 - i) for i in range(hours)]


@dataclass(frozen=True)
class Series:
    """Stacked counts: one bucket per label (oldest first), one count per key and bucket."""

    labels: list[str]
    keys: list[str]
    counts: dict[str, list[int]]
    starts: list[datetime] = field(default_factory=list)

    def totals(self) -> list[int]:
        return [sum(self.counts[k][i] for k in self.keys) for i in range(len(self.labels))]

    @property
    def total(self) -> int:
        return sum(self.totals())


async def _lead_counts(
    conn: AsyncConnection, workspace_id: str, since: datetime, until: datetime | None
) -> dict[str, dict[str, int]]:
    """Contacts created in [since, until) per source and UTC day."""
    day = _bucket(conn, contacts.c.created_at, "day").label("day")
    query = (
        sa.select(day, contacts.c.source, sa.func.count().label("n"))
        .where(
            contacts.c.workspace_id == workspace_id,
            contacts.c.id >= id_floor("cont", since),
            contacts.c.created_at >= since,
        )
        .group_by(day, contacts.c.source)
    )
    if until is not None:
        query = query.where(contacts.c.id < id_floor("cont", until), contacts.c.created_at < until)
    per_source: dict[str, dict[str, int]] = {}
    for row in await conn.execute(query):
        per_day = per_source.setdefault(row.source or NO_SOURCE, {})
        per_day[row.day] = per_day.get(row.day, 0) + int(row.n)
    return per_source


async def leads_per_day(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    now: datetime,
    days: int = 30,
    max_sources: int = 6,
    cache: TTLCache | None = None,
) -> Series:
    """Contacts created per UTC day over ``days`` days (today included), by source; the
    ``max_sources`` most frequent sources by name, the rest summed as ``(other)``.

    With a ``cache``, the finished days' counts are reused for ``PAST_DAYS_TTL`` seconds and
    only today's are counted on each call."""
    labels = _day_keys(now, days)
    since = datetime.fromisoformat(labels[0]).replace(tzinfo=UTC)
    today = datetime.fromisoformat(labels[-1]).replace(tzinfo=UTC)
    if cache is None:
        per_source = await _lead_counts(conn, workspace_id, since, None)
    else:
        key = (workspace_id, "leads-past", labels[0], labels[-1])
        past = cache.get(key)
        if past is None:
            past = await _lead_counts(conn, workspace_id, since, today)
            cache.put(key, past, PAST_DAYS_TTL)
        per_source = {source: dict(per_day) for source, per_day in past.items()}
        for source, per_day in (await _lead_counts(conn, workspace_id, today, None)).items():
            per_source.setdefault(source, {}).update(per_day)
    ranked = sorted(per_source, key=lambda s: (-sum(per_source[s].values()), s))
    keys = ranked[:max_sources]
    counts = {k: [per_source[k].get(d, 0) for d in labels] for k in keys}
    if len(ranked) > max_sources:
        keys.append(OTHER_SOURCES)
        counts[OTHER_SOURCES] = [
            sum(per_source[s].get(d, 0) for s in ranked[max_sources:]) for d in labels
        ]
    starts = [datetime.fromisoformat(d).replace(tzinfo=UTC) for d in labels]
    return Series(labels=labels, keys=keys, counts=counts, starts=starts)


async def _outcome_counts(
    conn: AsyncConnection, workspace_id: str, since: datetime, until: datetime | None
) -> dict[tuple[str, str], int]:
    """Deliveries created in [since, until) per UTC hour and outcome."""
    hour = _bucket(conn, deliveries.c.created_at, "hour").label("hour")
    tried = (deliveries.c.attempt_count > 0).label("tried")
    query = (
        sa.select(hour, deliveries.c.status, tried, sa.func.count().label("n"))
        .where(
            deliveries.c.workspace_id == workspace_id,
            deliveries.c.id >= id_floor("dlv", since),
            deliveries.c.created_at >= since,
        )
        .group_by(hour, deliveries.c.status, tried)
    )
    if until is not None:
        query = query.where(
            deliveries.c.id < id_floor("dlv", until), deliveries.c.created_at < until
        )
    counts: dict[tuple[str, str], int] = {}
    for row in await conn.execute(query):
        if row.status == DeliveryStatus.PENDING:
            outcome = "retrying" if row.tried else "queued"
        else:
            outcome = str(row.status)
        counts[(row.hour, outcome)] = counts.get((row.hour, outcome), 0) + int(row.n)
    return counts


async def deliveries_per_hour(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    now: datetime,
    hours: int = 24,
    cache: TTLCache | None = None,
) -> Series:
    """Deliveries created per UTC hour over ``hours`` hours (this hour included), by their
    outcome now (see ``OUTCOMES``). With a ``cache``, the past hours' counts are reused for
    ``RECENT_TTL`` seconds and only this hour's are counted on each call."""
    starts = _hour_keys(now, hours)
    labels = [s.strftime("%Y-%m-%d %H") for s in starts]
    if cache is None:
        found = await _outcome_counts(conn, workspace_id, starts[0], None)
    else:
        key = (workspace_id, "hourly-past", labels[0], labels[-1])
        past = cache.get(key)
        if past is None:
            past = await _outcome_counts(conn, workspace_id, starts[0], starts[-1])
            cache.put(key, past, RECENT_TTL)
        found = {**past, **await _outcome_counts(conn, workspace_id, starts[-1], None)}
    index = {label: i for i, label in enumerate(labels)}
    counts = {k: [0] * hours for k in OUTCOMES}
    for (label, outcome), n in found.items():
        i = index.get(label)
        if i is not None and outcome in counts:
            counts[outcome][i] += n
    return Series(labels=labels, keys=list(OUTCOMES), counts=counts, starts=starts)


@dataclass(frozen=True)
class Latency:
    """Capture-to-delivery: from an event being recorded to its delivery's first successful
    attempt, over ``sample`` deliveries delivered in the window (None when there is none)."""

    p50: float | None
    p95: float | None
    sample: int
    window_hours: int


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (the value at rank ceil(fraction * n)); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def capture_to_delivery(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    now: datetime,
    hours: int = 24,
    sample: int = LATENCY_SAMPLE,
    cache: TTLCache | None = None,
) -> Latency:
    """p50 and p95 of capture-to-delivery for the newest ``sample`` delivered deliveries
    created in the last ``hours`` hours (reused for ``RECENT_TTL`` s with a ``cache``)."""
    key = (workspace_id, "latency", hours, sample)
    if cache is not None:
        cached = cache.get(key)
        if cached is not None:
            return cast(Latency, cached)
    since = now - timedelta(hours=hours)
    first_success = (
        sa.select(sa.func.min(attempts.c.at))
        .where(
            attempts.c.delivery_id == deliveries.c.id,
            attempts.c.status_code >= 200,
            attempts.c.status_code < 300,
        )
        .scalar_subquery()
    )
    rows = await conn.execute(
        sa.select(events.c.created_at, first_success.label("delivered_at"))
        .select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))
        .where(
            deliveries.c.workspace_id == workspace_id,
            deliveries.c.status == DeliveryStatus.DELIVERED.value,
            deliveries.c.id >= id_floor("dlv", since),
        )
        .order_by(deliveries.c.id.desc())
        .limit(sample)
    )
    seconds = []
    for row in rows:
        if row.delivered_at is None:
            continue
        # Through the UTC type: SQLite hands subquery results back as text.
        delivered = _as_utc(row.delivered_at)
        seconds.append(max(0.0, (delivered - row.created_at).total_seconds()))
    latency = Latency(
        p50=percentile(seconds, 0.50),
        p95=percentile(seconds, 0.95),
        sample=len(seconds),
        window_hours=hours,
    )
    if cache is not None and latency.sample:
        # An empty sample is cheap to read again, and is not kept: the first delivery of a
        # new workspace shows at once instead of after RECENT_TTL.
        cache.put(key, latency, RECENT_TTL)
    return latency


def _as_utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Backlog:
    """Deliveries not finished yet (waiting, due or being sent), and the oldest due one."""

    pending: int
    oldest_due_at: datetime | None

    def oldest_due_age(self, now: datetime) -> float | None:
        """Seconds the longest-waiting due delivery has been due (None when none is)."""
        if self.oldest_due_at is None:
            return None
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def backlog(conn: AsyncConnection, workspace_id: str, *, now: datetime) -> Backlog:
    """The workspace's share of ``rex_deliveries_pending`` and
    ``rex_delivery_oldest_pending_age_seconds`` (``rex.ops.metrics.read_backlog``)."""
    waiting = sa.and_(
        deliveries.c.workspace_id == workspace_id,
        deliveries.c.status == DeliveryStatus.PENDING.value,
    )
    # Two statements, each with its index: the count on (workspace_id, status, id), the
    # oldest due time on the partial due-order index of pending deliveries.
    pending = (await conn.execute(sa.select(sa.func.count()).where(waiting))).scalar_one()
    oldest = (
        await conn.execute(
            sa.select(deliveries.c.next_attempt_at)
            .where(waiting, deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(1)
        )
    ).scalar()
    return Backlog(pending=int(pending), oldest_due_at=oldest)
