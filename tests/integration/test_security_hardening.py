"""Issue 21, the security review: one regression test per finding, against a served Rex.

Every test here failed on the code the review read: /capture read stored values back and
answered 201/200, let anyone revoke consent and pad metadata without bound, quotas did not
exist, secrets were stored in plain text and replayed from idempotency records, SSRF
refusals named addresses, and two Host headers were accepted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from rex import verify_signature
from rex.db.engine import Database
from rex.ids import utcnow
from rex.worker.retention import prune_expired
from rex.worker.ssrf import DestinationPolicy
from rex.worker.transport import REFUSED, AiohttpTransport
from tests.receiver import Receiver, Respond
from tests.support import (
    REX_CLI,
    RexServer,
    StubResolver,
    first_key_from_log,
    free_port,
    make_settings,
    rex_process,
    run,
    serve_rex,
    sql,
    stop_process,
    wait_for_http,
    wait_until,
)

OPERATOR_FIELDS = {
    "email": "ceo@bigco.com",
    "first_name": "Carla",
    "phone": "+1 555 0100",
    "company": "BigCo",
    "metadata": {"internal_note": "churn risk; contract renewal 2027; discount 40%"},
}


def _capture(rex: RexServer, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{rex.url}/capture", json=body, timeout=30, **kwargs)


# -- 1. /capture is write-only for the public ----------------------------------------------


def test_capture_reads_nothing_back_and_known_and_new_answer_alike(rex: RexServer) -> None:
    with rex.client() as client:
        known = client.post("/contacts", json=OPERATOR_FIELDS).json()["data"]
        client.patch(f"/contacts/{known['id']}", json={"stage": "customer"}).raise_for_status()

    probe = _capture(rex, {"email": "  CEO@BigCo.com "})
    fresh = _capture(rex, {"email": "nobody@bigco.com"})

    assert probe.status_code == fresh.status_code == 201
    assert probe.headers["content-type"] == fresh.headers["content-type"]
    answer, new = probe.json()["data"], fresh.json()["data"]
    assert list(answer) == list(new)  # same shape
    assert answer["id"] == known["id"]
    assert answer["email"] == "ceo@bigco.com"  # the request's, normalised
    # Nothing the request did not carry: not the phone, company, stage or metadata.
    text = probe.text
    for stored in ("Carla", "555", "BigCo", "churn", "customer", known["created_at"]):
        assert stored not in text, stored
    assert answer["stage"] == "lead" and answer["first_name"] is None
    assert {k: v for k, v in answer.items() if k not in ("id", "email", "created_at")} == {
        k: v for k, v in new.items() if k not in ("id", "email", "created_at")
    }


# -- 2. anonymous captures cannot rewrite what matters -------------------------------------


def test_a_capture_cannot_revoke_consent_only_an_api_key_can(rex: RexServer) -> None:
    granted = {"email": "c@example.com", "consent": {"granted": True, "text": "News"}}
    contact_id = _capture(rex, granted).json()["data"]["id"]
    with rex.client() as client:
        before = client.get(f"/contacts/{contact_id}").json()["data"]["consent"]

    attack = {"email": "c@example.com", "consent": {"granted": False, "text": "News"}}
    assert _capture(rex, attack, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 201

    with rex.client() as client:
        assert client.get(f"/contacts/{contact_id}").json()["data"]["consent"] == before
        [record] = client.get(f"/contacts/{contact_id}/consent").json()["data"]
        assert (record["granted"], record["via"]) == (True, "capture")
        # The authenticated revocation appends; the grant stays in the history.
        revoked = client.post(
            f"/contacts/{contact_id}/consent", json={"granted": False, "text": "Unsubscribed"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["data"]["consent"]["granted"] is False
        history = client.get(f"/contacts/{contact_id}/consent").json()["data"]
    assert [(r["granted"], r["via"]) for r in history] == [(True, "capture"), (False, "api")]
    updates = sql(rex.database_url, "SELECT payload FROM events WHERE type = 'contact.updated'")
    assert len(updates) == 1  # the revocation; the anonymous attempt changed nothing


def test_metadata_and_every_contact_event_are_bounded_in_bytes(rex: RexServer) -> None:
    cap = rex.settings.max_contact_metadata_bytes
    for batch in range(4):  # ~50 KB each: 200 KB of padding before the cap existed
        padding = {f"k{batch}_{i}": "x" * 2000 for i in range(25)}
        response = _capture(rex, {"email": "pad@example.com", "metadata": padding})
        assert response.status_code in (201, 422), response.text
    for n in range(5):  # each flips last-touch attribution: one contact.updated each
        _capture(rex, {"email": "pad@example.com", "utm_source": f"s{n}"})

    [contact] = sql(rex.database_url, "SELECT metadata FROM contacts")
    stored = (
        contact.metadata if isinstance(contact.metadata, dict) else json.loads(contact.metadata)
    )
    assert len(json.dumps(stored, separators=(",", ":")).encode()) <= cap
    sizes = [len(r.payload.encode()) for r in sql(rex.database_url, "SELECT payload FROM events")]
    # data + previous_attributes: at most twice the capped metadata plus the bounded fields.
    assert max(sizes) <= 2 * cap + 48 * 1024, sizes


def test_one_capture_over_the_cap_is_refused_with_a_422(rex: RexServer) -> None:
    cap = rex.settings.max_contact_metadata_bytes
    big = {f"k{i}": "y" * 1500 for i in range(cap // 1500 + 2)}
    response = _capture(rex, {"email": "big@example.com", "metadata": big})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "metadata"
    assert "REX_MAX_CONTACT_METADATA_BYTES" in response.json()["error"]["message"]


def test_events_held_by_a_disabled_endpoint_are_pruned(database_url: str) -> None:
    settings = make_settings(database_url, retry_schedule=(3600.0,))
    with serve_rex(settings) as rex, rex.client() as client:
        hook = client.post(
            "/webhooks", json={"url": f"http://127.0.0.1:{free_port()}/x", "events": ["*"]}
        ).json()["data"]
        _capture(rex, {"email": "held@example.com"}).raise_for_status()
        wait_until(lambda: sql(database_url, "SELECT attempt_count FROM deliveries")[0][0])
        client.patch(f"/webhooks/{hook['id']}", json={"enabled": False}).raise_for_status()

    async def prune() -> int:
        db = Database(database_url)
        try:
            return await prune_expired(db, retention_days=1, now=utcnow() + timedelta(days=2))
        finally:
            await db.close()

    assert run(prune()) == 1
    assert sql(database_url, "SELECT count(*) FROM events")[0][0] == 0
    assert sql(database_url, "SELECT count(*) FROM deliveries")[0][0] == 0


# -- 3. quotas -----------------------------------------------------------------------------


def test_per_workspace_quotas_answer_409_and_429(database_url: str) -> None:
    settings = make_settings(
        database_url,
        max_endpoints_per_workspace=2,
        max_listen_sessions_per_workspace=2,
        max_streams_per_workspace=1,
    )
    with serve_rex(settings) as rex, rex.client() as client:
        for n in range(2):
            hook = {"url": f"http://127.0.0.1:9/{n}", "events": ["*"]}
            assert client.post("/webhooks", json=hook).status_code == 201
        refused = client.post("/webhooks", json={"url": "http://127.0.0.1:9/3", "events": ["*"]})
        assert refused.status_code == 409
        assert "REX_MAX_ENDPOINTS_PER_WORKSPACE" in refused.json()["error"]["message"]

        sessions = [
            client.post("/listen/sessions", json={"forward_to": f"http://127.0.0.1:9/{n}"})
            for n in range(3)
        ]
        assert [s.status_code for s in sessions] == [201, 201, 409]
        assert "REX_MAX_LISTEN_SESSIONS" in sessions[2].json()["error"]["message"]

        first, second = (s.json()["data"]["id"] for s in sessions[:2])
        with client.stream("GET", f"/listen/sessions/{first}/stream") as stream:
            assert stream.status_code == 200
            # Keep the iterator: a discarded one (`next(stream.iter_lines())`) is finalised at
            # once, which closes the connection, so the first stream used to end before the
            # second was asked for (a 200 whenever the server saw the close first).
            lines = stream.iter_lines()
            # `ready` is written after the stream took its slot: it is registered now.
            assert next(lines) == "event: ready"
            # Streamed, so that a stream wrongly let through fails here instead of hanging.
            with client.stream("GET", f"/listen/sessions/{second}/stream") as other:
                assert other.status_code == 429
                other.read()
            assert "REX_MAX_STREAMS_PER_WORKSPACE" in other.json()["error"]["message"]
            assert other.headers["retry-after"] == "5"
            # Still the first stream's: it was never cut.
            assert client.get(f"/listen/sessions/{first}").json()["data"]["connected"] is True

        # The first stream ended: its slot is free again (released once it has detached).
        def second_stream_status() -> int | None:
            with client.stream("GET", f"/listen/sessions/{second}/stream") as again:
                if again.status_code == 429:
                    again.read()
                    return None
                assert next(again.iter_lines()) == "event: ready"
                return again.status_code

        assert wait_until(second_stream_status, timeout=30, interval=0.2) == 200


def test_every_list_filter_has_an_index(database_url: str, rex: RexServer) -> None:
    async def indexes() -> dict[str, list[list[str]]]:
        db = Database(database_url)
        try:
            async with db.engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: {
                        table: [
                            list(ix["column_names"]) for ix in sa.inspect(sync).get_indexes(table)
                        ]
                        for table in ("contacts", "deals", "tasks", "events", "deliveries")
                    }
                )
        finally:
            await db.close()

    found = run(indexes())
    for table, columns in [
        ("events", ["workspace_id", "type", "id"]),
        ("deliveries", ["workspace_id", "status", "id"]),
        ("contacts", ["workspace_id", "stage", "id"]),
        ("deals", ["workspace_id", "stage", "id"]),
        ("deals", ["workspace_id", "status", "id"]),
        ("tasks", ["workspace_id", "status", "id"]),
    ]:
        assert columns in found[table], (table, columns)
    if database_url.startswith("sqlite"):
        [plan] = sql(
            database_url,
            "EXPLAIN QUERY PLAN SELECT id FROM events WHERE workspace_id = 'w' AND type = 't'"
            " ORDER BY id DESC LIMIT 20",
        )
        assert "ix_events_workspace_id_type_id" in plan[-1], plan


# -- rex serve: the real command ------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Any:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        "REX_DATABASE_URL": f"sqlite:///{tmp_path}/data/rex.db",
        "REX_REQUEST_READ_TIMEOUT": "1",
        "REX_MAX_CONNECTIONS": "4",
        "REX_SECRET_KEY": "",
        "REX_SECRET_KEY_FILE": "",
    }
    process = rex_process(["serve", "--port", str(port)], env, log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process, log)
        yield {"port": port, "log": log, "dir": tmp_path / "data"}
    finally:
        stop_process(process)


def _raw(port: int, request: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in request:
                break
        return b"".join(chunks)


def test_rex_serve_files_key_and_host_handling(served: dict[str, Any]) -> None:
    port, folder = served["port"], served["dir"]
    # The first key is not in the log (a service's log); it is in a 0600 file.
    key = first_key_from_log(served["log"].read_text())
    assert key.startswith("rex_")
    assert (folder / "rex.db").stat().st_mode & 0o777 == 0o600
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "rex.db.key").stat().st_mode & 0o777 == 0o600

    two_hosts = (
        b"GET /healthz HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n"
    )
    assert _raw(port, two_hosts).startswith(b"HTTP/1.1 400")
    mismatch = (
        b"GET http://acme.other.test/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert _raw(port, mismatch).startswith(b"HTTP/1.1 400")
    same = (
        f"GET http://127.0.0.1:{port}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    assert _raw(port, same).startswith(b"HTTP/1.1 200")


def test_rex_serve_closes_a_slowloris_and_caps_connections(served: dict[str, Any]) -> None:
    port = served["port"]
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    closed_after = None
    try:
        sock.settimeout(0.3)
        sock.sendall(b"POST /capture HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(30):  # one header byte every 0.3 s, for at most 9 s
            try:
                sock.sendall(b"X")
                if sock.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    finally:
        sock.close()
    assert closed_after is not None and closed_after < 5, closed_after  # deadline: 1 s

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        answer = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
    finally:
        for s in idle:
            s.close()


# -- 4. secrets ------------------------------------------------------------------------------


def test_signing_secrets_are_encrypted_at_rest_and_still_sign(
    database_url: str, receiver: Receiver
) -> None:
    secret = "whsec_" + "s" * 40
    with serve_rex(make_settings(database_url)) as rex:
        with rex.client() as client:
            created = client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["*"], "secret": secret}
            )
            assert created.status_code == 201
        [row] = sql(database_url, "SELECT secret FROM endpoints")
        assert secret not in row.secret and row.secret.startswith("fernet:")
        _capture(rex, {"email": "enc@example.com"}).raise_for_status()
        [request] = receiver.wait_for(1)
        verify_signature(request.body, request.headers["X-Rex-Signature"], secret)

        # A plain-text secret from before 0006 keeps signing and is encrypted at start-up.
        sql(database_url, "UPDATE endpoints SET secret = :s", s=secret)
    with serve_rex(make_settings(database_url)) as rex:
        [row] = sql(database_url, "SELECT secret FROM endpoints")
        assert row.secret.startswith("fernet:")
        _capture(rex, {"email": "enc2@example.com"}).raise_for_status()
        second = receiver.wait_for(2)[1]
        verify_signature(second.body, second.headers["X-Rex-Signature"], secret)


def test_a_wrong_secret_key_refuses_to_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rex.db"
    with serve_rex(make_settings(url)) as rex, rex.client() as client:
        client.post("/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]})
    (tmp_path / "rex.db.key").write_text("bm90LXRoZS1rZXktbm90LXRoZS1rZXktbm90LXRoZS0=\n")

    async def start() -> None:
        db = Database(url)
        try:
            await db.migrate()
        finally:
            await db.close()

    with pytest.raises(RuntimeError, match="does not decrypt"):
        run(start())


def test_idempotency_records_never_hold_a_secret_and_expire(rex: RexServer) -> None:
    body = {"url": "http://127.0.0.1:9/idem", "events": ["*"]}
    headers = {"Idempotency-Key": "create-hook-1"}
    with rex.client() as client:
        first = client.post("/webhooks", json=body, headers=headers)
        secret = first.json()["data"]["secret"]
        replay = client.post("/webhooks", json=body, headers=headers)
        rotated = client.post(
            f"/webhooks/{first.json()['data']['id']}/rotate-secret",
            json={},
            headers={"Idempotency-Key": "rotate-1"},
        )
    stored = [r.response_body for r in sql(rex.database_url, "SELECT * FROM idempotency_keys")]
    assert len(stored) == 2
    assert not any(secret in s or rotated.json()["data"]["secret"] in s for s in stored)
    assert replay.status_code == 409
    assert replay.json()["error"]["type"] == "idempotent_replay_withheld"
    assert len(sql(rex.database_url, "SELECT id FROM endpoints")) == 1  # not created twice

    async def prune() -> int:
        db = Database(rex.database_url)
        try:
            return await prune_expired(db, retention_days=30, now=utcnow() + timedelta(hours=25))
        finally:
            await db.close()

    run(prune())
    assert sql(rex.database_url, "SELECT count(*) FROM idempotency_keys")[0][0] == 0


def test_chosen_secrets_need_32_characters_but_the_seeds_placeholders_work(
    rex: RexServer,
) -> None:
    with rex.client() as client:
        short = client.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"], "secret": "s" * 31}
        )
        assert short.status_code == 422
        assert "32 characters" in short.json()["error"]["message"]
        for placeholder in ("whsec_your_signing_secret", "whsec_test_secret"):
            seed = client.post(
                "/webhooks",
                json={"url": "http://127.0.0.1:9/", "events": ["*"], "secret": placeholder},
            )
            assert seed.status_code == 201, seed.text
        hook = seed.json()["data"]["id"]
        rotate = client.post(f"/webhooks/{hook}/rotate-secret", json={"secret": "r" * 20})
        assert rotate.status_code == 422


# -- 6. SSRF errors --------------------------------------------------------------------------


def test_refusals_are_generic_and_internal_answers_are_not_stored(
    database_url: str, receiver: Receiver
) -> None:
    receiver.set_default(Respond(500, body=b"internal admin panel: secret-token-123"))
    # gone.test is not in the table: it fails like NXDOMAIN.
    resolver = StubResolver({"meta.test": ["169.254.169.254"], "admin.test": ["127.0.0.1"]})
    settings = make_settings(
        database_url,
        allow_private_destinations=False,
        allowed_networks=["127.0.0.0/8"],
        retry_schedule=(),
    )
    policy = DestinationPolicy(allowed_networks=["127.0.0.0/8"])
    transport = AiohttpTransport(policy, resolver=resolver)
    with serve_rex(settings, transport=transport) as rex:
        with rex.client() as client:
            for name in ("meta.test", "gone.test", "admin.test"):
                url = f"http://{name}:{receiver.port}/hook"
                assert client.post("/webhooks", json={"url": url, "events": ["*"]}).is_success
        _capture(rex, {"email": "probe@example.com"}).raise_for_status()
        wait_until(lambda: len(sql(database_url, "SELECT id FROM attempts")) == 3, timeout=30)
        with rex.client() as client:
            shown = [
                client.get(f"/deliveries/{d.id}").json()["data"]
                for d in sql(database_url, "SELECT id FROM deliveries")
            ]
    attempts = [a for d in shown for a in d["attempts"]]
    errors = sorted(a["error"] or "" for a in attempts)
    assert errors == ["", REFUSED, REFUSED]  # no address, no DNS-versus-refused oracle
    [answered] = [a for a in attempts if a["status_code"] == 500]
    assert not answered["response_excerpt"]  # allowed only by REX_ALLOWED_NETWORKS


# -- 7. Host handling (any server) -----------------------------------------------------------


def test_two_host_headers_are_a_400(rex: RexServer) -> None:
    port = int(rex.url.rsplit(":", 1)[1])
    request = (
        b"POST /capture HTTP/1.1\r\nHost: acme.example\r\nHost: other.example\r\n"
        b"Content-Type: application/json\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
        b'{"email": "h@example.com"}\n'
    )
    answer = _raw(port, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Host" in answer
    assert sql(rex.database_url, "SELECT count(*) FROM contacts")[0][0] == 0


def test_rotating_the_secret_key_with_rex_secrets_rotate_key(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/rex.db"
    old, new = (Fernet.generate_key().decode() for _ in range(2))
    secret = "whsec_" + "r" * 40
    monkeypatch.setenv("REX_SECRET_KEY", old)
    with serve_rex(make_settings(url)) as rex, rex.client() as client:
        hook = {"url": receiver.url(), "events": ["*"], "secret": secret}
        assert client.post("/webhooks", json=hook).status_code == 201

    env = {**os.environ, "REX_DATABASE_URL": url, "REX_SECRET_KEY": f"{new},{old}"}
    rotated = subprocess.run(
        [REX_CLI, "secrets", "rotate-key"], env=env, capture_output=True, text=True, check=False
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 1 secrets" in rotated.stdout

    monkeypatch.setenv("REX_SECRET_KEY", new)  # the old key is gone
    with serve_rex(make_settings(url)) as rex:
        _capture(rex, {"email": "rotated@example.com"}).raise_for_status()
        [request] = receiver.wait_for(1)
    verify_signature(request.body, request.headers["X-Rex-Signature"], secret)


# -- 3. fairness: slots per workspace first, then per endpoint ------------------------------


async def test_worker_slots_are_shared_per_workspace_first(database_url: str) -> None:
    from rex.outbox.events import record_event
    from rex.outbox.queue import claim_due_deliveries
    from rex.webhooks import service as webhooks
    from rex.webhooks.schemas import EndpointCreate
    from rex.workspaces import service as workspaces

    db = Database(database_url)
    await db.migrate()
    try:
        at = utcnow() - timedelta(seconds=10)
        async with db.transaction() as conn:
            big = await workspaces.create_workspace(conn, f"big{os.getpid()}{time.time_ns()}")
            small = await workspaces.create_workspace(conn, f"small{os.getpid()}{time.time_ns()}")
            for workspace, hooks in ((big, 3), (small, 1)):
                for n in range(hooks):
                    body = EndpointCreate(url=f"https://h{n}.example.com/", events=["*"])
                    await webhooks.create(conn, workspace.id, body, DestinationPolicy())
                for i in range(10):
                    await record_event(
                        conn, workspace_id=workspace.id, event_type="contact.created",
                        data={"n": i}, object_id=None, now=at + timedelta(milliseconds=i),
                    )  # fmt: skip
        async with db.transaction() as conn:
            claimed = await claim_due_deliveries(
                conn, worker_id="w", now=utcnow(), lease=30, limit=4
            )
    finally:
        await db.close()
    # Per endpoint alone, the big workspace's three endpoints took 3 of 4 slots.
    by_workspace = {w: sum(c.workspace_id == w for c in claimed) for w in (big.id, small.id)}
    assert by_workspace == {big.id: 2, small.id: 2}
    assert len({c.endpoint_id for c in claimed if c.workspace_id == big.id}) == 2
