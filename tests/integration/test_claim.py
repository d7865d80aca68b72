"""``claim_due_deliveries`` on a real database: per-endpoint concurrency across workers,
round-robin between endpoints, lease take-over, endpoint kinds, concurrent claimers."""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from rex.db.engine import Database
from rex.db.schema import attempts as attempt_rows
from rex.db.schema import deliveries, endpoints
from rex.ids import utcnow
from rex.outbox.attempts import record_attempts
from rex.outbox.events import record_event
from rex.outbox.queue import claim_due_deliveries, next_due_at
from rex.outbox.records import AttemptOutcome, ClaimedDelivery, DeliveryStatus, EndpointKind
from rex.webhooks import service as webhooks
from rex.webhooks.schemas import EndpointCreate
from rex.worker.ssrf import DestinationPolicy
from rex.workspaces import service as workspaces
from tests.support import sql, truncate_all

LEASE = 30.0


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=8)
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


async def make_endpoint(db: Database, name: str, *, max_concurrency: int = 10) -> str:
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        body = EndpointCreate(
            url=f"https://{name}.example.com/hook",
            events=[f"contact.{name}"],
            max_concurrency=max_concurrency,
        )
        created = await webhooks.create(conn, workspace.id, body, DestinationPolicy())
    return str(created["id"])


async def queue(db: Database, event_type: str, count: int, at: datetime) -> None:
    """``count`` events of ``event_type`` (one delivery per subscribed endpoint)."""
    async with db.transaction() as conn:
        workspace, _ = await workspaces.ensure_default_workspace(conn)
        for i in range(count):
            await record_event(
                conn,
                workspace_id=workspace.id,
                event_type=event_type,
                data={"n": i},
                object_id=None,
                now=at + timedelta(milliseconds=i),
            )


async def claim(
    db: Database, worker: str, now: datetime, limit: int = 50, **kwargs: object
) -> list[ClaimedDelivery]:
    async with db.transaction() as conn:
        return await claim_due_deliveries(
            conn, worker_id=worker, now=now, lease=LEASE, limit=limit, **kwargs
        )


async def next_due(db: Database, now: datetime) -> datetime | None:
    async with db.read() as conn:
        return await next_due_at(conn, now)


def attempt(
    at: datetime,
    status: DeliveryStatus = DeliveryStatus.DELIVERED,
    code: int = 200,
    next_at: datetime | None = None,
) -> AttemptOutcome:
    return AttemptOutcome(
        at=at,
        status_code=code,
        error=None,
        latency_ms=1,
        response_excerpt="",
        status=status,
        next_attempt_at=next_at,
    )


async def deliver(db: Database, worker: str, claimed: list[ClaimedDelivery], at: datetime) -> int:
    async with db.transaction() as conn:
        recorded = await record_attempts(
            conn, worker_id=worker, results=[(c, attempt(at)) for c in claimed]
        )
    return recorded.held


async def test_an_endpoint_never_has_more_than_max_concurrency_in_flight(db: Database) -> None:
    hook = await make_endpoint(db, "created", max_concurrency=3)
    t0 = utcnow()
    await queue(db, "contact.created", 10, t0)
    now = t0 + timedelta(seconds=1)

    first = await claim(db, "w1", now)
    assert len(first) == 3 and {c.endpoint_id for c in first} == {hook}
    # In due order: the oldest events first.
    assert [c.payload for c in first] == sorted(c.payload for c in first)
    assert await claim(db, "w2", now) == []
    # Seven rows are due, but none can be taken: an idle worker must not think otherwise.
    assert await next_due(db, now) is None

    assert await deliver(db, "w1", first[:1], now) == 1
    second = await claim(db, "w2", now)
    assert len(second) == 1
    assert not {c.id for c in second} & {c.id for c in first}


async def test_slots_are_shared_round_robin_between_endpoints(db: Database) -> None:
    backlog = await make_endpoint(db, "created")
    other = await make_endpoint(db, "updated")
    t0 = utcnow()
    await queue(db, "contact.created", 10, t0)  # older: first in due order
    await queue(db, "contact.updated", 10, t0 + timedelta(seconds=1))
    now = t0 + timedelta(seconds=2)

    claimed = await claim(db, "w1", now, limit=4)

    assert collections.Counter(c.endpoint_id for c in claimed) == {backlog: 2, other: 2}


async def test_an_endpoint_short_of_due_rows_leaves_its_share_to_the_others(
    db: Database,
) -> None:
    # A claim first reads each endpoint's fair share (here 6 of 12 each), and reads more
    # only for the endpoints that filled theirs: the claim is still full, and the oldest.
    few = await make_endpoint(db, "created", max_concurrency=50)
    many = await make_endpoint(db, "updated", max_concurrency=50)
    t0 = utcnow()
    await queue(db, "contact.created", 2, t0)
    await queue(db, "contact.updated", 20, t0 + timedelta(seconds=1))
    now = t0 + timedelta(seconds=2)

    claimed = await claim(db, "w1", now, limit=12)

    assert collections.Counter(c.endpoint_id for c in claimed) == {few: 2, many: 10}
    async with db.read() as conn:
        oldest = await conn.execute(
            sa.select(deliveries.c.id)
            .where(deliveries.c.endpoint_id == many)
            .order_by(deliveries.c.next_attempt_at)
            .limit(10)
        )
        assert {c.id for c in claimed if c.endpoint_id == many} == set(oldest.scalars())
    # When every endpoint has plenty, each gets its share.
    assert await deliver(db, "w1", claimed, now) == 12
    await queue(db, "contact.created", 20, t0 + timedelta(seconds=1))
    again = await claim(db, "w1", now, limit=12)
    assert collections.Counter(c.endpoint_id for c in again) == {few: 6, many: 6}


async def test_an_expired_lease_is_taken_over_and_frees_its_slot(db: Database) -> None:
    await make_endpoint(db, "created", max_concurrency=2)
    t0 = utcnow()
    await queue(db, "contact.created", 3, t0)
    now = t0 + timedelta(seconds=1)
    dead = await claim(db, "dead-worker", now)
    assert len(dead) == 2
    assert await claim(db, "w2", now + timedelta(seconds=LEASE - 1)) == []

    later = now + timedelta(seconds=LEASE + 1)
    taken = await claim(db, "w2", later)

    assert {c.id for c in taken} == {c.id for c in dead}  # oldest first, taken over
    # The dead worker's late outcome does not overwrite the new owner's lease.
    assert await deliver(db, "dead-worker", dead, later) == 0
    assert await deliver(db, "w2", taken, later) == 2


async def test_workers_claim_only_enabled_webhook_endpoints(db: Database) -> None:
    listen = await make_endpoint(db, "created")
    disabled = await make_endpoint(db, "updated")
    async with db.transaction() as conn:
        await conn.execute(
            sa.update(endpoints).where(endpoints.c.id == listen).values(kind="listen")
        )
        await conn.execute(
            sa.update(endpoints).where(endpoints.c.id == disabled).values(enabled=False)
        )
    t0 = utcnow()
    await queue(db, "contact.created", 1, t0)
    await queue(db, "contact.updated", 1, t0)
    now = t0 + timedelta(seconds=1)

    assert await claim(db, "worker", now) == []
    assert await next_due(db, now) is None
    [streamed] = await claim(db, "api", now, kind=EndpointKind.LISTEN)
    assert streamed.endpoint_id == listen


async def test_next_due_at_is_the_earliest_claimable_row(db: Database) -> None:
    await make_endpoint(db, "created")
    t0 = utcnow()
    assert await next_due(db, t0) is None
    await queue(db, "contact.created", 2, t0 + timedelta(seconds=60))
    assert await next_due(db, t0) == t0 + timedelta(seconds=60)
    assert await claim(db, "w1", t0) == []  # not due yet


async def test_concurrent_claimers_respect_every_limit(db: Database) -> None:
    limits = {"created": 4, "updated": 5, "deleted": 1}
    hooks = {name: await make_endpoint(db, name, max_concurrency=n) for name, n in limits.items()}
    t0 = utcnow()
    for name in limits:
        await queue(db, f"contact.{name}", 25, t0)
    now = t0 + timedelta(seconds=1)
    seen: set[str] = set()

    for round_ in range(6):
        batches = await asyncio.gather(
            *(claim(db, f"w{round_}-{i}", now, limit=7) for i in range(6))
        )
        claimed = [c for batch in batches for c in batch]
        ids = [c.id for c in claimed]
        assert len(ids) == len(set(ids)), "a delivery was leased twice"
        per_endpoint = collections.Counter(c.endpoint_id for c in claimed)
        for name, limit in limits.items():
            assert per_endpoint[hooks[name]] <= limit
        seen.update(ids)
        for i, batch in enumerate(batches):
            assert await deliver(db, f"w{round_}-{i}", batch, now) == len(batch)

    assert len(seen) >= 6  # the rounds made progress
    async with db.read() as conn:
        leased = await conn.scalar(
            sa.text("SELECT count(*) FROM deliveries WHERE leased_by IS NOT NULL")
        )
    assert leased == 0


@pytest.mark.postgres
def test_a_claim_cannot_miss_a_concurrent_claims_leases(postgres_url: str) -> None:
    """The interleaving that would overshoot ``max_concurrency``: worker B counts the
    endpoint's leases, then worker A claims and commits, then B picks its rows. B is paused
    for real, in its own thread and connection, right after its count."""
    truncate_all(postgres_url)

    async def set_up() -> str:
        database = Database(postgres_url)
        try:
            hook = await make_endpoint(database, "created", max_concurrency=4)
            await queue(database, "contact.created", 12, utcnow() - timedelta(seconds=5))
            return hook
        finally:
            await database.close()

    hook = asyncio.run(set_up())
    counted, release = threading.Event(), threading.Event()
    results: dict[str, list[ClaimedDelivery]] = {}

    def worker_b() -> None:
        async def run() -> None:
            database = Database(postgres_url)

            @sa.event.listens_for(database.engine.sync_engine, "after_cursor_execute")
            def pause_after_count(*args: object) -> None:
                statement = str(args[2])
                if "count(*)" in statement and "GROUP BY deliveries.endpoint_id" in statement:
                    counted.set()
                    release.wait(30)

            try:
                results["B"] = await claim(database, "B", utcnow())
            finally:
                await database.close()

        asyncio.run(run())

    thread = threading.Thread(target=worker_b)
    thread.start()
    try:
        assert counted.wait(30), "worker B never counted the leases"

        async def worker_a() -> list[ClaimedDelivery]:
            database = Database(postgres_url)
            try:
                return await claim(database, "A", utcnow())
            finally:
                await database.close()

        results["A"] = asyncio.run(worker_a())
    finally:
        release.set()
        thread.join(30)

    leased = sql(postgres_url, "SELECT count(*) AS n FROM deliveries WHERE leased_by IS NOT NULL")
    assert leased[0].n == 4, "max_concurrency=4 overshot"
    # A skipped the endpoint B was claiming for (it did not wait for it either).
    assert results["A"] == []
    assert len(results["B"]) == 4 and {c.endpoint_id for c in results["B"]} == {hook}


async def test_a_batch_of_outcomes_is_recorded_exactly_and_only_by_the_lease_holder(
    db: Database,
) -> None:
    """``record_attempts`` moves each delivery of a batch to its own outcome (one prebuilt
    statement: JSON on SQLite, arrays on PostgreSQL); the times it stores compare with the
    ones other statements store (a retry becomes due exactly when it should); a row whose
    lease another worker took over keeps that worker's state."""
    await make_endpoint(db, "created", max_concurrency=10)
    t0 = utcnow()
    await queue(db, "contact.created", 4, t0)
    now = t0 + timedelta(seconds=1)
    claimed = await claim(db, "w1", now)
    assert len(claimed) == 4
    retry_at = now + timedelta(seconds=10, microseconds=123457)

    delivered, retried, failed, stolen = claimed
    async with db.transaction() as conn:  # another worker took over the last one
        await conn.execute(
            sa.text("UPDATE deliveries SET leased_by = 'w2' WHERE id = :id"), {"id": stolen.id}
        )
        recorded = await record_attempts(
            conn,
            worker_id="w1",
            results=[
                (delivered, attempt(now)),
                (retried, attempt(now, DeliveryStatus.PENDING, 500, retry_at)),
                (failed, attempt(now, DeliveryStatus.FAILED, 400)),
                (stolen, attempt(now)),
            ],
        )
    assert recorded.held == 3
    async with db.read() as conn:
        rows = {
            row.id: row
            for row in await conn.execute(
                sa.select(deliveries).where(deliveries.c.id.in_([c.id for c in claimed]))
            )
        }
        attempts = (
            await conn.execute(sa.select(sa.func.count()).select_from(attempt_rows))
        ).scalar()
    assert attempts == 4  # every attempt happened, so every one is recorded
    assert [rows[c.id].status for c in (delivered, retried, failed)] == [
        "delivered",
        "pending",
        "failed",
    ]
    assert rows[retried.id].next_attempt_at == retry_at
    assert rows[retried.id].last_attempt_at == now and rows[retried.id].updated_at == now
    assert all(rows[c.id].attempt_count == 1 and rows[c.id].leased_by is None for c in claimed[:3])
    assert rows[stolen.id].leased_by == "w2" and rows[stolen.id].attempt_count == 0
    # Due exactly at retry_at, by the claim's comparison with the stored time.
    assert await next_due(db, now) == retry_at
    assert await claim(db, "w1", retry_at - timedelta(microseconds=1)) == []
    assert [c.id for c in await claim(db, "w1", retry_at)] == [retried.id]
