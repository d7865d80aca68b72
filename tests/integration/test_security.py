"""Security properties, each checked against the real database, real processes and real
sockets on 127.0.0.1:

- API keys exist in the database only as hashes (every text column of every table is read);
- no log line of a full flow (the real ``rex serve`` at debug level, and the CLI) carries an
  API key, a webhook secret or a signature;
- capture rate limits cannot be escaped by proxy headers from a peer that is not a trusted
  proxy, including through the real ``rex serve`` (uvicorn trusts 127.0.0.1 by default);
- ``/capture`` writes into the workspace its Host names, whatever else the request says;
- webhook URLs naming private addresses in any spelling are refused, and redirects to private
  addresses (or anywhere) are never followed.

Workspace isolation of every authenticated operation is ``test_isolation.py``; names that
resolve to private addresses are ``test_ssrf_delivery.py``.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from rex.db.schema import metadata
from rex.worker.ssrf import DestinationPolicy
from rex.worker.transport import REFUSED, AiohttpTransport
from rex.workspaces.service import KEY_PREFIX
from tests.cli import SECRET_LINE, client_env, listening, rex_serve, run_rex
from tests.receiver import Receiver, Redirect
from tests.support import (
    StubResolver,
    make_settings,
    serve_rex,
    sql,
    wait_until,
)

SIGNATURE = re.compile(r"v1=([0-9a-f]{64})")


def _all_text(database_url: str) -> dict[str, str]:
    """``"table.column" -> every value of that column as text, joined``, for every column of
    every table (JSON and timestamps included)."""
    found = {}
    for table in metadata.sorted_tables:
        names = [column.name for column in table.columns]
        casts = ", ".join(f"CAST({name} AS TEXT) AS {name}" for name in names)
        rows = sql(database_url, f"SELECT {casts} FROM {table.name}")
        for i, name in enumerate(names):
            found[f"{table.name}.{name}"] = "\n".join(str(row[i]) for row in rows)
    return found


def _secret_part(key: str) -> str:
    """The part of a key that is not its public lookup prefix (stored, by design)."""
    from rex.workspaces.service import _LOOKUP_LEN

    return key[len(KEY_PREFIX) + _LOOKUP_LEN :]


# -- keys stored only as hashes ---------------------------------------------------------------


def test_api_keys_appear_nowhere_in_the_database(
    database_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    with serve_rex(make_settings(database_url)) as rex:
        other_key = rex.key_for("other")
        # A key made by the CLI, as an operator does.
        operator_env = {**client_env("", ""), "REX_DATABASE_URL": database_url}
        created = run_rex("keys", "create", "--name", "cli", env=operator_env, cwd=tmp_path)
        assert created.returncode == 0, created.stderr
        cli_key = created.stdout.strip().splitlines()[-1]
        keys = [rex.key, other_key, cli_key]
        with rex.client(cli_key) as client:
            # Every kind of write, each with a key on the request, some with Idempotency-Key.
            hook = client.post(
                "/webhooks",
                json={"url": receiver.url(), "events": ["*"]},
                headers={"Idempotency-Key": "k1"},
            ).json()["data"]
            client.post(f"/webhooks/{hook['id']}/rotate-secret").raise_for_status()
            client.post("/contacts", json={"email": "k@example.com"}).raise_for_status()
            client.post("/deals", json={"name": "D"}, headers={"Idempotency-Key": "k2"})
            client.post("/listen/sessions", json={"forward_to": receiver.url("/l")})
        # Keys presented where none is needed must not be kept either.
        presented = {"X-Api-Key": rex.key, "Authorization": f"Bearer {other_key}"}
        capture = {"email": "c@example.com"}
        httpx.post(f"{rex.url}/capture", json=capture, headers=presented).raise_for_status()
        receiver.wait_for(3, timeout=30)  # contact, deal and capture events, signed
        columns = _all_text(database_url)

    hashes = [r.key_hash for r in sql(database_url, "SELECT key_hash FROM api_keys")]
    assert len(hashes) == 3 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    for key in keys:
        for column, text in columns.items():
            assert key not in text, f"an API key is stored in {column}"
            assert _secret_part(key) not in text, f"the secret part of a key is in {column}"
    # Webhook secrets are stored encrypted (they sign every delivery): no column holds one in
    # plain text, not even the idempotency record of the creation response.
    secrets = set(re.findall(r"whsec_[A-Za-z0-9_\-]+", "\n".join(columns.values())))
    assert secrets == set()
    assert "fernet:" in columns["endpoints.secret"]


# -- logs -------------------------------------------------------------------------------------


def test_no_log_line_of_a_full_flow_carries_a_key_a_secret_or_a_signature(
    tmp_path: Path, receiver: Receiver
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    operator_env = {**client_env("", ""), "REX_DATABASE_URL": database_url}
    # Admin commands never create a database: make it first, as an operator does.
    assert run_rex("migrate", env=operator_env, cwd=tmp_path).returncode == 0
    created = run_rex("keys", "create", "--name", "logs", env=operator_env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    cli_output = [created.stderr]
    secrets: list[str] = ["whsec_chosen_by_the_user_1_0123456789"]
    receiver.set_default(200)
    env = {"REX_LOG_LEVEL": "debug", "REX_CAPTURE_RATE_LIMIT": "2/hour"}
    with rex_serve(database_url, tmp_path, env=env) as url:
        with httpx.Client(base_url=url, headers={"X-Api-Key": key}, timeout=30) as client:
            hook = client.post(
                "/webhooks",
                json={"url": receiver.url(), "events": ["*"], "secret": secrets[0]},
            ).json()["data"]
            generated = client.post(
                "/webhooks", json={"url": receiver.url("/gen"), "events": ["contact.created"]}
            ).json()["data"]
            secrets.append(generated["secret"])
            rotated = client.post(f"/webhooks/{hook['id']}/rotate-secret").json()["data"]
            secrets.append(rotated["secret"])
            # A failing endpoint: attempts with errors are logged too.
            failing = client.post(
                "/webhooks", json={"url": "http://127.0.0.1:9/refused", "events": ["*"]}
            ).json()["data"]
            secrets.append(failing["secret"])
            # Wrong and malformed keys, in both headers.
            wrong = f"{KEY_PREFIX}{'x' * 43}"
            for headers in ({"X-Api-Key": wrong}, {"Authorization": f"Bearer {wrong}"}):
                assert httpx.get(f"{url}/contacts", headers=headers).status_code == 401
            assert client.get("/contacts", headers={"Authorization": f"Bearer {key}"}).is_success
        # A form post's values (and its query string): the access log has the route only.
        form_value = "form-value-never-logged-7f3a"
        httpx.post(
            f"{url}/capture?note={form_value}",
            data={"email": "form@example.com", "company": form_value},
        )
        for i in range(2):  # the second is rate limited
            httpx.post(f"{url}/capture", json={"email": f"log{i}@example.com"})
        httpx.post(f"{url}/capture", content=b'{"email": ', headers={"X-Api-Key": key})
        listen_env = client_env(url, key)
        with listening(listen_env, receiver.url("/listen")) as listen:
            secrets.append(listen.secret)
            triggered = run_rex("trigger", "contact.created", env=listen_env, cwd=tmp_path)
            assert triggered.returncode == 0, triggered.stderr
            cli_output += [triggered.stderr, triggered.stdout]
            wait_until(lambda: [r for r in receiver.requests if r.path == "/listen"], 30)
        cli_output += listen.lines("stderr")

        def failed_once() -> bool:
            rows = sql(database_url, "SELECT count(*) AS n FROM attempts WHERE error IS NOT NULL")
            return bool(rows[0].n)

        wait_until(failed_once, timeout=30)
        receiver.wait_for(2, path="/hook", timeout=30)
        # Internal errors (a table gone, a column renamed under the running server): their
        # tracebacks quote SQL parameters (a secret being inserted) and held request headers
        # in their frames' variables.
        with sqlite3.connect(tmp_path / "rex.db") as conn:
            conn.execute("DROP TABLE tasks")
            conn.execute("ALTER TABLE endpoints RENAME COLUMN description TO gone")
        secrets.append("my-own-signing-secret-123-0123456789")
        broken = [
            ("/tasks", {"title": "t", "body": secrets[0]}),
            ("/webhooks", {"url": receiver.url(), "events": ["*"], "secret": secrets[-1]}),
        ]
        for path, body in broken:
            try:
                response = httpx.post(f"{url}{path}", json=body, headers={"X-Api-Key": key})
            except httpx.TransportError:
                continue  # uvicorn may reset the connection after a 500; the log is written
            assert response.status_code == 500, response.text
    server_log = "\n".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    signatures = {
        value
        for request in receiver.requests
        for value in SIGNATURE.findall(request.headers.get("X-Rex-Signature", ""))
    }
    assert len(signatures) >= 3 and len(secrets) == 6
    assert "delivery_attempt" in server_log and "listen_connected" in server_log
    assert server_log.count("unhandled_error") == 2, server_log
    assert "Exception in ASGI application" in server_log
    for name, text in {"rex serve": server_log, "CLI stderr": "\n".join(cli_output)}.items():
        for secret in secrets:
            assert secret not in text, f"a webhook secret is in the {name} output"
        assert key not in text and _secret_part(key) not in text, f"an API key in {name}"
        assert "form-value-never-logged-7f3a" not in text, f"a form value in {name}"
        assert wrong not in text, f"a presented (wrong) key is in the {name} output"
        for signature in signatures:
            assert signature not in text, f"a signature is in the {name} output"
        assert not re.search(r"whsec_[A-Za-z0-9]", text), f"a whsec_ value in the {name} output"
    assert SECRET_LINE.search("\n".join(listen.lines()))  # shown to its user on stdout, as meant


# -- rate limits and proxy headers ------------------------------------------------------------

SPOOFING_HEADERS = [
    {"X-Forwarded-For": "203.0.113.{i}"},
    {"X-Forwarded-For": "203.0.113.{i}, 127.0.0.1"},
    {"X-Real-IP": "203.0.113.{i}"},
    {"Forwarded": "for=203.0.113.{i};proto=https"},
    {"Forwarded": 'for="[2001:db8::{i}]"'},
    {"True-Client-IP": "203.0.113.{i}"},
    {"CF-Connecting-IP": "203.0.113.{i}"},
    {"X-Client-IP": "203.0.113.{i}"},
    {"X-Cluster-Client-IP": "203.0.113.{i}"},
    {"Client-IP": "203.0.113.{i}"},
]


def _spoofed_flood(url: str, limit: int) -> list[int]:
    """One client, a new claimed address on every request, every header style."""
    statuses = []
    with httpx.Client(timeout=30) as client:
        for i, template in enumerate(SPOOFING_HEADERS * 2):
            headers = {k: v.format(i=i + 1) for k, v in template.items()}
            email = f"spoof{i}@example.com"
            statuses.append(client.post(f"{url}/capture", json={"email": email},
                                        headers=headers).status_code)  # fmt: skip
    return statuses


def test_proxy_headers_from_an_untrusted_peer_do_not_reset_the_limit(database_url: str) -> None:
    with serve_rex(make_settings(database_url, capture_rate_limit="3/hour")) as rex:
        statuses = _spoofed_flood(rex.url, 3)
        [row] = sql(database_url, "SELECT count(*) AS n FROM contacts")
    assert statuses[:3] == [201, 201, 201]
    assert set(statuses[3:]) == {429}, statuses
    assert row.n == 3


def test_the_real_rex_serve_does_not_believe_proxy_headers_either(tmp_path: Path) -> None:
    # uvicorn's own default believes X-Forwarded-For from 127.0.0.1; `rex serve` turns it off.
    database_url = f"sqlite:///{tmp_path}/rex.db"
    with rex_serve(database_url, tmp_path, env={"REX_CAPTURE_RATE_LIMIT": "3/hour"}) as url:
        statuses = _spoofed_flood(url, 3)
        rows = sql(database_url, "SELECT consent FROM contacts")
    assert statuses[:3] == [201, 201, 201]
    assert set(statuses[3:]) == {429}, statuses
    assert len(rows) == 3


def test_a_trusted_proxys_chain_cannot_be_extended_by_the_client(database_url: str) -> None:
    """Through a trusted proxy, only the hop that proxy appended counts: a client writing
    addresses to the left of it, or sending other headers, stays one client."""
    settings = make_settings(
        database_url, capture_rate_limit="2/hour", trusted_proxies=["127.0.0.1"]
    )
    with serve_rex(settings) as rex, httpx.Client(timeout=30) as client:
        statuses = []
        for i in range(5):
            headers = {
                "X-Forwarded-For": f"10.9.9.{i}, 198.51.100.20",  # the proxy appended .20
                "X-Real-IP": f"10.8.8.{i}",
                "Forwarded": f"for=10.7.7.{i}",
            }
            response = client.post(
                f"{rex.url}/capture", json={"email": f"t{i}@example.com"}, headers=headers
            )
            statuses.append(response.status_code)
    assert statuses == [201, 201, 429, 429, 429]


# -- /capture and the Host ------------------------------------------------------------------


def test_capture_writes_only_into_the_workspace_its_host_names(database_url: str) -> None:
    settings = make_settings(database_url, base_domain="rexgtm.test")
    with serve_rex(settings) as rex:
        rex.key_for("acme")
        rex.key_for("beta")
        workspaces = {r.slug: r.id for r in sql(database_url, "SELECT id, slug FROM workspaces")}
        beta_id = workspaces["beta"]
        attempts: list[tuple[dict[str, str], dict[str, Any]]] = [
            ({}, {"workspace": "beta"}),
            ({}, {"workspace_id": beta_id, "workspace_slug": "beta"}),
            ({}, {"metadata": {"workspace_id": beta_id}, "_workspace": "beta"}),
            ({"X-Forwarded-Host": "beta.rexgtm.test"}, {}),
            ({"Forwarded": "host=beta.rexgtm.test"}, {}),
            ({"X-Original-Host": "beta.rexgtm.test", "X-Host": "beta.rexgtm.test"}, {}),
            ({"X-Rex-Workspace": "beta", "X-Workspace": beta_id}, {}),
            ({"Origin": "https://beta.rexgtm.test", "Referer": "https://beta.rexgtm.test/"}, {}),
        ]
        with httpx.Client(timeout=30) as client:
            for i, (headers, fields) in enumerate(attempts):
                body = {"email": f"h{i}@example.com", **fields}
                response = client.post(
                    f"{rex.url}/capture",
                    json=body,
                    headers={"Host": "acme.rexgtm.test", **headers},
                )
                assert response.status_code == 201, (headers, fields, response.text)
            # Hosts that are not beta's, however they are spelled, never reach beta.
            for host in (
                "ACME.REXGTM.TEST",
                "acme.rexgtm.test.",
                "acme.rexgtm.test:8080",
                "beta.rexgtm.test.evil.test",
                "x.beta.rexgtm.test",
                "beta.rexgtm.test@acme.rexgtm.test",
                "beta%2erexgtm.test",
            ):
                client.post(
                    f"{rex.url}/capture", json={"email": f"{host}@example.com"},
                    headers={"Host": host},
                )  # fmt: skip
            # The control: beta's own host does reach beta.
            control = client.post(
                f"{rex.url}/capture",
                json={"email": "control@example.com"},
                headers={"Host": "beta.rexgtm.test"},
            )
            assert control.status_code == 201, control.text
        rows = sql(
            database_url,
            "SELECT w.slug, c.email FROM contacts c JOIN workspaces w ON w.id = c.workspace_id",
        )
        events = sql(
            database_url,
            "SELECT w.slug FROM events e JOIN workspaces w ON w.id = e.workspace_id",
        )
    assert [r.email for r in rows if r.slug == "beta"] == ["control@example.com"], rows
    assert [e.slug for e in events].count("beta") == 1
    assert {r.email for r in rows if r.slug == "acme"} >= {f"h{i}@example.com" for i in range(8)}


def test_a_capture_for_an_unknown_workspace_host_writes_nothing(database_url: str) -> None:
    settings = make_settings(database_url, base_domain="rexgtm.test")
    with serve_rex(settings) as rex:
        response = httpx.post(
            f"{rex.url}/capture",
            json={"email": "n@example.com", "workspace": "default"},
            headers={"Host": "nobody.rexgtm.test", "X-Forwarded-Host": "127.0.0.1"},
        )
        [row] = sql(database_url, "SELECT count(*) AS n FROM contacts")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert row.n == 0


# -- SSRF -------------------------------------------------------------------------------------

PRIVATE_SPELLINGS = [
    "http://127.0.0.1/h",
    "http://2130706433/h",  # decimal
    "http://0177.0.0.1/h",  # octal
    "http://017700000001/h",
    "http://0x7f000001/h",  # hex
    "http://0x7f.0.0.1/h",
    "http://127.1/h",
    "http://127.0.0.1./h",
    "http://[::1]/h",
    "http://[0:0:0:0:0:0:0:1]/h",
    "http://[::ffff:127.0.0.1]/h",  # IPv4-mapped
    "http://[::ffff:7f00:1]/h",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/h",
    "http://[::127.0.0.1]/h",  # IPv4-compatible
    "http://[fe80::1]/h",  # link-local
    "http://[fe80::1%25eth0]/h",
    "http://[fc00::1]/h",  # unique local
    "http://[fd12:3456::1]/h",
    "http://[64:ff9b::a00:1]/h",  # NAT64 of 10.0.0.1
    "http://[2002:a00:1::]/h",  # 6to4 of 10.0.0.1
    "http://10.0.0.1/h",
    "http://012.0.0.1/h",
    "http://172.16.0.1/h",
    "http://192.168.1.1/h",
    "http://0xc0a80101/h",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.64.0.1/h",
    "http://0.0.0.0/h",
    "http://0/h",
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/h",  # full-width 127.0.0.1
]


def test_private_addresses_in_every_spelling_are_refused_at_creation(database_url: str) -> None:
    settings = make_settings(database_url, allow_private_destinations=False)
    with serve_rex(settings, run_worker=False) as rex, rex.client() as client:
        ok = client.post("/webhooks", json={"url": "https://example.com/h", "events": ["*"]})
        ok.raise_for_status()
        for url in PRIVATE_SPELLINGS:
            created = client.post("/webhooks", json={"url": url, "events": ["*"]})
            assert created.status_code == 422, (url, created.text)
            assert created.json()["error"]["field"] == "url", url
            patched = client.patch(f"/webhooks/{ok.json()['data']['id']}", json={"url": url})
            assert patched.status_code == 422, (url, patched.text)
            listen = client.post("/listen/sessions", json={"forward_to": url})
            # `rex listen` forwards from the user's machine, not from Rex: a local URL is its
            # point. Whatever it answers, Rex itself never sends there.
            assert listen.status_code < 500
        [row] = sql(database_url, "SELECT count(*) AS n FROM endpoints WHERE kind != 'listen'")
        urls = [
            r.url for r in sql(database_url, "SELECT url FROM endpoints WHERE kind != 'listen'")
        ]
    assert row.n == 1 and urls == ["https://example.com/h"]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed_end_to_end(database_url: str, status: int) -> None:
    """The receiver (allowed by REX_ALLOWED_NETWORKS) answers with a redirect to a private
    address, to the metadata service, to [::1] and to another allowed loopback address where
    a second receiver listens: the worker records the 3xx as a failed attempt (its status
    code, not a refusal: it never tried) and goes nowhere else."""
    with Receiver() as allowed, Receiver(host="127.0.0.2") as elsewhere:
        targets = [
            "http://10.0.0.1/internal",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            elsewhere.url("/stolen"),
            "http://[::1]/h",
        ]
        allowed.set_default(lambda request: Redirect(status, targets[len(allowed.requests) % 4]))
        resolver = StubResolver({"internal.test": ["10.0.0.1"]})
        settings = make_settings(
            database_url,
            allow_private_destinations=False,
            # 127.0.0.2 is allowed too: following the redirect there would succeed.
            allowed_networks=["127.0.0.1/32", "127.0.0.2/32"],
            retry_schedule=(0.2, 0.2, 0.2),
        )
        policy = DestinationPolicy(allowed_networks=settings.allowed_networks)
        transport = AiohttpTransport(policy, resolver=resolver)
        with serve_rex(settings, transport=transport) as rex, rex.client() as client:
            hook = client.post("/webhooks", json={"url": allowed.url("/hook"), "events": ["*"]})
            assert hook.status_code == 201, hook.text
            httpx.post(f"{rex.url}/capture", json={"email": "r@example.com"}).raise_for_status()

            def failed() -> list[Any]:
                return sql(database_url, "SELECT status FROM deliveries WHERE status = 'failed'")

            wait_until(failed, timeout=30)
            attempts = sql(database_url, "SELECT status_code, error FROM attempts ORDER BY at")
        assert [a.status_code for a in attempts] == [status] * 4
        assert {r.path for r in allowed.requests} == {"/hook"}
        assert len(allowed.requests) == 4
        assert elsewhere.requests == []


def test_names_resolving_to_ipv6_and_mapped_private_addresses_are_refused(
    database_url: str, receiver: Receiver
) -> None:
    resolver = StubResolver(
        {
            "v6loop.test": ["::1"],
            "mapped.test": ["::ffff:127.0.0.1"],
            "mapped10.test": ["::ffff:10.0.0.1"],
            "ula.test": ["fc00::1"],
            "imds6.test": ["fd00:ec2::254"],
            "nat64.test": ["64:ff9b::a9fe:a9fe"],  # 169.254.169.254 through NAT64
        }
    )
    settings = make_settings(database_url, allow_private_destinations=False, retry_schedule=(0.2,))
    transport = AiohttpTransport(DestinationPolicy(), resolver=resolver)
    with serve_rex(settings, transport=transport) as rex:
        with rex.client() as client:
            for name in resolver.table:
                url = f"http://{name}:{receiver.port}/{name}"
                assert client.post("/webhooks", json={"url": url, "events": ["*"]}).is_success
        httpx.post(f"{rex.url}/capture", json={"email": "v6@example.com"}).raise_for_status()

        def all_failed() -> list[Any]:
            rows = sql(database_url, "SELECT status FROM deliveries")
            done = len(rows) == len(resolver.table) and {r.status for r in rows} == {"failed"}
            return rows if done else []

        wait_until(all_failed, timeout=30)
        errors = [r.error for r in sql(database_url, "SELECT error FROM attempts")]
    assert len(errors) == 2 * len(resolver.table)
    assert all(e == REFUSED for e in errors), errors
    assert receiver.requests == []
