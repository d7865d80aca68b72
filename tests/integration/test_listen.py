"""`rex listen`: the CLI as a subprocess against Rex on 127.0.0.1, forwarding to a real receiver,
on SQLite and PostgreSQL; and the ``/listen/sessions`` API it uses."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

import rex as rexlib
from tests.cli import assert_one_line_error, client_env, listening, run_rex
from tests.receiver import Receiver
from tests.support import RexServer, free_port, make_settings, serve_rex, sql, wait_until


def _deliveries(rex: RexServer, event_id: str) -> list[Any]:
    return sql(
        rex.database_url,
        "SELECT status, attempt_count FROM deliveries WHERE event_id = :e",
        e=event_id,
    )


def _attempts(rex: RexServer, event_id: str) -> list[Any]:
    return sql(
        rex.database_url,
        "SELECT a.status_code, a.error FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
        "WHERE d.event_id = :e ORDER BY a.at",
        e=event_id,
    )


def test_events_arrive_signed_with_the_secret_listen_printed(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url("/webhooks/rex"), cwd=tmp_path) as listen:
        assert listen.secret.startswith("whsec_")
        with rex.client() as client:
            contact = client.post("/contacts", json={"email": "ann@example.com"}).json()["data"]
        [request] = receiver.wait_for(1, timeout=30)
        event = request.json()
        assert event["event"] == "contact.created"
        assert event["data"]["id"] == contact["id"]
        # A normal signed delivery: the headers a worker sends, signed with the session's secret.
        rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], listen.secret)
        assert (
            rexlib.construct_event(request.body, request.headers["X-Rex-Signature"], listen.secret)
            == event
        )
        with pytest.raises(rexlib.SignatureError):
            rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], "whsec_no")
        standardwebhooks.Webhook(listen.secret).verify(request.body, dict(request.headers))
        assert request.headers["X-Rex-Event"] == "contact.created"
        assert request.headers["X-Rex-Event-Id"] == event["id"]
        assert request.headers["X-Rex-Delivery-Id"].startswith("dlv_")
        assert request.headers["User-Agent"].startswith("Rex-Webhooks/")
        assert request.headers["Content-Type"] == "application/json"
        assert request.path == "/webhooks/rex"

        # One line per delivery: time, event, id, status, latency.
        [line] = listen.wait_for_line(rf"contact\.created\s+{event['id']}\s+--> 200\s+\(\d+ ms\)")
        assert line.string[:4].isdigit()
        # The attempt is recorded like a worker's.
        wait_until(lambda: _deliveries(rex, event["id"]) == [("delivered", 1)], timeout=30)
        assert _attempts(rex, event["id"]) == [(200, None)]


def test_a_failing_local_url_is_retried_on_the_normal_schedule(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.respond_with(500)
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url(), cwd=tmp_path) as listen:
        with rex.client() as client:
            client.post("/contacts", json={"email": "bo@example.com"}).raise_for_status()
        first, second = receiver.wait_for(2, timeout=30)
        event_id = first.headers["X-Rex-Event-Id"]
        assert second.headers["X-Rex-Event-Id"] == event_id  # the same event, again
        for request in (first, second):
            rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], listen.secret)
        listen.wait_for_line(rf"{event_id}\s+--> 500\s+\(\d+ ms\)\s+retry at \S+Z")
        listen.wait_for_line(rf"{event_id}\s+--> 200\s+\(\d+ ms\)\s+attempt 2")
    wait_until(lambda: _deliveries(rex, event_id) == [("delivered", 2)], timeout=30)
    assert _attempts(rex, event_id) == [(500, None), (200, None)]


def test_an_unreachable_local_url_fails_after_the_last_retry(
    rex: RexServer, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    env = client_env(rex.url, rex.key)
    with listening(env, closed, cwd=tmp_path) as listen:
        with rex.client() as client:
            client.post("/contacts", json={"email": "cy@example.com"}).raise_for_status()
        [last] = listen.wait_for_line(r"--> error: cannot connect.*failed: no retries left")
    event_id = last.string.split()[3]
    # The first attempt and the three retries of the schedule, each with its error.
    assert _deliveries(rex, event_id) == [("failed", 4)]
    attempts = _attempts(rex, event_id)
    assert len(attempts) == 4
    assert all(code is None and "cannot connect" in error for code, error in attempts)


def test_only_the_chosen_events_are_forwarded(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url(), "--events", "contact.updated", cwd=tmp_path) as listen:
        assert "Forwarding events (contact.updated)" in "\n".join(listen.lines())
        with rex.client() as client:
            contact = client.post("/contacts", json={"email": "di@example.com"}).json()["data"]
            client.patch(f"/contacts/{contact['id']}", json={"first_name": "Di"})
        [request] = receiver.wait_for(1, timeout=30)
        assert request.json()["event"] == "contact.updated"
    # The session was never queued the contact.created: only matching events get a delivery.
    [(session_id,)] = sql(rex.database_url, "SELECT id FROM endpoints WHERE kind = 'listen'")
    types = sql(
        rex.database_url, "SELECT event_type FROM deliveries WHERE endpoint_id = :s", s=session_id
    )
    assert types == [("contact.updated",)]


def test_restart_resumes_the_session_and_delivers_what_it_missed(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url(), cwd=tmp_path) as first:
        secret = first.secret
    with rex.client() as client:  # while nothing listens
        for email in ("e1@example.com", "e2@example.com"):
            client.post("/contacts", json={"email": email}).raise_for_status()
    receiver.assert_no_requests()
    with listening(env, receiver.url(), cwd=tmp_path) as second:
        assert second.secret == secret
        assert any("Resumed the existing session; 2 event(s)" in ln for ln in second.lines())
        requests = receiver.wait_for(2, timeout=30)
        assert sorted(r.json()["data"]["email"] for r in requests) == [
            "e1@example.com",
            "e2@example.com",
        ]
        for request in requests:
            rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], secret)


def test_a_second_listen_takes_over_and_the_first_stops(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    settings = make_settings(database_url, listen_keepalive=0.5)
    with serve_rex(settings) as rex:
        _takeover(rex, receiver, tmp_path)


def _takeover(rex: RexServer, receiver: Receiver, tmp_path: Path) -> None:
    env = client_env(rex.url, rex.key)
    with (
        listening(env, receiver.url(), cwd=tmp_path) as first,
        listening(env, receiver.url(), cwd=tmp_path) as second,
    ):
        assert second.secret == first.secret
        # The first stream learns it was replaced at its next heartbeat.
        code = first.process.wait(60)
        assert code == 1
        first.stop()
        [line] = first.lines("stderr")[-1:]
        assert line.startswith("rex: another `rex listen`")
        with rex.client() as client:
            client.post("/contacts", json={"email": "fo@example.com"}).raise_for_status()
        [request] = receiver.wait_for(1, timeout=30)
        second.wait_for_line(request.headers["X-Rex-Event-Id"] + r"\s+--> 200")


def test_listen_sessions_are_not_webhooks_and_show_their_state(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url(), cwd=tmp_path), rex.client() as client:
        assert client.get("/webhooks").json()["data"] == []
        [session] = client.get("/listen/sessions").json()["data"]
        assert session["connected"] is True and session["expires_at"] is None
        assert session["forward_to"] == receiver.url()
        assert client.get(f"/webhooks/{session['id']}").status_code == 404
        assert client.post(f"/webhooks/{session['id']}/test").status_code == 404
    with rex.client() as client:
        after = client.get(f"/listen/sessions/{session['id']}").json()["data"]
    assert after["connected"] is False and after["expires_at"].endswith("Z")


def test_trigger_webhook_test_reaches_listen_sessions(
    rex: RexServer, receiver: Receiver, tmp_path: Path
) -> None:
    env = client_env(rex.url, rex.key)
    with listening(env, receiver.url(), cwd=tmp_path) as listen:
        result = run_rex("trigger", "webhook.test", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        [request] = receiver.wait_for(1, timeout=30)
        assert request.json()["event"] == "webhook.test"
        rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], listen.secret)


def test_listen_fails_fast_with_one_line_errors(rex: RexServer, tmp_path: Path) -> None:
    good = client_env(rex.url, rex.key)
    wrong_key = client_env(rex.url, "rex_sk_wrong")
    assert_one_line_error(
        run_rex("listen", "--forward-to", "http://127.0.0.1:9/x", env=wrong_key, cwd=tmp_path),
        "authentication failed",
    )
    assert_one_line_error(
        run_rex("listen", "--forward-to", "ftp://127.0.0.1/x", env=good, cwd=tmp_path),
        "--forward-to must be an http:// or https:// URL",
    )
    assert_one_line_error(
        run_rex(
            "listen", "--forward-to", "http://127.0.0.1:9/x", "--events", "nope", env=good,
            cwd=tmp_path,
        ),
        "unknown event type(s) nope",
    )  # fmt: skip
    no_key = {k: v for k, v in good.items() if k != "REX_API_KEY"}
    assert_one_line_error(
        run_rex("listen", "--forward-to", "http://127.0.0.1:9/x", env=no_key, cwd=tmp_path),
        "REX_API_KEY is not set",
    )


def test_print_secret_prints_the_session_secret_alone(rex: RexServer, tmp_path: Path) -> None:
    env = client_env(rex.url, rex.key)
    url = "http://127.0.0.1:3000/webhooks/rex"
    first = run_rex("listen", "--forward-to", url, "--print-secret", env=env, cwd=tmp_path)
    again = run_rex("listen", "--forward-to", url, "--print-secret", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("whsec_") and "\n" not in first.stdout.strip()
    assert again.stdout == first.stdout


# -- the API under `rex listen` ---------------------------------------------------------


def _open(client: httpx.Client, forward_to: str = "http://127.0.0.1:3000/hook", **body: Any) -> Any:
    return client.post("/listen/sessions", json={"forward_to": forward_to, **body})


def test_open_resume_and_isolation(rex: RexServer) -> None:
    with rex.client() as client:
        created = _open(client, events=["contact.created"])
        assert created.status_code == 201, created.text
        session = created.json()["data"]
        assert session["id"].startswith("wh_") and session["secret"].startswith("whsec_")
        assert session["resumed"] is False and session["events"] == ["contact.created"]
        assert session["grace_period"] == 600 and session["connected"] is False
        client.post("/contacts", json={"email": "q@example.com"}).raise_for_status()
        resumed = _open(client, events="*")
        assert resumed.status_code == 200
        again = resumed.json()["data"]
        assert (again["id"], again["secret"]) == (session["id"], session["secret"])
        assert again["resumed"] is True and again["pending"] == 1 and again["events"] == ["*"]
        # Another URL, or another key of the workspace: another session.
        assert _open(client, "http://127.0.0.1:3001/hook").json()["data"]["id"] != session["id"]
    with rex.client(key=rex.key_for("default")) as same_workspace:
        assert _open(same_workspace).json()["data"]["id"] != session["id"]
    with rex.client(key=rex.key_for("other")) as other:
        sid = session["id"]
        assert other.get(f"/listen/sessions/{sid}").status_code == 404
        assert other.get(f"/listen/sessions/{sid}/stream").status_code == 404
        assert other.post(f"/listen/sessions/{sid}/test").status_code == 404
        report = {"delivery_id": "dlv_x", "lease": "x", "status_code": 200, "latency_ms": 1}
        assert other.post(f"/listen/sessions/{sid}/results", json=report).status_code == 404
        assert other.delete(f"/listen/sessions/{sid}").status_code == 404
        assert other.get("/listen/sessions").json()["data"] == []
    with httpx.Client(base_url=rex.url) as anonymous:
        assert _open(anonymous).status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"forward_to": "ftp://127.0.0.1/x"},
        {"forward_to": "127.0.0.1:3000"},
        {"forward_to": ""},
        {"forward_to": "http://127.0.0.1/x", "events": ["nope"]},
        {"forward_to": "http://127.0.0.1/x", "events": []},
        {"forward_to": "http://127.0.0.1/x", "secret": "mine"},
        {},
    ],
)
def test_bad_session_requests_are_422_and_write_nothing(rex: RexServer, body: Any) -> None:
    with rex.client() as client:
        response = client.post("/listen/sessions", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "invalid_request"
    assert sql(rex.database_url, "SELECT count(*) FROM endpoints") == [(0,)]


def _stream(
    client: httpx.Client, session_id: str
) -> Generator[tuple[str, dict[str, Any]], None, None]:
    with client.stream("GET", f"/listen/sessions/{session_id}/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert event is not None
                yield event, json.loads(line.removeprefix("data: "))


def test_the_stream_protocol(rex: RexServer) -> None:
    with rex.client() as client:
        session = _open(client).json()["data"]
        contact = client.post("/contacts", json={"email": "s@example.com"}).json()["data"]
        stream = _stream(client, session["id"])
        event, ready = next(stream)
        assert event == "ready" and ready["session"] == session["id"]
        event, delivery = next(stream)
        assert event == "delivery"
        payload = delivery["payload"].encode()
        assert json.loads(payload)["data"]["id"] == contact["id"]
        assert delivery["attempt"] == 1 and delivery["event"] == "contact.created"
        rexlib.verify_signature(payload, delivery["headers"]["X-Rex-Signature"], session["secret"])
        assert delivery["headers"]["X-Rex-Delivery-Id"] == delivery["id"]
        stream.close()

        base = {"delivery_id": delivery["id"], "lease": delivery["lease"], "latency_ms": 3}
        bad = client.post(f"/listen/sessions/{session['id']}/results", json=base)
        assert bad.status_code == 422  # neither a status nor an error
        unknown = client.post(
            f"/listen/sessions/{session['id']}/results",
            json={**base, "delivery_id": "dlv_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", "status_code": 200},
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "delivery_id"
        # The stream ended, so its lease was released; a late report is still recorded.
        report = {**base, "status_code": 503, "retry_after": 0, "response_excerpt": "x" * 3000}
        late = client.post(f"/listen/sessions/{session['id']}/results", json=report)
        assert late.status_code == 200, late.text
    [(code, excerpt_length)] = sql(
        rex.database_url,
        "SELECT status_code, length(response_excerpt) FROM attempts WHERE delivery_id = :d",
        d=delivery["id"],
    )
    assert (code, excerpt_length) == (503, 1024)


def test_a_report_moves_the_delivery_on_while_the_lease_is_held(rex: RexServer) -> None:
    with rex.client() as client:
        session = _open(client).json()["data"]
        client.post("/contacts", json={"email": "t@example.com"}).raise_for_status()
        stream = _stream(client, session["id"])
        next(stream)
        _, delivery = next(stream)
        report = {
            "delivery_id": delivery["id"],
            "lease": delivery["lease"],
            "status_code": 204,
            "latency_ms": 5,
        }
        with rex.client() as other_connection:
            done = other_connection.post(f"/listen/sessions/{session['id']}/results", json=report)
            assert done.status_code == 200
            assert done.json()["data"]["status"] == "delivered"
            # Reported twice: unchanged, no second attempt.
            twice = other_connection.post(f"/listen/sessions/{session['id']}/results", json=report)
            assert twice.json()["data"]["attempt_count"] == 1
        stream.close()


def test_expired_sessions_are_removed_with_their_deliveries(database_url: str) -> None:
    # The session must outlive one POST and one count (a margin a loaded machine honours),
    # or the capture finds no session and the removal of its delivery is not tested.
    settings = make_settings(database_url, listen_grace_period=5.0)
    with serve_rex(settings) as rex, rex.client() as client:
        session = _open(client).json()["data"]
        client.post("/contacts", json={"email": "x@example.com"}).raise_for_status()
        assert sql(database_url, "SELECT count(*) FROM deliveries") == [(1,)]

        def removed() -> bool:
            rows = sql(database_url, "SELECT count(*) FROM endpoints WHERE kind = 'listen'")
            return rows == [(0,)]

        wait_until(removed, timeout=30, interval=0.2)
        assert sql(database_url, "SELECT count(*) FROM deliveries") == [(0,)]
        assert sql(database_url, "SELECT count(*) FROM listen_sessions") == [(0,)]
        assert client.get(f"/listen/sessions/{session['id']}").status_code == 404
        fresh = _open(client)
        assert fresh.status_code == 201 and fresh.json()["data"]["secret"] != session["secret"]


def test_a_replaced_stream_is_told_so(database_url: str) -> None:
    settings = make_settings(database_url, listen_keepalive=0.3)
    with serve_rex(settings) as rex, rex.client() as client, rex.client() as second_client:
        session = _open(client).json()["data"]
        first = _stream(client, session["id"])
        assert next(first)[0] == "ready"
        second = _stream(second_client, session["id"])
        assert next(second)[0] == "ready"
        event, message = next(first)
        assert event == "superseded" and "Another rex listen" in message["message"]
        with pytest.raises(StopIteration):
            next(first)  # and the stream ends
        second.close()


def test_delete_ends_a_session(rex: RexServer) -> None:
    with rex.client() as client:
        session = _open(client).json()["data"]
        client.post("/contacts", json={"email": "del@example.com"}).raise_for_status()
        deleted = client.delete(f"/listen/sessions/{session['id']}")
        assert deleted.json() == {"data": {"id": session["id"], "deleted": True}}
        assert client.get(f"/listen/sessions/{session['id']}/stream").status_code == 404
    assert sql(rex.database_url, "SELECT count(*) FROM deliveries") == [(0,)]
