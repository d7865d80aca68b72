"""Operational events and alerts outside webhooks: ``endpoint.failing``, ``endpoint.disabled``,
``endpoint.recovered`` and ``delivery.failed`` go to the endpoints subscribed to them (never
the one they are about), and, once per endpoint and state change, to the workspace's
``notify_emails`` (a real SMTP server, aiosmtpd, on 127.0.0.1) and ``notify_slack_url`` (a
local receiver standing in for Slack)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.receiver import Receiver
from tests.support import RexServer, free_port, make_settings, serve_rex, sql, wait_until

OPERATIONAL = ["endpoint.failing", "endpoint.disabled", "endpoint.recovered", "delivery.failed"]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        return sorted(
            line.removeprefix("Subject: ")
            for _, content in self.messages
            for line in content.splitlines()
            if line.startswith("Subject: ")
        )


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def set_alerts(rex: RexServer, slack: Receiver) -> None:
    with rex.client() as client:
        answer = client.patch(
            "/workspace",
            json={"notify_emails": ["ops@example.com"], "notify_slack_url": slack.url("/slack")},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["notify_emails"] == ["ops@example.com"]
        assert answer.json()["data"]["notify_slack_url"] == slack.url("/slack")


def events_at(receiver: Receiver) -> list[str]:
    return [r.json()["event"] for r in receiver.requests]


def test_failing_then_disabled_then_recovered_alert_once_each(
    database_url: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    settings = make_settings(
        database_url,
        smtp_url=f"smtp://127.0.0.1:{port}",
        mail_from="Rex <rex@example.com>",
        retry_schedule=(0.3,) * 30,  # never exhausted before the endpoint is disabled
        endpoint_failing_after=1.0,
        endpoint_disable_after=3.0,
    )
    with (
        Receiver(default=500) as failing,
        Receiver() as watcher,
        Receiver() as slack,
        serve_rex(settings) as rex,
    ):
        set_alerts(rex, slack)
        with rex.client() as client:
            # The failing endpoint subscribes to the events about itself: it must get none.
            bad = client.post(
                "/webhooks",
                json={"url": failing.url(), "events": ["contact.created", *OPERATIONAL]},
            ).json()["data"]
            good = client.post(
                "/webhooks", json={"url": watcher.url(), "events": OPERATIONAL}
            ).json()["data"]
            # The hidden alert endpoints are not webhooks a user manages.
            listed = [e["id"] for e in client.get("/webhooks").json()["data"]]
            assert sorted(listed) == sorted([bad["id"], good["id"]])
            client.post("/contacts", json={"email": "x@example.com"}).raise_for_status()

            wait_until(
                lambda: {"endpoint.failing", "endpoint.disabled"} <= set(events_at(watcher)),
                timeout=30,
            )
            wait_until(lambda: len(inbox.messages) >= 2 and len(slack.requests) >= 2, timeout=30)
            assert client.get(f"/webhooks/{bad['id']}").json()["data"]["enabled"] is False

            # It is fixed and re-enabled: its held delivery goes, and it has recovered.
            failing.set_default(200)
            client.patch(f"/webhooks/{bad['id']}", json={"enabled": True}).raise_for_status()
            wait_until(lambda: "endpoint.recovered" in events_at(watcher), timeout=30)
            wait_until(lambda: len(inbox.messages) >= 3 and len(slack.requests) >= 3, timeout=30)

            def alert_deliveries() -> list[Any]:
                return sql(
                    rex.database_url,
                    "SELECT e.system_role AS role, d.event_type AS event, d.status AS status "
                    "FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
                    "WHERE e.system_role IS NOT NULL",
                )

            # A message received is recorded as delivered a moment later.
            alert_rows = wait_until(
                lambda: (
                    (rows := alert_deliveries())
                    and all(r.status == "delivered" for r in rows)
                    and rows
                ),
                timeout=30,
            )

    assert collections.Counter(events_at(watcher)) == {
        "endpoint.failing": 1,
        "endpoint.disabled": 1,
        "endpoint.recovered": 1,
    }
    about = {r.json()["data"]["id"] for r in watcher.requests}
    assert about == {bad["id"]}
    assert set(events_at(failing)) == {"contact.created"}
    # Exactly one email and one Slack post per state change, queued as deliveries.
    assert sorted((r.role, r.event, r.status) for r in alert_rows) == sorted(
        (role, event, "delivered")
        for role in ("alert_email", "alert_slack")
        for event in ("endpoint.failing", "endpoint.disabled", "endpoint.recovered")
    )
    assert len(inbox.messages) == 3
    assert all(recipients == ["ops@example.com"] for recipients, _ in inbox.messages)
    subjects = inbox.subjects()
    assert [s.split(":")[0] for s in subjects] == [
        "[Rex] Webhook endpoint disabled",
        "[Rex] Webhook endpoint failing",
        "[Rex] Webhook endpoint recovered",
    ]
    assert len(slack.requests) == 3
    texts = [r.json()["text"] for r in slack.requests]
    assert all(set(r.json()) == {"text"} for r in slack.requests)
    assert all(failing.url() in text for text in texts)
    assert all(r.headers["Content-Type"] == "application/json" for r in slack.requests)


def test_exhausted_schedule_sends_delivery_failed_and_one_alert(
    database_url: str, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    settings = make_settings(database_url, smtp_url=f"smtp://127.0.0.1:{port}")
    with (
        Receiver(default=500) as failing,
        Receiver() as watcher,
        Receiver() as slack,
        serve_rex(settings) as rex,
    ):
        set_alerts(rex, slack)
        with rex.client() as client:
            bad = client.post(
                "/webhooks", json={"url": failing.url(), "events": ["contact.created"]}
            ).json()["data"]
            client.post(
                "/webhooks", json={"url": watcher.url(), "events": ["delivery.failed"]}
            ).raise_for_status()
            for i in range(2):
                client.post("/contacts", json={"email": f"f{i}@example.com"}).raise_for_status()
            watcher.wait_for(2, timeout=30)
            wait_until(lambda: inbox.messages and slack.requests, timeout=30)
        alert_rows = sql(
            rex.database_url,
            "SELECT e.system_role AS role, d.event_type AS event "
            "FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id "
            "WHERE e.system_role IS NOT NULL",
        )
    failed = [r.json() for r in watcher.requests]
    assert [e["event"] for e in failed] == ["delivery.failed", "delivery.failed"]
    for event in failed:
        assert event["data"]["endpoint_id"] == bad["id"]
        assert event["data"]["event"] == "contact.created"
        assert event["data"]["attempt_count"] == 4
        assert event["data"]["last_attempt"]["status_code"] == 500
        assert event["data"]["endpoint"]["url"] == failing.url()
    # Two deliveries failed for good, but one alert per channel until the endpoint recovers.
    assert sorted((r.role, r.event) for r in alert_rows) == [
        ("alert_email", "delivery.failed"),
        ("alert_slack", "delivery.failed"),
    ]
    assert len(inbox.messages) == 1 and len(slack.requests) == 1
    assert inbox.subjects()[0].startswith("[Rex] Delivery failed: contact.created")


def test_alert_settings_are_validated(rex: RexServer) -> None:
    with rex.client() as client:
        for body, field in (
            ({"notify_emails": ["not-an-email"]}, "notify_emails"),
            ({"notify_emails": None}, "notify_emails"),
            ({"notify_slack_url": "ftp://hooks.example.com/x"}, "notify_slack_url"),
            ({"notify_slack_url": "hooks.slack.com/services/x"}, "notify_slack_url"),
        ):
            answer = client.patch("/workspace", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["error"]["field"].startswith(field), answer.text
        assert client.get("/workspace").json()["data"]["notify_emails"] == []
        # Set, then cleared: the hidden alert endpoints come and go with the settings.
        client.patch(
            "/workspace",
            json={"notify_emails": ["a@example.com"], "notify_slack_url": "https://example.com/s"},
        ).raise_for_status()
        assert sql(rex.database_url, "SELECT count(*) AS n FROM endpoints")[0].n == 2
        assert client.get("/webhooks").json()["data"] == []
        cleared = client.patch("/workspace", json={"notify_emails": [], "notify_slack_url": None})
        assert cleared.json()["data"]["notify_slack_url"] is None
        assert sql(rex.database_url, "SELECT count(*) AS n FROM endpoints")[0].n == 0
        # A form's new-lead emails are Rex's own endpoint too: not listed, not reachable.
        client.post(
            "/forms", json={"name": "F", "notify_emails": ["sales@example.com"]}
        ).raise_for_status()
        [hidden] = sql(rex.database_url, "SELECT id FROM endpoints")
        assert client.get("/webhooks").json()["data"] == []
        assert client.get(f"/webhooks/{hidden.id}").status_code == 404


def test_slack_url_follows_the_destination_rules(tmp_path: Any) -> None:
    settings = make_settings(f"sqlite:///{tmp_path}/rex.db", allow_private_destinations=False)
    with serve_rex(settings) as rex, rex.client() as client:
        answer = client.patch("/workspace", json={"notify_slack_url": "http://127.0.0.1:9/hook"})
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "notify_slack_url"
