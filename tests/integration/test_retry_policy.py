"""The retry policy and endpoint health, against a receiver that misbehaves on purpose.

Every test runs on a real SQLite file and on PostgreSQL, with a compressed
``REX_RETRY_SCHEDULE``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.receiver import Receiver, Redirect, Respond
from tests.support import RexServer, make_settings, serve_rex, sql, wait_until

SECRET = "whsec_your_signing_secret"


def subscribe(rex: RexServer, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    with rex.client() as client:
        response = client.post(
            "/webhooks", json={"url": url, "events": events, "secret": SECRET, **extra}
        )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def capture(rex: RexServer, email: str = "jane@example.com") -> None:
    response = httpx.post(f"{rex.url}/capture", json={"email": email})
    assert response.status_code in (200, 201), response.text


def delivery_of(rex: RexServer, endpoint_id: str, **where: Any) -> Any:
    """The endpoint's only delivery, once it matches ``where`` (status=..., attempt_count=...)."""

    def check() -> Any:
        rows = sql(
            rex.database_url, "SELECT * FROM deliveries WHERE endpoint_id = :e", e=endpoint_id
        )
        assert len(rows) <= 1, rows
        if rows and all(getattr(rows[0], k) == v for k, v in where.items()):
            return rows[0]
        return None

    return wait_until(check, timeout=20)


def attempts_of(rex: RexServer, delivery_id: str) -> list[Any]:
    return sql(
        rex.database_url, "SELECT * FROM attempts WHERE delivery_id = :d ORDER BY at", d=delivery_id
    )


def when(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339)


def endpoint(rex: RexServer, endpoint_id: str) -> dict[str, Any]:
    with rex.client() as client:
        return client.get(f"/webhooks/{endpoint_id}").json()["data"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_success(rex: RexServer, receiver: Receiver, status: int) -> None:
    receiver.set_default(Respond(status))
    hook = subscribe(rex, receiver.url(), ["contact.created"])
    capture(rex)
    row = delivery_of(rex, hook["id"], status="delivered")
    assert row.attempt_count == 1
    assert [a.status_code for a in attempts_of(rex, row.id)] == [status]


def test_4xx_is_retried_like_5xx(rex: RexServer, receiver: Receiver) -> None:
    receiver.respond_with(400, 401, 404)
    hook = subscribe(rex, receiver.url(), ["contact.created"])
    capture(rex)
    row = delivery_of(rex, hook["id"], status="delivered")
    assert [a.status_code for a in attempts_of(rex, row.id)] == [400, 401, 404, 200]


def test_redirects_are_not_followed_and_count_as_failures(
    rex: RexServer, receiver: Receiver
) -> None:
    receiver.respond_with(Redirect(302, to="/elsewhere"), Redirect(307, to=receiver.url("/x")))
    hook = subscribe(rex, receiver.url("/hook"), ["contact.created"])
    capture(rex)

    row = delivery_of(rex, hook["id"], status="delivered")

    assert [r.path for r in receiver.requests] == ["/hook", "/hook", "/hook"]
    assert [a.status_code for a in attempts_of(rex, row.id)] == [302, 307, 200]
    # The success ended the failing streak.
    [health] = sql(rex.database_url, "SELECT * FROM endpoints WHERE id = :e", e=hook["id"])
    assert health.failing_since is None and health.last_success_at is not None


def test_failed_after_the_last_attempt_and_stays_visible(
    rex: RexServer, receiver: Receiver
) -> None:
    receiver.set_default(Respond(500, body="database is down"))
    hook = subscribe(rex, receiver.url(), ["contact.created"])
    capture(rex)

    row = delivery_of(rex, hook["id"], status="failed")

    assert row.attempt_count == 4 and row.next_attempt_at is None  # 1 + 3 retries
    with rex.client() as client:
        listed = client.get(f"/webhooks/{hook['id']}/deliveries?status=failed").json()["data"]
        detail = client.get(f"/deliveries/{row.id}").json()["data"]
    assert [d["id"] for d in listed] == [row.id]
    assert [a["status_code"] for a in detail["attempts"]] == [500] * 4
    assert {a["response_excerpt"] for a in detail["attempts"]} == {"database is down"}
    assert endpoint(rex, hook["id"])["enabled"] is True  # not failing for long enough


def test_retry_after_is_honoured_and_bounded(database_url: str, receiver: Receiver) -> None:
    # The longest pause (30 s) bounds any Retry-After.
    settings = make_settings(database_url, retry_schedule=(0.2, 30.0))
    receiver.respond_with(
        Respond(429, headers={"Retry-After": "1"}),
        Respond(503, headers={"Retry-After": "86400"}),
    )
    with serve_rex(settings) as rex:
        hook = subscribe(rex, receiver.url(), ["contact.created"])
        capture(rex)
        row = delivery_of(rex, hook["id"], attempt_count=2)

        with rex.client() as client:
            shown = client.get(f"/deliveries/{row.id}").json()["data"]

    first, second = shown["attempts"]
    assert (first["status_code"], second["status_code"]) == (429, 503)
    # Asked for 1 s rather than the schedule's 0.2 s: not retried sooner.
    assert when(second["at"]) - when(first["at"]) >= timedelta(seconds=1)
    # Asked for a day: held to the longest pause of the schedule.
    assert shown["status"] == "pending"
    assert when(shown["next_attempt_at"]) - when(second["at"]) == timedelta(seconds=30)


def test_retry_after_is_ignored_on_other_statuses(database_url: str, receiver: Receiver) -> None:
    # Honoured, an hour's Retry-After would hold the retry to the schedule's longest pause
    # (30 s): far beyond the bound below. Ignored, the retry comes after 0.2 s.
    settings = make_settings(database_url, retry_schedule=(0.2, 30.0))
    receiver.respond_with(Respond(500, headers={"Retry-After": "3600"}))
    with serve_rex(settings) as rex:
        hook = subscribe(rex, receiver.url(), ["contact.created"])
        capture(rex)
        row = delivery_of(rex, hook["id"], status="delivered")
    assert row.attempt_count == 2
    first, second = attempts_of(rex, row.id)
    assert first.status_code == 500 and second.status_code == 200
    gap = _at(second.at) - _at(first.at)
    assert gap < timedelta(seconds=5), gap


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def test_410_gone_disables_the_endpoint_at_once(rex: RexServer, receiver: Receiver) -> None:
    gone = subscribe(rex, receiver.url("/gone"), ["contact.created"])
    watcher = subscribe(rex, receiver.url("/ops"), ["endpoint.disabled"])
    bystander = subscribe(rex, receiver.url("/crm"), ["contact.created"])
    receiver.set_default(lambda r: 410 if r.path == "/gone" else 200)

    capture(rex)

    row = delivery_of(rex, gone["id"], status="failed")
    assert row.attempt_count == 1  # no retry after a 410
    disabled = endpoint(rex, gone["id"])
    assert disabled["enabled"] is False
    assert "410" in disabled["disabled_reason"]
    [notice] = receiver.wait_for(1, path="/ops", timeout=20)
    event = notice.json()
    assert event["event"] == "endpoint.disabled"
    assert event["data"]["id"] == gone["id"]
    assert event["data"]["enabled"] is False
    assert event["data"]["disabled_reason"] == disabled["disabled_reason"]
    assert "secret" not in event["data"]
    assert endpoint(rex, watcher["id"])["enabled"] is True
    receiver.wait_for(1, path="/crm")
    assert {r.path for r in receiver.requests} == {"/gone", "/ops", "/crm"}
    assert endpoint(rex, bystander["id"])["enabled"] is True

    # A disabled endpoint gets no new deliveries...
    capture(rex, "second@example.com")
    receiver.wait_for(2, path="/crm")
    assert len(sql(rex.database_url, "SELECT id FROM deliveries WHERE endpoint_id = :e",
                   e=gone["id"])) == 1  # fmt: skip

    # ...until an operator re-enables it.
    receiver.set_default(200)
    with rex.client() as client:
        enabled = client.patch(f"/webhooks/{gone['id']}", json={"enabled": True}).json()["data"]
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None
    capture(rex, "third@example.com")
    [again] = receiver.wait_for(2, path="/gone", timeout=20)[1:]
    assert again.json()["data"]["email"] == "third@example.com"


def test_endpoint_failing_for_too_long_is_disabled_and_announced(
    database_url: str, receiver: Receiver
) -> None:
    settings = make_settings(database_url, retry_schedule=(0.3,) * 6, endpoint_disable_after=0.5)
    receiver.set_default(lambda r: 500 if r.path == "/down" else 200)
    with serve_rex(settings) as rex:
        down = subscribe(rex, receiver.url("/down"), ["contact.created"])
        subscribe(rex, receiver.url("/ops"), ["endpoint.disabled"])
        capture(rex)

        [notice] = receiver.wait_for(1, path="/ops", timeout=20)
        reason = notice.json()["data"]["disabled_reason"]
        assert "no successful delivery for 0.5 seconds" in reason
        shown = endpoint(rex, down["id"])
        assert shown["enabled"] is False and shown["disabled_reason"] == reason
        # The delivery that was failing is kept, pending, not thrown away...
        row = delivery_of(rex, down["id"])
        assert row.status == "pending" and row.attempt_count >= 2
        # ...and nothing more is sent to the endpoint while it is disabled.
        sent = len([r for r in receiver.requests if r.path == "/down"])
        assert sent == row.attempt_count

        # Fixed and re-enabled: its pending delivery goes out, with a fresh health record.
        receiver.set_default(200)
        with rex.client() as client:
            client.patch(f"/webhooks/{down['id']}", json={"enabled": True}).raise_for_status()
        delivered = delivery_of(rex, down["id"], status="delivered")
        assert delivered.attempt_count == sent + 1
        [health] = sql(rex.database_url, "SELECT * FROM endpoints WHERE id = :e", e=down["id"])
        assert health.enabled and health.failing_since is None and health.disabled_reason is None
