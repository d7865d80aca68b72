"""Console users without a browser: passwords, the `rex users` CLI, and sign-in over HTTP
(headers, cookies, session renewal, throttling per address) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from rex.users.passwords import WeakPassword, hash_password, verify_password
from tests.cli import REX
from tests.support import make_settings, serve_rex, sql

PASSWORD = "correct horse battery staple"


def test_passwords_are_argon2id_hashes() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password(None, PASSWORD)  # no such account: still a full verification
    assert not verify_password("not a hash", PASSWORD)
    assert hash_password(PASSWORD) != stored  # salted
    with pytest.raises(WeakPassword):
        hash_password("short")


def _rex(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REX, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    return {**env, "REX_DATABASE_URL": f"sqlite:///{tmp_path}/rex.db"}


def test_users_cli(cli_env: dict[str, str], tmp_path: Path) -> None:
    database_url = cli_env["REX_DATABASE_URL"]
    # Like every admin command, it never creates a database.
    refused = _rex(cli_env, "users", "create", "ada@example.com")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert "Traceback" not in refused.stderr and not (tmp_path / "rex.db").exists()
    assert _rex(cli_env, "migrate").returncode == 0

    made = _rex(cli_env, "users", "create", "Ada@Example.com")
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[A-Za-z0-9_\-]{20}", password)
    [[stored]] = sql(
        database_url, "SELECT password_hash FROM users WHERE email = 'ada@example.com'"
    )
    assert stored.startswith("$argon2id$") and verify_password(stored, password)
    assert password not in (tmp_path / "rex.db").read_bytes().decode("latin-1")

    # The second user of a workspace is a member unless told otherwise; a password from stdin.
    weak = _rex(cli_env, "users", "create", "bob@example.com", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2 and "at least 12 characters" in weak.stderr
    given = _rex(
        cli_env, "users", "create", "bob@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert given.returncode == 0, given.stderr and PASSWORD not in given.stdout
    [[bob_hash]] = sql(
        database_url, "SELECT password_hash FROM users WHERE email = 'bob@example.com'"
    )
    assert verify_password(bob_hash, PASSWORD)

    # A user may belong to several workspaces.
    assert _rex(cli_env, "workspaces", "create", "acme").returncode == 0
    missing = _rex(cli_env, "users", "create", "ada@example.com", "--workspace", "nope")
    assert missing.returncode != 0 and "no workspace 'nope'" in missing.stderr
    joined = _rex(
        cli_env, "users", "create", "ada@example.com", "--workspace", "acme", "--role", "member"
    )
    assert joined.returncode == 0 and "added to workspace 'acme'" in joined.stdout
    listed = json.loads(_rex(cli_env, "users", "list", "--json").stdout)
    by_email = {user["email"]: user for user in listed}
    assert by_email["ada@example.com"]["workspaces"] == [
        {"slug": "acme", "role": "member"},
        {"slug": "default", "role": "owner"},
    ]
    assert by_email["bob@example.com"]["workspaces"] == [{"slug": "default", "role": "member"}]
    assert "password" not in json.dumps(listed)
    table = _rex(cli_env, "users", "list").stdout
    assert "ada@example.com" in table and "acme (member)" in table

    # reset-password: a new one-time password, the old one gone, every session revoked.
    sql(
        database_url,
        "INSERT INTO console_sessions (id, token_hash, user_id, csrf_secret, created_at,"
        " last_seen_at, expires_at) SELECT 'sess_1', 'x', id, 'y', created_at, created_at,"
        " '2999-01-01 00:00:00.000000' FROM users WHERE email = 'ada@example.com'",
    )
    reset = _rex(cli_env, "users", "reset-password", "ADA@example.com")
    assert reset.returncode == 0, reset.stderr
    new_password = reset.stdout.strip().splitlines()[-1]
    [[stored]] = sql(
        database_url, "SELECT password_hash FROM users WHERE email = 'ada@example.com'"
    )
    assert verify_password(stored, new_password) and not verify_password(stored, password)
    [[revoked]] = sql(database_url, "SELECT revoked_at FROM console_sessions WHERE id = 'sess_1'")
    assert revoked is not None
    unknown = _rex(cli_env, "users", "reset-password", "nobody@example.com")
    assert unknown.returncode == 4 and "no user" in unknown.stderr


def test_users_set_role_and_remove_cli(cli_env: dict[str, str]) -> None:
    assert _rex(cli_env, "migrate").returncode == 0
    assert _rex(cli_env, "users", "create", "ada@example.com").returncode == 0  # first: owner
    assert _rex(cli_env, "users", "create", "bob@example.com").returncode == 0  # then: member

    def roles() -> dict[str, list[dict[str, str]]]:
        listed = json.loads(_rex(cli_env, "users", "list", "--json").stdout)
        return {user["email"]: user["workspaces"] for user in listed}

    # The last owner can be neither demoted nor removed: said on stderr, exit 1.
    for args in (
        ("set-role", "ada@example.com", "--role", "member"),
        ("remove", "ADA@example.com"),
    ):
        refused = _rex(cli_env, "users", *args)
        assert refused.returncode == 1 and "last owner" in refused.stderr, refused
    promoted = _rex(cli_env, "users", "set-role", "bob@example.com", "--role", "owner")
    assert promoted.returncode == 0 and "is now owner" in promoted.stdout
    again = _rex(cli_env, "users", "set-role", "bob@example.com", "--role", "owner")
    assert again.returncode == 0 and "was already owner" in again.stdout
    # Two owners: Ada may go; her account stays, in no workspace.
    removed = _rex(cli_env, "users", "remove", "ada@example.com")
    assert removed.returncode == 0 and "removed from workspace 'default'" in removed.stdout
    assert roles() == {
        "ada@example.com": [],
        "bob@example.com": [{"slug": "default", "role": "owner"}],
    }
    for args, says in (
        (("remove", "ada@example.com"), "is not in workspace 'default'"),
        (("remove", "nobody@example.com"), "no user"),
        (("remove", "bob@example.com", "--workspace", "nope"), "no workspace 'nope'"),
        (("set-role", "bob@example.com", "--role", "admin"), "admin"),
    ):
        answer = _rex(cli_env, "users", *args)
        assert answer.returncode in (2, 4) and says in answer.stderr, (args, answer.stderr)
        assert "Traceback" not in answer.stderr


def _login_form(client: httpx.Client) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def _sign_in(client: httpx.Client, email: str, password: str) -> httpx.Response:
    token = _login_form(client)
    return client.post(
        "/console/login", data={"email": email, "password": password, "csrf_token": token}
    )


async def _make_user(database_url: str, email: str) -> None:
    from rex.db.engine import Database
    from rex.users import service as users
    from rex.workspaces import service as workspaces

    db = Database(database_url, pool_size=1)
    try:
        async with db.transaction() as conn:
            workspace, _ = await workspaces.ensure_default_workspace(conn)
            user = await users.create(conn, email, PASSWORD)
            await users.add_membership(conn, user.id, workspace.id, users.Role.OWNER)
    finally:
        await db.close()


def test_sign_in_over_http(database_url: str) -> None:
    from tests.support import run

    settings = make_settings(database_url, sign_in_max_failures_per_address=3)
    with serve_rex(settings) as rex:
        run(_make_user(database_url, "ada@example.com"))
        with httpx.Client(base_url=rex.url, follow_redirects=False, timeout=30) as client:
            # Every console answer carries the security headers, pages and assets alike.
            for path in ("/console/login", "/console/static/console.js", "/console/nope"):
                answer = client.get(path)
                csp = answer.headers["content-security-policy"]
                assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
                assert "unsafe-inline" not in csp and "script-src 'self'" in csp
                assert answer.headers["x-content-type-options"] == "nosniff"
                assert answer.headers["referrer-policy"] == "same-origin"
            assert client.get("/console/nope").status_code == 404

            # The sign-in form is CSRF-protected too (double submit).
            _login_form(client)
            forged = client.post(
                "/console/login", data={"email": "ada@example.com", "password": PASSWORD}
            )
            assert forged.status_code == 403

            wrong = _sign_in(client, "ada@example.com", "not the password!")
            assert wrong.status_code == 401 and "Wrong email or password." in wrong.text
            first = _sign_in(client, "ada@example.com", PASSWORD)
            assert first.status_code == 303 and first.headers["location"] == "/console"
            cookie = first.headers["set-cookie"]
            assert "rex_session=" in cookie and "HttpOnly" in cookie
            assert "samesite=lax" in cookie.lower() and "secure" not in cookie.lower()
            old_token = client.cookies["rex_session"]
            assert client.get("/console/leads").status_code == 200

        # Signing in again (a form opened before) renews the session: a new token, the old
        # one revoked.
        with httpx.Client(base_url=rex.url, follow_redirects=False, timeout=30) as client:
            token = _login_form(client)
            client.cookies.set("rex_session", old_token, domain="127.0.0.1")
            form = {"email": "ada@example.com", "password": PASSWORD, "csrf_token": token}
            again = client.post("/console/login", data=form)
            assert again.status_code == 303
            new_token = again.cookies["rex_session"]
            assert new_token != old_token
            stale = httpx.get(
                f"{rex.url}/console/leads", cookies={"rex_session": old_token}, timeout=30
            )
            assert stale.status_code == 303 and "/console/login" in stale.headers["location"]
            [[hashed]] = sql(database_url, "SELECT count(*) FROM console_sessions")
            assert hashed == 2
            tokens = [
                row[0] for row in sql(database_url, "SELECT token_hash FROM console_sessions")
            ]
            assert old_token not in tokens and new_token not in tokens

        # Throttled per address: three failures, whatever the accounts, pause sign-ins.
        with httpx.Client(base_url=rex.url, follow_redirects=False, timeout=30) as client:
            for n in range(2):  # one failure above already counted for 127.0.0.1
                assert (
                    _sign_in(client, f"guess{n}@example.com", "nope nope nope").status_code == 401
                )
            paused = _sign_in(client, "ada@example.com", PASSWORD)
            assert paused.status_code == 429 and int(paused.headers["retry-after"]) > 0
            assert "Too many failed sign-ins" in paused.text


def test_secure_cookie_and_origin_over_https(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    from tests.support import run

    settings = make_settings(database_url, public_url="https://rex.example.com")
    with serve_rex(settings) as rex:
        run(_make_user(database_url, "ada@example.com"))
        with httpx.Client(base_url=rex.url, follow_redirects=False, timeout=30) as client:
            page = client.get("/console/login")
            login_cookie = page.headers["set-cookie"]
            assert login_cookie.startswith("rex_login_csrf=") and "Secure" in login_cookie
            token = page.cookies["rex_login_csrf"]
            # A browser sends Secure cookies over HTTPS only: behind the proxy, it does.
            headers = {"Cookie": f"rex_login_csrf={token}"}
            form = {"email": "ada@example.com", "password": PASSWORD, "csrf_token": token}
            other = httpx.post(
                f"{rex.url}/console/login",
                data=form,
                headers={**headers, "Origin": "https://evil.example"},
            )
            assert other.status_code == 403
            signed_in = httpx.post(
                f"{rex.url}/console/login",
                data=form,
                headers={**headers, "Origin": "https://rex.example.com"},
            )
            assert signed_in.status_code == 303
            cookie = signed_in.headers["set-cookie"]
            assert cookie.startswith("__Host-rex_session=") and "Secure" in cookie
