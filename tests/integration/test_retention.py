"""Retention: old events whose deliveries are all finished go, with their deliveries and
attempts, in small batches; an event with a pending delivery stays."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from rex.db.engine import Database
from rex.db.schema import events
from rex.ids import utcnow
from rex.worker.retention import prune_expired
from tests.receiver import Receiver
from tests.support import make_settings, serve_rex, sql, wait_until


def count(database_url: str, table: str) -> int:
    return int(sql(database_url, f"SELECT count(*) AS n FROM {table}")[0].n)


def statuses(database_url: str) -> list[tuple[str, str]]:
    rows = sql(
        database_url,
        "SELECT e.url, d.status FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id",
    )
    return sorted((r.url.rsplit("/", 1)[1], r.status) for r in rows)


def prune(database_url: str, *, days_later: float, batch: int, retention_days: int = 30) -> int:
    async def run() -> int:
        db = Database(database_url, pool_size=1)
        try:
            now = utcnow() + timedelta(days=days_later)
            return await prune_expired(db, retention_days=retention_days, now=now, batch=batch)
        finally:
            await db.close()

    return asyncio.run(run())


def backdate_events(database_url: str, *, days: int) -> None:
    """Make every event look ``days`` old (as if the clock had moved on)."""

    async def run() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    sa.update(events).values(created_at=utcnow() - timedelta(days=days))
                )
        finally:
            await db.close()

    asyncio.run(run())


def test_prune_removes_finished_events_and_keeps_pending_ones(
    database_url: str, receiver: Receiver
) -> None:
    # A failed attempt is retried an hour later: /down's delivery stays pending.
    settings = make_settings(database_url, retry_schedule=(3600.0,))
    receiver.set_default(lambda r: {"/gone": 410, "/down": 500}.get(r.path, 200))
    with serve_rex(settings) as rex, rex.client() as client:
        for i in range(3):  # before any subscription: events without deliveries
            client.post("/contacts", json={"email": f"early{i}@example.com"}).raise_for_status()
        for path, types in (("/up", "*"), ("/gone", ["contact.updated"]),
                            ("/down", ["contact.deleted"])):  # fmt: skip
            client.post("/webhooks", json={"url": receiver.url(path), "events": types})
        created = [
            client.post("/contacts", json={"email": f"c{i}@example.com"}).json()["data"]
            for i in range(2)
        ]
        client.patch(f"/contacts/{created[0]['id']}", json={"first_name": "U"})
        client.delete(f"/contacts/{created[1]['id']}").raise_for_status()
        # /up (subscribed to "*") also hears of /gone's 410: endpoint.disabled.
        expected = [("down", "pending"), ("gone", "failed")] + [("up", "delivered")] * 5
        wait_until(
            lambda: statuses(database_url) == expected and count(database_url, "attempts") == 7,
            timeout=30,
        )
    # 3 early, 2 created, 1 updated, 1 deleted, endpoint.disabled and delivery.failed (/gone's
    # delivery failed for good: recorded, sent to none, since no endpoint names it).
    assert count(database_url, "events") == 9

    assert prune(database_url, days_later=29, batch=2) == 0  # nothing is 30 days old yet
    assert count(database_url, "events") == 9

    assert prune(database_url, days_later=31, batch=2) == 8

    # Left: the contact.deleted event, whose delivery to /down is still pending, whole.
    [kept] = sql(database_url, "SELECT type FROM events")
    assert kept.type == "contact.deleted"
    assert statuses(database_url) == [("down", "pending"), ("up", "delivered")]
    assert count(database_url, "attempts") == 2


def test_retention_days_zero_keeps_everything(database_url: str) -> None:
    """Old, finished events that 30 days would prune are all kept with 0 (the worker's side,
    through its clock, is in test_durations.py)."""
    with serve_rex(make_settings(database_url)) as rex, rex.client() as client:
        for i in range(3):
            client.post("/contacts", json={"email": f"z{i}@example.com"}).raise_for_status()
    backdate_events(database_url, days=999)
    assert prune(database_url, days_later=0, batch=2, retention_days=0) == 0
    assert count(database_url, "events") == 3
    assert prune(database_url, days_later=0, batch=2) == 3  # what 30 days would have done


def test_the_worker_prunes_when_it_starts(database_url: str, receiver: Receiver) -> None:
    settings = make_settings(database_url, retention_days=30)
    with serve_rex(settings) as rex:
        with rex.client() as client:
            client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
            for i in range(3):
                client.post("/contacts", json={"email": f"r{i}@example.com"}).raise_for_status()
        wait_until(lambda: statuses(database_url) == [("hook", "delivered")] * 3, timeout=20)
    backdate_events(database_url, days=31)

    with serve_rex(settings):
        wait_until(lambda: count(database_url, "events") == 0, timeout=20)

    assert count(database_url, "deliveries") == 0 and count(database_url, "attempts") == 0
