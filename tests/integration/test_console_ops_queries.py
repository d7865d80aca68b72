"""The console's operations queries (rex.console.ops_queries) on both databases: each
figure counted from rows written with known times, and nothing of another workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from ulid import ULID

from rex.console import endpoint_health as h
from rex.console import ops_queries as q
from rex.console.charts import deliveries_chart, leads_chart
from rex.db.engine import Database
from rex.db.schema import attempts, contacts, deliveries, endpoints, events
from rex.webhooks import service as webhooks
from rex.webhooks.schemas import EndpointCreate
from rex.worker.ssrf import DestinationPolicy
from rex.workspaces import service as workspaces

NOW = datetime(2026, 3, 16, 12, 30, tzinfo=UTC)


def id_at(prefix: str, moment: datetime) -> str:
    return f"{prefix}_{ULID.from_datetime(moment)}"


@dataclass
class Seeded:
    db: Database
    workspace: str
    other: str
    healthy: str
    failing: str
    disabled: str


async def _contact(conn: Any, workspace: str, at: datetime, source: str | None, n: int) -> None:
    await conn.execute(
        sa.insert(contacts).values(
            id=id_at("cont", at),
            workspace_id=workspace,
            email=f"lead{n}@example.com",
            stage="lead",
            source=source,
            metadata={},
            created_at=at,
            updated_at=at,
        )
    )


async def _delivery(
    conn: Any,
    workspace: str,
    endpoint: str,
    at: datetime,
    status: str,
    tries: list[tuple[datetime, int | None]],
    *,
    next_at: datetime | None = None,
) -> str:
    event_id = id_at("evt", at)
    await conn.execute(
        sa.insert(events).values(
            id=event_id,
            workspace_id=workspace,
            type="contact.created",
            object_id="cont_x",
            payload=f'{{"id":"{event_id}"}}',
            created_at=at,
        )
    )
    delivery_id = id_at("dlv", at)
    await conn.execute(
        sa.insert(deliveries).values(
            id=delivery_id,
            workspace_id=workspace,
            endpoint_id=endpoint,
            event_id=event_id,
            event_type="contact.created",
            status=status,
            attempt_count=len(tries),
            next_attempt_at=next_at,
            created_at=at,
            updated_at=at,
        )
    )
    for when, code in tries:
        await conn.execute(
            sa.insert(attempts).values(
                id=id_at("att", when),
                delivery_id=delivery_id,
                at=when,
                status_code=code,
                error=None if code else "connection refused",
                latency_ms=12,
                response_excerpt="nope" if code and code >= 300 else None,
            )
        )
    return delivery_id


@pytest.fixture
async def seeded(database_url: str) -> AsyncIterator[Seeded]:
    db = Database(database_url, pool_size=4)
    await db.migrate()
    policy = DestinationPolicy()
    async with db.transaction() as conn:
        a = (await workspaces.create_workspace(conn, "acme")).id
        b = (await workspaces.create_workspace(conn, "other")).id
        ids = []
        for name in ("healthy", "failing", "disabled"):
            body = EndpointCreate(url=f"https://{name}.example.com/hook", events=["*"])
            ids.append((await webhooks.create(conn, a, body, policy))["id"])
        other_endpoint = (
            await webhooks.create(
                conn, b, EndpointCreate(url="https://b.example.com/", events=["*"]), policy
            )
        )["id"]
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == ids[1])
            .values(failing_since=NOW - timedelta(hours=3))
        )
        await conn.execute(
            sa.update(endpoints)
            .where(endpoints.c.id == ids[2])
            .values(enabled=False, disabled_reason="410 Gone <b>")
        )
        # Leads: today 2 web + 1 ads, 29 days ago 1 web, 30 days ago (outside) 1, no source 1.
        leads = ((0, "web"), (0, "web"), (0, "ads"), (29, "web"), (30, "web"))
        for n, (days, source) in enumerate(leads, start=1):
            await _contact(conn, a, NOW - timedelta(days=days, minutes=n), source, n)
        await _contact(conn, a, NOW - timedelta(days=3), None, 99)
        await _contact(conn, b, NOW - timedelta(hours=1), "web", 100)
        # Deliveries, this hour: one delivered after 3 s (a failure first), one delivered
        # after 1 s, one failed, one retrying (due 10 min ago), one queued (due in 5 min).
        t = NOW - timedelta(minutes=20)
        h, f = ids[0], ids[1]
        await _delivery(
            conn,
            a,
            h,
            t,
            "delivered",
            [(t + timedelta(seconds=1), 500), (t + timedelta(seconds=3), 200)],
        )
        t2 = t + timedelta(seconds=10)
        await _delivery(conn, a, h, t2, "delivered", [(t2 + timedelta(seconds=1), 204)])
        t3 = t + timedelta(seconds=20)
        await _delivery(conn, a, f, t3, "failed", [(t3 + timedelta(seconds=1), None)])
        t4 = t + timedelta(seconds=30)
        await _delivery(
            conn,
            a,
            f,
            t4,
            "pending",
            [(t4 + timedelta(seconds=1), 503)],
            next_at=NOW - timedelta(minutes=10),
        )
        t5 = t + timedelta(seconds=40)
        await _delivery(conn, a, h, t5, "pending", [], next_at=NOW + timedelta(minutes=5))
        # Five hours ago: one delivered. Three days ago (outside every window): one.
        t6 = NOW - timedelta(hours=5, minutes=1)
        await _delivery(conn, a, h, t6, "delivered", [(t6 + timedelta(seconds=7), 200)])
        t7 = NOW - timedelta(days=3)
        await _delivery(conn, a, h, t7, "delivered", [(t7 + timedelta(seconds=900), 200)])
        # Another workspace's: never counted.
        t8 = NOW - timedelta(minutes=5)
        await _delivery(
            conn, b, other_endpoint, t8, "pending", [(t8, 500)], next_at=NOW - timedelta(hours=2)
        )
    try:
        yield Seeded(db, a, b, *ids)
    finally:
        await db.close()


async def test_leads_per_day_by_source(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        series = await q.leads_per_day(conn, seeded.workspace, now=NOW)
        capped = await q.leads_per_day(conn, seeded.workspace, now=NOW, max_sources=1)
    assert len(series.labels) == 30
    assert series.labels[-1] == "2026-03-16" and series.labels[0] == "2026-02-15"
    assert series.keys == ["web", q.NO_SOURCE, "ads"]  # by count, then name
    assert series.counts["web"][-1] == 2 and series.counts["web"][0] == 1
    assert series.counts["ads"][-1] == 1
    assert series.counts[q.NO_SOURCE][-4] == 1
    assert series.total == 5  # the lead of 30 days ago and the other workspace's are out
    assert capped.keys == ["web", q.OTHER_SOURCES]
    assert sum(capped.counts[q.OTHER_SOURCES]) == 2


async def test_deliveries_per_hour_by_outcome(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        series = await q.deliveries_per_hour(conn, seeded.workspace, now=NOW, hours=24)
    assert len(series.labels) == 24 and series.labels[-1] == "2026-03-16 12"
    last = {k: series.counts[k][-1] for k in series.keys}
    assert last == {"delivered": 2, "retrying": 1, "queued": 1, "failed": 1}
    assert series.counts["delivered"][-6] == 1  # 07:29, five hours before 12:30
    assert series.total == 6


async def test_capture_to_delivery_percentiles(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        latency = await q.capture_to_delivery(conn, seeded.workspace, now=NOW)
    # Delivered in the last 24 h after 3 s, 1 s and 7 s (the first success counts).
    assert latency.sample == 3
    assert latency.p50 == pytest.approx(3.0)
    assert latency.p95 == pytest.approx(7.0)


async def test_backlog_counts_only_the_workspace(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        backlog = await q.backlog(conn, seeded.workspace, now=NOW)
    assert backlog.pending == 2
    assert backlog.oldest_due_at == NOW - timedelta(minutes=10)
    assert backlog.oldest_due_age(NOW) == pytest.approx(600.0)


async def test_endpoint_health(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        page, cursor = await h.endpoints_page(conn, seeded.workspace, now=NOW, limit=2, cursor=None)
        rest, end = await h.endpoints_page(conn, seeded.workspace, now=NOW, limit=2, cursor=cursor)
        troubled = await h.troubled_endpoints(conn, seeded.workspace, now=NOW)
    found = {e.id: e for e in [*page, *rest]}
    assert len(page) == 2 and end is None and len(found) == 3
    healthy, failing, disabled = (
        found[i] for i in (seeded.healthy, seeded.failing, seeded.disabled)
    )
    assert (healthy.attempts_24h, healthy.successes_24h) == (4, 3)
    assert healthy.success_rate == pytest.approx(0.75)
    assert healthy.last_error == "HTTP 500" and healthy.state == "healthy"
    assert failing.success_rate == 0.0 and failing.state == "failing"
    assert failing.last_error == "HTTP 503"
    assert disabled.success_rate is None and disabled.disabled_reason == "410 Gone <b>"
    assert [e.id for e in troubled] == [seeded.disabled, seeded.failing]


async def test_charts_render_the_figures(seeded: Seeded) -> None:
    async with seeded.db.read() as conn:
        leads = await q.leads_per_day(conn, seeded.workspace, now=NOW)
        hourly = await q.deliveries_per_hour(conn, seeded.workspace, now=NOW)
    assert "5 leads in the last 30 days (web: 3, (none): 1, ads: 1)" in leads_chart(leads)
    assert "6 deliveries in the last 24 hours" in deliveries_chart(hourly)


async def test_cached_figures_equal_fresh_ones(seeded: Seeded) -> None:
    """The cache splits the windows (finished days and hours, then the current one): the
    figures are the same, and a contact captured today shows at once."""
    cache = q.TTLCache()
    async with seeded.db.read() as conn:
        for _ in range(2):  # filling the cache, then reading it
            assert await q.leads_per_day(
                conn, seeded.workspace, now=NOW, cache=cache
            ) == await q.leads_per_day(conn, seeded.workspace, now=NOW)
            assert await q.deliveries_per_hour(
                conn, seeded.workspace, now=NOW, cache=cache
            ) == await q.deliveries_per_hour(conn, seeded.workspace, now=NOW)
    async with seeded.db.transaction() as conn:
        await _contact(conn, seeded.workspace, NOW - timedelta(minutes=1), "web", 500)
    async with seeded.db.read() as conn:
        series = await q.leads_per_day(conn, seeded.workspace, now=NOW, cache=cache)
    assert series.counts["web"][-1] == 3
