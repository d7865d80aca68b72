"""An endpoint's delivery options (issue 16): its own headers, a rate limit that holds across
workers, a filter evaluated when the event is recorded, and your own event types published
through POST /events. Real receivers on 127.0.0.1, both backends."""

from __future__ import annotations

import collections
import subprocess
import time
from pathlib import Path

import httpx
import pytest

import rex as rexlib
from tests.cli import assert_one_line_error, client_env, run_json, run_rex
from tests.receiver import Receiver
from tests.support import (
    RexServer,
    api_key,
    free_port,
    rex_process,
    sql,
    stop_process,
    truncate_all,
    wait_until,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def subscribe(client: httpx.Client, url: str, **options: object) -> dict:
    body = {"url": url, "events": ["*"], "secret": SECRET, **options}
    response = client.post("/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def test_headers_arrive_are_masked_and_rex_own_are_refused(
    rex: RexServer, receiver: Receiver
) -> None:
    token = "Bearer s3cr3t-token-0123456789-ab12"
    with rex.client() as client:
        endpoint = subscribe(
            client,
            receiver.url(),
            events=["contact.created"],
            headers={"Authorization": token, "X-Tenant": "acme"},
        )
        assert endpoint["headers"] == {"Authorization": "••••••ab12", "X-Tenant": "••••••"}
        assert client.get(f"/webhooks/{endpoint['id']}").json()["data"]["headers"] == {
            "Authorization": "••••••ab12",
            "X-Tenant": "••••••",
        }
        client.post("/contacts", json={"email": "h1@example.com"}).raise_for_status()
        [first] = receiver.wait_for(1)
        assert first.headers["Authorization"] == token
        assert first.headers["X-Tenant"] == "acme"
        assert first.headers["Content-Type"] == "application/json"  # Rex's own still there
        rexlib.verify_signature(first.body, first.headers["X-Rex-Signature"], SECRET)

        # PATCH merges: a null value removes one header, others are kept or replaced.
        patched = client.patch(
            f"/webhooks/{endpoint['id']}",
            json={"headers": {"x-tenant": None, "X-Region": "eu-west-1"}},
        )
        assert patched.status_code == 200, patched.text
        assert set(patched.json()["data"]["headers"]) == {"Authorization", "X-Region"}
        client.post("/contacts", json={"email": "h2@example.com"}).raise_for_status()
        second = receiver.wait_for(2)[1]
        assert "X-Tenant" not in second.headers
        assert second.headers["X-Region"] == "eu-west-1"
        assert second.headers["Authorization"] == token

        # Rex's own names (any case), connection headers and broken values: 422, by name.
        for headers in (
            {"Content-Type": "text/plain"},
            {"content-length": "1"},
            {"HOST": "example.com"},
            {"User-Agent": "x"},
            {"X-Rex-Signature": "forged"},
            {"webhook-id": "msg_1"},
            {"Transfer-Encoding": "chunked"},
            {"Connection": "close"},
            {"X-Ok": "a\r\nX-Injected: 1"},
            {"Bad Name": "x"},
        ):
            for method, path, body in (
                ("POST", "/webhooks", {"url": receiver.url(), "events": ["*"]}),
                ("PATCH", f"/webhooks/{endpoint['id']}", {}),
            ):
                response = client.request(method, path, json={**body, "headers": headers})
                assert response.status_code == 422, (method, headers, response.text)
                error = response.json()["error"]
                assert error["field"] == "headers"
                assert next(iter(headers)) in error["message"] or "header" in error["message"]
        assert len(client.get("/webhooks").json()["data"]) == 1
    # Stored encrypted, like the secret: the token is nowhere in the database in clear.
    [(stored,)] = sql(rex.database_url, "SELECT headers FROM endpoints")
    assert stored.startswith("fernet:") and "s3cr3t" not in stored


def test_a_filter_decides_when_the_event_is_recorded(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        for bad in (
            {"data.source": {"nested": "object"}},
            {"data..source": "x"},
            {"data.stage": []},
            ["data.source"],
        ):
            response = client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["*"], "filter": bad}
            )
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["error"]["field"] == "filter"

        wanted = {"data.source": "organic", "data.stage": ["customer", "lead"]}
        filtered = subscribe(
            client, receiver.url("/filtered"), events=["contact.created"], filter=wanted
        )
        assert filtered["filter"] == wanted
        everything = subscribe(client, receiver.url("/all"), events=["contact.created"])
        for email, source, stage in (
            ("a@example.com", "organic", "lead"),  # matches
            ("b@example.com", "ads", "lead"),  # wrong source
            ("c@example.com", "organic", "churned"),  # stage not in the list
            ("d@example.com", None, "customer"),  # source missing (null)
            ("e@example.com", "organic", "customer"),  # matches
        ):
            body = {"email": email, "stage": stage, **({"source": source} if source else {})}
            assert client.post("/contacts", json=body).status_code == 201

        receiver.wait_for(5, path="/all")
        got = receiver.wait_for(2, path="/filtered")
        assert sorted(r.json()["data"]["email"] for r in got) == ["a@example.com", "e@example.com"]
        # No delivery row at all for the events the filter turned away.
        rows = sql(
            rex.database_url,
            "SELECT count(*) FROM deliveries WHERE endpoint_id = :id",
            id=filtered["id"],
        )
        assert rows == [(2,)]

        # A test event ignores the filter.
        test = client.post(f"/webhooks/{filtered['id']}/test")
        assert test.status_code == 202
        receiver.wait_for(3, path="/filtered")

        # PATCH filter: null removes it; every event is delivered again.
        assert (
            client.patch(f"/webhooks/{filtered['id']}", json={"filter": None}).json()["data"][
                "filter"
            ]
            is None
        )
        client.post("/contacts", json={"email": "f@example.com", "source": "ads"})
        receiver.wait_for(4, path="/filtered")
        assert everything["filter"] is None


def test_your_own_event_type_is_published_validated_and_delivered(
    rex: RexServer, receiver: Receiver
) -> None:
    schema = {
        "type": "object",
        "required": ["invoice_id", "amount"],
        "properties": {
            "invoice_id": {"type": "string"},
            "amount": {"type": "integer", "minimum": 0},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
        },
    }
    with rex.client() as client:
        created = client.post(
            "/event-types",
            json={"name": "invoice.paid", "description": "An invoice was paid.", "schema": schema},
        )
        assert created.status_code == 201, created.text
        event_type = created.json()["data"]
        assert event_type["id"].startswith("et_") and event_type["builtin"] is False

        # Names: lower-case dotted, not built in, not twice; schemas must be schemas.
        for body, status in (
            ({"name": "contact.created"}, 409),
            ({"name": "invoice.paid"}, 409),
            ({"name": "Invoice.Paid"}, 422),
            ({"name": "invoice"}, 422),
            ({"name": "invoice.paid-late"}, 422),
            ({"name": "invoice.voided", "schema": {"type": "no-such-type"}}, 422),
            ({"name": "invoice.voided", "schema": {"$ref": "https://example.com/s.json"}}, 422),
        ):
            response = client.post("/event-types", json=body)
            assert response.status_code == status, (body, response.text)

        listed = client.get("/event-types").json()["data"]
        builtin = {t["name"] for t in listed if t["builtin"]}
        assert {"contact.created", "deal.stage_changed"} <= builtin
        assert [t["name"] for t in listed if not t["builtin"]] == ["invoice.paid"]
        assert client.get("/event-types/invoice.paid").json()["data"]["schema"] == schema
        by_id = client.get(f"/event-types/{event_type['id']}").json()["data"]
        assert by_id["name"] == "invoice.paid"
        assert client.get("/event-types/contact.created").json()["data"]["builtin"] is True

        # Subscriptions name it like any other type; an undeclared one is refused.
        refused = client.post(
            "/webhooks", json={"url": receiver.url(), "events": ["invoice.refunded"]}
        )
        assert refused.status_code == 422 and "invoice.refunded" in refused.text
        endpoint = subscribe(client, receiver.url(), events=["invoice.paid"])

        # Data that breaks the schema: 422 naming the path; nothing recorded.
        broken = client.post(
            "/events",
            json={"type": "invoice.paid", "data": {"invoice_id": "in_1", "amount": -5}},
        )
        assert broken.status_code == 422, broken.text
        assert broken.json()["error"]["field"] == "data"
        assert "data.amount" in broken.json()["error"]["message"]
        nested = client.post(
            "/events",
            json={
                "type": "invoice.paid",
                "data": {"invoice_id": "in_1", "amount": 5, "lines": [{"sku": "a"}, {}]},
            },
        )
        assert nested.status_code == 422 and "data.lines[1]" in nested.text
        unknown = client.post("/events", json={"type": "invoice.lost", "data": {}})
        assert unknown.status_code == 404
        forged = client.post("/events", json={"type": "contact.created", "data": {}})
        assert forged.status_code == 422
        assert sql(rex.database_url, "SELECT count(*) FROM events") == [(0,)]

        data = {"invoice_id": "in_1042", "amount": 4900}
        headers = {"Idempotency-Key": "publish-in_1042"}
        body = {"type": "invoice.paid", "data": data, "object_id": "in_1042"}
        published = client.post("/events", json=body, headers=headers)
        assert published.status_code == 201, published.text
        event = published.json()["data"]
        assert event["event"] == "invoice.paid" and event["data"] == data
        assert [d["endpoint_id"] for d in event["deliveries"]] == [endpoint["id"]]
        replay = client.post("/events", json=body, headers=headers)
        assert replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json()["data"]["id"] == event["id"]

        [request] = receiver.wait_for(1)
        rexlib.verify_signature(request.body, request.headers["X-Rex-Signature"], SECRET)
        assert request.json() == {
            "id": event["id"],
            "event": "invoice.paid",
            "timestamp": event["timestamp"],
            "data": data,
        }
        assert request.headers["X-Rex-Event"] == "invoice.paid"
        listed_events = client.get("/events", params={"type": "invoice.paid"}).json()["data"]
        assert [e["id"] for e in listed_events] == [event["id"]]

        # Archived: no longer published, no longer subscribable; listed on request.
        assert client.delete("/event-types/invoice.paid").json()["data"]["archived"] is True
        assert client.post("/events", json={**body, "object_id": None}).status_code == 422
        assert [t for t in client.get("/event-types").json()["data"] if not t["builtin"]] == []
        assert len(client.get("/event-types?include_archived=true").json()["data"]) == len(listed)
    assert len(receiver.requests) == 1


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, log.read_text()
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _windows(arrivals: list[float], start: float) -> collections.Counter[int]:
    return collections.Counter(int(at - start) for at in arrivals)


def _assert_rate(arrivals: list[float], started: float, rate: int) -> None:
    """Never more than ``rate`` in any one-second window counted from the first arrival (+2:
    one for where the windows fall, one for a sender paused past its slot by a loaded
    machine), and the slots spread over at least (n - 1) / rate seconds after the events
    existed. Both are bounds: a fast machine cannot break them, a slow one only spreads
    the arrivals further."""
    arrivals = sorted(arrivals)
    busiest = max(_windows(arrivals, arrivals[0]).values())
    assert busiest <= rate + 2, _windows(arrivals, arrivals[0])
    assert arrivals[-1] - started >= (len(arrivals) - 1) / rate - 0.05


def test_rate_limit_spaces_deliveries(rex: RexServer, receiver: Receiver) -> None:
    with rex.client() as client:
        endpoint = subscribe(
            client, receiver.url(), events=["contact.created"], rate_limit=5, max_concurrency=10
        )
        assert endpoint["rate_limit"] == 5
        started = time.time()
        for i in range(10):
            client.post("/contacts", json={"email": f"r{i}@example.com"}).raise_for_status()
        got = receiver.wait_for(10, timeout=30)
    _assert_rate([r.received_at for r in got], started, 5)


@pytest.mark.postgres
def test_rate_limit_holds_across_two_workers(postgres_url: str, tmp_path: Path) -> None:
    truncate_all(postgres_url)
    env = {
        "REX_DATABASE_URL": postgres_url,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_DELIVERY_POLL_INTERVAL": "0.2",
    }
    key = api_key(postgres_url)
    events = 20
    processes = []
    with Receiver() as receiver:
        try:
            port, log = free_port(), tmp_path / "api.log"
            api = rex_process(["serve", "--no-worker", "--port", str(port)], env, log)
            processes.append(api)
            workers = []
            for n in (1, 2):
                worker_log = tmp_path / f"worker{n}.log"
                processes.append(rex_process(["worker", "--concurrency", "8"], env, worker_log))
                workers.append(worker_log)
            url = f"http://127.0.0.1:{port}"
            # Generous: three processes start at once on a shared, loaded machine.
            wait_until(lambda: _answers(f"{url}/healthz", api, log), timeout=120, interval=0.2)
            for worker_log in workers:
                wait_until(lambda w=worker_log: "worker_started" in w.read_text(), timeout=120)
            with httpx.Client(base_url=url, headers={"X-Api-Key": key}, timeout=30) as client:
                subscribe(
                    client, receiver.url(), events=["contact.created"], rate_limit=5,
                    max_concurrency=20,
                )  # fmt: skip
                started = time.time()
                for i in range(events):
                    client.post("/contacts", json={"email": f"w{i}@example.com"}).raise_for_status()
                got = receiver.wait_for(events, timeout=60)
        finally:
            for process in processes:
                stop_process(process)
    _assert_rate([r.received_at for r in got], started, 5)
    assert len({r.headers["X-Rex-Event-Id"] for r in got}) == events


def test_rex_trigger_publishes_your_own_event_type(rex: RexServer, receiver: Receiver) -> None:
    schema = {
        "type": "object",
        "required": ["meeting_id"],
        "properties": {"meeting_id": {"type": "string"}},
        "examples": [{"meeting_id": "mtg_sample"}],
    }
    with rex.client() as client:
        client.post(
            "/event-types", json={"name": "meeting.booked", "schema": schema}
        ).raise_for_status()
        subscribe(client, receiver.url(), events=["meeting.booked"])
    env = client_env(rex.url, rex.key)
    # No --data: the first of the schema's examples.
    steps = run_json("trigger", "meeting.booked", env=env)
    assert [s["request"] for s in steps] == ["POST /events"]
    given = run_rex(
        "trigger", "meeting.booked", "--data", '{"meeting_id": "mtg_1"}', "--object-id", "mtg_1",
        env=env,
    )  # fmt: skip
    assert given.returncode == 0, given.stderr
    assert_one_line_error(
        run_rex("trigger", "meeting.booked", "--data", '{"meeting_id": 7}', env=env),
        "data.meeting_id",
    )
    assert_one_line_error(run_rex("trigger", "meeting.cancelled", env=env), "meeting.cancelled")
    got = receiver.wait_for(2)
    assert [r.json()["data"] for r in got] == [
        {"meeting_id": "mtg_sample"},
        {"meeting_id": "mtg_1"},
    ]
