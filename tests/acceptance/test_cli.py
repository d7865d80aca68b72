"""The operator CLI and `rex trigger`, as subprocesses against Rex on 127.0.0.1: each
command's table and ``--json`` output, and its one-line errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import assert_one_line_error, client_env, run_json, run_rex
from tests.receiver import Receiver
from tests.support import RexServer, free_port, make_settings, serve_rex, sql, wait_until

OWN_SECRET = "whsec_my_own_secret_0123456789abcdef"  # chosen secrets: 32 characters at least


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RexServer]:
    """Rex on SQLite (the API itself is tested on both backends elsewhere)."""
    with serve_rex(make_settings(f"sqlite:///{tmp_path}/rex.db")) as rex:
        yield rex


@pytest.fixture
def env(server: RexServer) -> dict[str, str]:
    return client_env(server.url, server.key)


def rex_ok(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = run_rex(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def test_webhooks_create_list_test_delete(
    env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    empty = rex_ok("webhooks", "list", env=env, cwd=tmp_path)
    assert "No webhook endpoints yet" in empty
    assert run_json("webhooks", "list", env=env, cwd=tmp_path) == []

    table = rex_ok(
        "webhooks", "create", receiver.url(), "--events", "contact.created,contact.updated",
        "--description", "CRM sync", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert "Created webhook endpoint" in table
    assert "contact.created, contact.updated" in table and "CRM sync" in table
    secret_line = next(line for line in table.splitlines() if line.startswith("secret"))
    assert secret_line.split()[-1].startswith("whsec_")
    created = run_json(
        "webhooks", "create", receiver.url("/b"), "--secret", OWN_SECRET,
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert created["secret"] == OWN_SECRET and created["events"] == ["*"]
    assert created["id"].startswith("wh_")

    listed = run_json("webhooks", "list", env=env, cwd=tmp_path)
    assert listed[0]["id"] == created["id"] and len(listed) == 2
    assert all("secret" not in e for e in listed)
    table = rex_ok("webhooks", "list", env=env, cwd=tmp_path)
    header, *rows = [line for line in table.splitlines() if line.strip()]
    assert header.split() == ["ID", "URL", "EVENTS", "ENABLED", "CREATED"]
    assert created["id"] in rows[0] and receiver.url("/b") in rows[0] and "yes" in rows[0]
    assert len(
        rex_ok("webhooks", "list", "--limit", "1", env=env, cwd=tmp_path).splitlines()
    ) < len(table.splitlines())

    sent = rex_ok("webhooks", "test", created["id"], env=env, cwd=tmp_path)
    assert sent.startswith(f"Sent webhook.test to {created['id']}: delivery dlv_")
    delivery = run_json("webhooks", "test", created["id"], env=env, cwd=tmp_path)
    assert delivery["event"] == "webhook.test" and delivery["endpoint_id"] == created["id"]
    requests = receiver.wait_for(2, timeout=30, path="/b")
    assert {r.headers["X-Rex-Event"] for r in requests} == {"webhook.test"}

    deleted = rex_ok("webhooks", "delete", created["id"], env=env, cwd=tmp_path)
    assert deleted.strip() == f"Deleted webhook endpoint {created['id']}."
    other = listed[1]["id"]
    assert run_json("webhooks", "delete", other, env=env, cwd=tmp_path) == {
        "id": other,
        "deleted": True,
    }
    assert run_json("webhooks", "list", env=env, cwd=tmp_path) == []


def test_webhooks_errors_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    for args in (["delete", "wh_nope"], ["test", "wh_nope"]):
        assert_one_line_error(
            run_rex("webhooks", *args, env=env, cwd=tmp_path),
            "not found: No webhook endpoint with id 'wh_nope'",
        )
    assert_one_line_error(
        run_rex("webhooks", "create", "http://127.0.0.1/x", "--events", "nope", env=env,
                cwd=tmp_path),
        "422 Unprocessable Entity", "unknown event type(s) nope",
    )  # fmt: skip
    assert_one_line_error(
        run_rex("webhooks", "create", env=env, cwd=tmp_path),
        "Missing argument 'URL'",
        "rex webhooks create --help",
    )
    assert_one_line_error(
        run_rex("webhooks", "list", "--limit", "0", env=env, cwd=tmp_path), "--limit"
    )


def test_contacts_list(env: dict[str, str], server: RexServer, tmp_path: Path) -> None:
    assert rex_ok("contacts", "list", env=env, cwd=tmp_path).strip() == "No contacts."
    with server.client() as client:
        for i, stage in enumerate(("lead", "customer", "lead")):
            body = {"email": f"c{i}@example.com", "first_name": f"C{i}", "stage": stage}
            client.post("/contacts", json=body).raise_for_status()
    contacts = run_json("contacts", "list", env=env, cwd=tmp_path)
    assert [c["email"] for c in contacts] == ["c2@example.com", "c1@example.com", "c0@example.com"]
    assert [c["email"] for c in run_json("contacts", "list", "--stage", "customer", env=env,
                                         cwd=tmp_path)] == ["c1@example.com"]  # fmt: skip
    assert len(run_json("contacts", "list", "--limit", "2", env=env, cwd=tmp_path)) == 2
    table = rex_ok("contacts", "list", "--email", "c0@example.com", env=env, cwd=tmp_path)
    header, row = [line for line in table.splitlines() if line.strip()]
    assert header.split() == ["ID", "EMAIL", "NAME", "STAGE", "SOURCE", "CREATED"]
    assert row.split()[1:4] == ["c0@example.com", "C0", "lead"]
    assert row.split()[0] == contacts[2]["id"]


def test_pages_are_followed_beyond_one_request(
    env: dict[str, str], server: RexServer, tmp_path: Path
) -> None:
    with server.client() as client:
        for i in range(105):
            client.post("/contacts", json={"email": f"p{i}@example.com"}).raise_for_status()
    contacts = run_json("contacts", "list", "--limit", "500", env=env, cwd=tmp_path)
    assert len(contacts) == 105 and len({c["id"] for c in contacts}) == 105


def test_trigger_contact_events(env: dict[str, str], server: RexServer, tmp_path: Path) -> None:
    with Receiver() as receiver:
        with server.client() as client:
            client.post("/webhooks", json={"url": receiver.url(), "events": "*"}).raise_for_status()
        created = rex_ok("trigger", "contact.created", env=env, cwd=tmp_path)
        assert "POST /contacts" in created and "Triggered contact.created" in created
        steps = run_json("trigger", "contact.updated", env=env, cwd=tmp_path)
        assert [s["request"].split()[0] for s in steps] == ["POST", "PATCH"]
        assert steps[1]["data"]["stage"] == "customer"
        assert rex_ok("trigger", "contact.deleted", env=env, cwd=tmp_path).count("/contacts") == 2
        requests = receiver.wait_for(5, timeout=30)
    events = sorted(r.json()["event"] for r in requests)
    assert events == [
        "contact.created",
        "contact.created",
        "contact.created",
        "contact.deleted",
        "contact.updated",
    ]
    updated = next(r.json() for r in requests if r.json()["event"] == "contact.updated")
    assert updated["data"]["id"] == steps[0]["data"]["id"]
    assert updated["previous_attributes"]["stage"] == "lead"
    assert all(r.json()["data"]["email"].startswith("sample+") for r in requests)


def test_trigger_webhook_test(env: dict[str, str], server: RexServer, tmp_path: Path) -> None:
    assert_one_line_error(
        run_rex("trigger", "webhook.test", env=env, cwd=tmp_path), "nothing to test"
    )
    with Receiver() as receiver:
        with server.client() as client:
            ids = [
                client.post("/webhooks", json={"url": receiver.url(f"/{n}"), "events": "*"}).json()[
                    "data"
                ]["id"]
                for n in ("a", "b")
            ]
        out = rex_ok("trigger", "webhook.test", env=env, cwd=tmp_path)
        assert out.count("/test") == 2
        receiver.wait_for(1, path="/a", timeout=30)
        receiver.wait_for(1, path="/b", timeout=30)
        [step] = run_json("trigger", "webhook.test", "--endpoint", ids[0], env=env, cwd=tmp_path)
        assert step["request"] == f"POST /webhooks/{ids[0]}/test"
        receiver.wait_for(2, path="/a", timeout=30)


def test_trigger_errors(env: dict[str, str], tmp_path: Path) -> None:
    assert_one_line_error(
        run_rex("trigger", "Contact.Exploded", env=env, cwd=tmp_path),
        "unknown event 'Contact.Exploded'",
        "contact.created",
    )
    # Shaped like one of your own types, it is looked up: none was declared.
    assert_one_line_error(
        run_rex("trigger", "contact.exploded", env=env, cwd=tmp_path),
        "No event type 'contact.exploded'",
    )
    # Every operational event is Rex's own to emit (not taken for one of your own types).
    for operational in ("endpoint.disabled", "endpoint.failing", "delivery.failed"):
        assert_one_line_error(
            run_rex("trigger", operational, env=env, cwd=tmp_path), "cannot be triggered"
        )
    assert_one_line_error(
        run_rex("trigger", "contact.created", "--endpoint", "wh_x", env=env, cwd=tmp_path),
        "--endpoint only applies to webhook.test",
    )
    assert_one_line_error(
        run_rex("trigger", "webhook.test", "--endpoint", "wh_nope", env=env, cwd=tmp_path),
        "not found",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["webhooks", "list"],
        ["webhooks", "create", "http://127.0.0.1/x"],
        ["webhooks", "delete", "wh_x"],
        ["webhooks", "test", "wh_x"],
        ["contacts", "list"],
        ["deliveries", "list"],
        ["trigger", "contact.created"],
        ["trigger", "webhook.test"],
        ["deliveries", "list", "--endpoint", "wh_x"],
        ["deliveries", "get", "dlv_x"],
        ["deliveries", "retry", "dlv_x"],
        ["events", "list"],
        ["events", "get", "evt_x"],
    ],
)
def test_every_command_fails_in_one_line_on_a_wrong_key_or_no_server(
    server: RexServer, tmp_path: Path, command: list[str]
) -> None:
    wrong_key = client_env(server.url, "rex_sk_not_a_key")
    assert_one_line_error(
        run_rex(*command, env=wrong_key, cwd=tmp_path),
        "authentication failed: Invalid or revoked API key. (check REX_API_KEY)",
    )
    nobody = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(
        run_rex(*command, "--json", env=client_env(nobody, server.key), cwd=tmp_path),
        f"cannot reach Rex at {nobody}",
        "is `rex serve` running?",
    )


def test_configuration_errors_are_one_line(server: RexServer, tmp_path: Path) -> None:
    env = client_env(server.url, server.key)
    no_key = {k: v for k, v in env.items() if k != "REX_API_KEY"}
    assert_one_line_error(run_rex("contacts", "list", env=no_key, cwd=tmp_path), "REX_API_KEY")
    bad_url = {**env, "REX_URL": "127.0.0.1:8080"}
    assert_one_line_error(
        run_rex("contacts", "list", env=bad_url, cwd=tmp_path), "REX_URL must start with http"
    )


def test_a_server_that_is_not_rex_is_reported(receiver: Receiver, tmp_path: Path) -> None:
    env = client_env(receiver.base_url, "rex_sk_whatever")  # answers 200 with no body
    assert_one_line_error(
        run_rex("contacts", "list", env=env, cwd=tmp_path), "without JSON", "REX_URL"
    )


def test_settings_come_from_a_dotenv_file_too(server: RexServer, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"REX_URL={server.url}\nREX_API_KEY={server.key}\n")
    env = {k: v for k, v in client_env(server.url, server.key).items() if not k.startswith("REX_")}
    result = run_rex("contacts", "list", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_deliveries_list_with_no_endpoints(env: dict[str, str], tmp_path: Path) -> None:
    # (With endpoints, it reads GET /webhooks/{id}/deliveries: see the test below.)
    assert rex_ok("deliveries", "list", env=env, cwd=tmp_path).strip() == "No deliveries."
    assert rex_ok("deliveries", "list", "--failed", env=env, cwd=tmp_path).strip() == (
        "No failed deliveries."
    )
    assert run_json("deliveries", "list", env=env, cwd=tmp_path) == []


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines() if line.strip()]


def test_deliveries_list_get_and_retry(
    env: dict[str, str], server: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.set_default(lambda request: 500 if request.path == "/fail" else 200)
    with server.client() as client:
        # contact.created only: with "*", /ok would also get the delivery.failed about /fail.
        subscribed = ["contact.created"]
        ok = client.post("/webhooks", json={"url": receiver.url("/ok"), "events": subscribed})
        bad = client.post("/webhooks", json={"url": receiver.url("/fail"), "events": subscribed})
        client.post("/contacts", json={"email": "d@example.com"}).raise_for_status()
    ok_id, bad_id = ok.json()["data"]["id"], bad.json()["data"]["id"]

    def settled() -> bool:
        rows = sql(server.database_url, "SELECT status FROM deliveries ORDER BY status")
        return rows == [("delivered",), ("failed",)]

    wait_until(settled, timeout=30, interval=0.2)

    [delivered] = run_json("deliveries", "list", "--endpoint", ok_id, env=env, cwd=tmp_path)
    assert delivered["status"] == "delivered" and delivered["endpoint_id"] == ok_id
    [failed] = run_json("deliveries", "list", "--failed", env=env, cwd=tmp_path)
    assert failed["status"] == "failed" and failed["endpoint_id"] == bad_id
    both = run_json("deliveries", "list", env=env, cwd=tmp_path)
    assert {d["id"] for d in both} == {delivered["id"], failed["id"]}
    table = rex_ok("deliveries", "list", env=env, cwd=tmp_path)
    header, *rows = _rows(table)
    assert header[:4] == ["ID", "EVENT", "STATUS", "ATTEMPTS"] and len(rows) == 2
    assert "No failed deliveries." in rex_ok(
        "deliveries", "list", "--failed", "--endpoint", ok_id, env=env, cwd=tmp_path
    )

    detail = run_json("deliveries", "get", failed["id"], env=env, cwd=tmp_path)
    assert len(detail["attempts"]) == failed["attempt_count"] >= 2
    assert {a["status_code"] for a in detail["attempts"]} == {500}
    table = rex_ok("deliveries", "get", failed["id"], env=env, cwd=tmp_path)
    assert f"Delivery {failed['id']}" in table and "500" in table and "AT" in table

    before = len(receiver.wait_for(1, path="/fail"))
    retried = run_json("deliveries", "retry", failed["id"], env=env, cwd=tmp_path)
    assert retried["id"] == failed["id"]
    receiver.wait_for(before + failed["attempt_count"], path="/fail", timeout=30)
    said = rex_ok("deliveries", "retry", delivered["id"], env=env, cwd=tmp_path)
    assert said.startswith(f"Retrying delivery {delivered['id']}")

    for args in (["get", "dlv_nope"], ["retry", "dlv_nope"]):
        assert_one_line_error(run_rex("deliveries", *args, env=env, cwd=tmp_path), "not found")
    assert_one_line_error(
        run_rex("deliveries", "list", "--endpoint", "wh_nope", env=env, cwd=tmp_path), "not found"
    )


def test_events_list_and_get(
    env: dict[str, str], server: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    with server.client() as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": "*"}).raise_for_status()
        contact = client.post("/contacts", json={"email": "e@example.com"}).json()["data"]
        client.patch(f"/contacts/{contact['id']}", json={"first_name": "E"}).raise_for_status()
    receiver.wait_for(2, timeout=30)

    events = run_json("events", "list", env=env, cwd=tmp_path)
    assert [e.get("event") or e.get("type") for e in events][:2] == [
        "contact.updated",
        "contact.created",
    ]
    [created] = run_json("events", "list", "--type", "contact.created", env=env, cwd=tmp_path)
    assert run_json("events", "list", "--object-id", contact["id"], env=env, cwd=tmp_path)
    table = rex_ok("events", "list", env=env, cwd=tmp_path)
    header, *rows = _rows(table)
    assert header == ["ID", "TYPE", "OBJECT", "CREATED"] and rows[0][1] == "contact.updated"

    detail = run_json("events", "get", created["id"], env=env, cwd=tmp_path)
    assert detail["id"] == created["id"] and len(detail["deliveries"]) == 1
    table = rex_ok("events", "get", created["id"], env=env, cwd=tmp_path)
    assert f"Event {created['id']}" in table and "Deliveries" in table and "e@example.com" in table

    assert_one_line_error(run_rex("events", "get", "evt_nope", env=env, cwd=tmp_path), "not found")


@pytest.mark.parametrize(
    "event",
    [
        "deal.created",
        "deal.updated",
        "deal.stage_changed",
        "deal.deleted",
        "task.created",
        "task.updated",
        "task.completed",
        "task.deleted",
    ],
)
def test_trigger_deal_and_task_events(
    env: dict[str, str], server: RexServer, receiver: Receiver, tmp_path: Path, event: str
) -> None:
    with server.client() as client:
        client.post("/webhooks", json={"url": receiver.url(), "events": "*"}).raise_for_status()
    steps = run_json("trigger", event, env=env, cwd=tmp_path)
    assert steps and all(step["data"]["id"] for step in steps)

    def arrived() -> dict[str, object] | None:
        for request in receiver.requests:
            if request.headers["X-Rex-Event"] == event:
                body: dict[str, object] = request.json()
                return body
        return None

    body = wait_until(arrived, timeout=30)
    if event == "deal.stage_changed":
        assert body["to"] == "qualified"
