"""The durations Rex writes, on both sides of each boundary, by moving Rex's clock.

Rex is served with a ``ShiftedClock`` (``rex.clock``): the app and its worker read "now"
from it, so a test moves time forward without rewriting any stored timestamp, and the
values the code computes (24 h rotation overlap, 24 h idempotency TTL, 5 min staleness,
30-day retention on a settable interval, ``REX_ENDPOINT_DISABLE_AFTER=0``) decide.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from rex.api.idempotency import request_fingerprint
from rex.clock import FixedClock, ShiftedClock
from rex.db.engine import Database
from rex.db.schema import idempotency_keys
from rex.ids import rfc3339, utcnow
from rex.outbox.events import record_event
from rex.worker.retention import prune_expired
from rex.workspaces import service as workspaces
from tests.receiver import ReceivedRequest, Receiver, Respond
from tests.support import RexServer, make_settings, serve_rex, sql, wait_until

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def shifted_rex(database_url: str, clock: ShiftedClock) -> Iterator[RexServer]:
    with serve_rex(make_settings(database_url), clock=clock) as server:
        yield server


def count(database_url: str, table: str, where: str = "1=1", **params: object) -> int:
    return int(sql(database_url, f"SELECT count(*) AS n FROM {table} WHERE {where}", **params)[0].n)


def signed_by(request: ReceivedRequest) -> list[str]:
    """The HMACs (hex) in the request's X-Rex-Signature, in order."""
    parts = request.headers["X-Rex-Signature"].split(",")
    return [p.removeprefix("v1=") for p in parts if p.startswith("v1=")]


def hmac_of(request: ReceivedRequest, secret: str) -> str:
    timestamp = request.headers["X-Rex-Signature"].split(",")[0].removeprefix("t=")
    signed = f"{timestamp}.".encode() + request.body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


# -- rotation: the old secret signs for 24 hours --------------------------------------------


def test_the_old_secret_signs_for_exactly_24_hours_after_a_rotation(
    shifted_rex: RexServer, clock: ShiftedClock, receiver: Receiver
) -> None:
    rex = shifted_rex
    with rex.client() as client:
        hook = client.post("/webhooks", json={"url": receiver.url(), "events": ["task.created"]})
        assert hook.status_code == 201, hook.text
        endpoint_id, old = hook.json()["data"]["id"], hook.json()["data"]["secret"]
        before = clock.now()
        rotated = client.post(f"/webhooks/{endpoint_id}/rotate-secret")
        after = clock.now()
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["data"]["secret"]

        # What the code wrote: the expiry is the rotation time plus 24 hours.
        [row] = sql(
            rex.database_url,
            "SELECT previous_secret_expires_at AS expires, updated_at FROM endpoints "
            "WHERE id = :id",
            id=endpoint_id,
        )
        expires, rotated_at = _as_datetime(row.expires), _as_datetime(row.updated_at)
        assert expires - rotated_at == timedelta(hours=24)
        assert before <= rotated_at <= after

        # 23 h 59 min later both sign (new first); 24 h 01 min later only the new one.
        for shift, secrets in ((23 * HOUR + 59 * MINUTE, [new, old]), (24 * HOUR + MINUTE, [new])):
            clock.set(shift)
            title = f"after {shift}"
            response = client.post("/tasks", json={"title": title})
            assert response.status_code == 201, response.text
            # This task's delivery, found by its content: not "the next request", which on a
            # loaded machine can be a second attempt of the previous task's delivery (made
            # before the clock moved, at-least-once).
            request = wait_until(lambda t=title: _delivery_of(receiver, t), timeout=60)
            assert signed_by(request) == [hmac_of(request, s) for s in secrets], shift


def _delivery_of(receiver: Receiver, title: str) -> ReceivedRequest | None:
    for request in receiver.requests:
        if request.json()["data"].get("title") == title:
            return request
    return None


def _as_datetime(value: object) -> datetime:
    if isinstance(value, str):  # SQLite's text column
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


# -- idempotency keys: 24 hours to replay, 5 minutes in flight ------------------------------


def test_a_key_replays_for_24_hours_then_runs_again(database_url: str) -> None:
    start = utcnow()
    clock = FixedClock(start)  # still: the boundary is hit exactly, however slow the machine
    body = {"title": "Call back"}
    with serve_rex(make_settings(database_url), clock=clock) as rex, rex.client() as client:
        client.headers["Idempotency-Key"] = "ttl-1"
        first = client.post("/tasks", json=body)
        assert first.status_code == 201, first.text

        clock.set(start + 23 * HOUR + 59 * MINUTE)
        replay = client.post("/tasks", json=body)
        assert replay.status_code == 201
        assert replay.headers.get("idempotent-replayed") == "true"
        assert replay.json() == first.json()
        assert count(rex.database_url, "tasks") == 1

        clock.set(start + 24 * HOUR + MINUTE)
        again = client.post("/tasks", json=body)
        assert again.status_code == 201, again.text
        assert "idempotent-replayed" not in again.headers
        assert again.json()["data"]["id"] != first.json()["data"]["id"]
        assert count(rex.database_url, "tasks") == 2


def _claim_in_flight(database_url: str, key: str, body: dict[str, str], now: datetime) -> None:
    """The row a request still running (or whose process died) holds: exactly what
    ``rex.db.idempotency.claim`` inserts for ``POST /tasks`` with ``body``."""
    raw = json.dumps(body).encode()
    fingerprint = request_fingerprint(
        {"method": "POST", "path": "/tasks", "query_string": b""}, raw, "application/json"
    )

    async def run() -> None:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                workspace = await workspaces.get_by_slug(conn, workspaces.DEFAULT_SLUG)
                assert workspace is not None
                await conn.execute(
                    sa.insert(idempotency_keys).values(
                        workspace_id=workspace.id,
                        key=key,
                        request_hash=fingerprint,
                        response_status=0,
                        response_body="",
                        created_at=now,
                    )
                )
        finally:
            await db.close()

    asyncio.run(run())


def test_a_key_in_flight_answers_409_for_5_minutes_then_runs_again(database_url: str) -> None:
    start = utcnow()
    clock = FixedClock(start)  # still: 1 s either side of 5 min is hit exactly
    body = {"title": "In flight"}
    with serve_rex(make_settings(database_url), clock=clock) as rex, rex.client() as client:
        _claim_in_flight(rex.database_url, "flight-1", body, start)
        client.headers["Idempotency-Key"] = "flight-1"
        for shift in (timedelta(0), 4 * MINUTE + timedelta(seconds=59)):
            clock.set(start + shift)
            busy = client.post("/tasks", json=body)
            assert busy.status_code == 409, (shift, busy.text)
            assert busy.json()["error"]["type"] == "idempotency_key_in_use"
            assert int(busy.headers["retry-after"]) >= 1
            assert count(rex.database_url, "tasks") == 0

        # The same key with another request is still "reused", not "in use".
        other = client.post("/tasks", json={"title": "Something else"})
        assert other.json()["error"]["type"] == "idempotency_key_reused"

        clock.set(start + 5 * MINUTE + timedelta(seconds=1))  # the first request died: run it
        ran = client.post("/tasks", json=body)
        assert ran.status_code == 201, ran.text
        assert "idempotent-replayed" not in ran.headers
        assert count(rex.database_url, "tasks") == 1
        replay = client.post("/tasks", json=body)
        assert replay.headers.get("idempotent-replayed") == "true"
        assert count(rex.database_url, "tasks") == 1


# -- retention: a setting's interval, 30 days, disabled holds nothing, 0 keeps all --------


def _old_event(database_url: str, *, age: timedelta, event_type: str = "contact.created") -> str:
    """An event recorded ``age`` ago (by the real clock), with no subscriber."""

    async def run() -> str:
        db = Database(database_url, pool_size=1)
        try:
            async with db.transaction() as conn:
                workspace = await workspaces.get_by_slug(conn, workspaces.DEFAULT_SLUG)
                assert workspace is not None
                return await record_event(
                    conn,
                    workspace_id=workspace.id,
                    event_type=event_type,
                    data={"marker": True},
                    object_id=None,
                    now=utcnow() - age,
                )
        finally:
            await db.close()

    return str(asyncio.run(run()))


def _exists(database_url: str, event_id: str) -> bool:
    return count(database_url, "events", "id = :id", id=event_id) == 1


def test_retention_runs_on_its_interval_at_30_days_and_prunes_what_a_disabled_endpoint_holds(
    database_url: str, clock: ShiftedClock, receiver: Receiver
) -> None:
    # A failed attempt is retried an hour later: the task's delivery stays pending.
    settings = make_settings(database_url, retention_interval=0.2, retry_schedule=(3600.0,))
    receiver.set_default(Respond(500))
    with serve_rex(settings, clock=clock) as rex, rex.client() as client:
        assert settings.retention_days == 30  # the default
        hook = client.post("/webhooks", json={"url": receiver.url(), "events": ["task.created"]})
        assert hook.status_code == 201, hook.text
        endpoint_id = hook.json()["data"]["id"]
        assert client.post("/tasks", json={"title": "pending"}).status_code == 201
        receiver.wait_for(1)
        disabled = client.patch(f"/webhooks/{endpoint_id}", json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
        contact = client.post("/contacts", json={"email": "old@example.com"})
        assert contact.status_code == 201, contact.text
        [(task_event,)] = sql(database_url, "SELECT id FROM events WHERE type = 'task.created'")
        [(contact_event,)] = sql(
            database_url, "SELECT id FROM events WHERE type = 'contact.created'"
        )
        wait_until(lambda: count(database_url, "deliveries", "status = 'pending'") == 1)

        # 29 days on: a marker 10 days older goes, proving a run since; 29 days is kept.
        clock.set(29 * DAY)
        marker = _old_event(database_url, age=10 * DAY)
        wait_until(lambda: not _exists(database_url, marker), timeout=15)
        assert _exists(database_url, contact_event) and _exists(database_url, task_event)

        # 29 days on, the task's event is still held: its delivery is pending.
        assert sql(database_url, "SELECT status FROM deliveries") == [("pending",)]

        # 31 days on (no restart): the next run prunes the contact's event, and the task's
        # too: a delivery pending for a disabled endpoint holds nothing (issue 21: such
        # events would otherwise be kept forever), so it goes with its attempt.
        clock.set(31 * DAY)
        wait_until(lambda: not _exists(database_url, contact_event), timeout=15)
        wait_until(lambda: not _exists(database_url, task_event), timeout=15)
        assert count(database_url, "deliveries") == 0
        assert count(database_url, "attempts") == 0


def test_retention_days_zero_keeps_old_events(
    database_url: str, clock: ShiftedClock, receiver: Receiver
) -> None:
    settings = make_settings(database_url, retention_days=0, retention_interval=0.1)
    with serve_rex(settings, clock=clock) as rex, rex.client() as client:
        assert client.post("/contacts", json={"email": "a@example.com"}).status_code == 201
        ancient = _old_event(database_url, age=999 * DAY)
        clock.set(999 * DAY)
        # A negative check needs a wait: ten retention intervals, in which a worker that
        # pruned with 0 days (everything is older than "now") would have.
        time.sleep(1.0)
        assert _exists(database_url, ancient)
        assert count(database_url, "events") == 2

    async def direct() -> int:
        db = Database(database_url, pool_size=1)
        try:
            return await prune_expired(db, retention_days=0, now=utcnow() + 999 * DAY)
        finally:
            await db.close()

    assert asyncio.run(direct()) == 0
    assert count(database_url, "events") == 2


# -- REX_ENDPOINT_DISABLE_AFTER=0 never disables ---------------------------------------------


@pytest.mark.parametrize(("disable_after", "disabled"), [(0.0, False), (3600.0, True)])
def test_endpoint_disable_after_zero_never_disables(
    database_url: str, clock: ShiftedClock, receiver: Receiver, disable_after: float, disabled: bool
) -> None:
    """Failing for 30 days (by Rex's clock) disables an endpoint with a 1-hour limit, and
    never one with ``REX_ENDPOINT_DISABLE_AFTER=0``."""
    receiver.set_default(Respond(500))
    settings = make_settings(database_url, endpoint_disable_after=disable_after)
    with serve_rex(settings, clock=clock) as rex, rex.client() as client:
        hook = client.post("/webhooks", json={"url": receiver.url(), "events": ["task.created"]})
        assert hook.status_code == 201, hook.text
        endpoint_id = hook.json()["data"]["id"]
        assert client.post("/tasks", json={"title": "fails"}).status_code == 201
        wait_until(lambda: count(database_url, "attempts") >= 1)
        clock.set(30 * DAY)

        def settled() -> bool:
            # Either every attempt failed, or the endpoint was disabled (its delivery kept).
            [(status,)] = sql(database_url, "SELECT status FROM deliveries")
            return status == "failed" or count(database_url, "endpoints", "NOT enabled") == 1

        wait_until(settled, timeout=20)
        endpoint = client.get(f"/webhooks/{endpoint_id}").json()["data"]
        if not disabled:
            assert count(database_url, "attempts") == 4  # the whole schedule, 30 days on
    assert endpoint["enabled"] is not disabled
    assert (endpoint["disabled_reason"] is not None) is disabled
    if disabled:  # the reason names the limit and when the failures began (the first one)
        [(first_at,)] = sql(database_url, "SELECT min(at) FROM attempts")
        reason = endpoint["disabled_reason"]
        assert "no successful delivery for 1 hour" in reason, reason
        assert f"(failing since {rfc3339(_as_datetime(first_at))})" in reason, reason
    assert count(database_url, "events", "type = 'endpoint.disabled'") == int(disabled)
