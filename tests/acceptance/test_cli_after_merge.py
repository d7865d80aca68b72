"""CLI commands on API routes that other branches build, written against DESIGN.md's
contract: `GET /webhooks/{id}/deliveries`, `GET /deliveries/{id}`,
`POST /deliveries/{id}/retry` (delivery-engine issue) and `GET /events`, `GET /events/{id}`,
`/deals`, `/tasks` (CRM issue). They fail on the `rex listen` branch alone (those routes
answer 404 there) and pass once those branches are merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import assert_one_line_error, client_env, run_json, run_rex
from tests.receiver import Receiver
from tests.support import RexServer, free_port, make_settings, serve_rex, sql, wait_until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RexServer]:
    with serve_rex(make_settings(f"sqlite:///{tmp_path}/rex.db")) as rex:
        yield rex


@pytest.fixture
def env(server: RexServer) -> dict[str, str]:
    return client_env(server.url, server.key)


def rex_ok(*args: str, env: dict[str, str], cwd: Path) -> str:
    result = run_rex(*args, env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.splitlines() if line.strip()]


def test_deliveries_list_get_and_retry(
    env: dict[str, str], server: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.set_default(lambda request: 500 if request.path == "/fail" else 200)
    with server.client() as client:
        ok = client.post("/webhooks", json={"url": receiver.url("/ok"), "events": "*"}).json()
        bad = client.post("/webhooks", json={"url": receiver.url("/fail"), "events": "*"}).json()
        client.post("/contacts", json={"email": "d@example.com"}).raise_for_status()
    ok_id, bad_id = ok["data"]["id"], bad["data"]["id"]

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


@pytest.mark.parametrize(
    "command",
    [
        ["deliveries", "list", "--endpoint", "wh_x"],
        ["deliveries", "get", "dlv_x"],
        ["deliveries", "retry", "dlv_x"],
        ["events", "list"],
        ["events", "get", "evt_x"],
    ],
)
def test_more_commands_fail_in_one_line_on_a_wrong_key_or_no_server(
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
    )
