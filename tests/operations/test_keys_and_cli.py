"""API keys listed and revoked (a revoked key is refused by every process at once), key
expiry, admin commands that never create a database, the CLI's global options and exit
codes, and the client commands added with them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.cli import REX, assert_one_line_error
from tests.operations.conftest import Proc, first_key, rex_env, serve
from tests.support import sql


def rex(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REX, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def client_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("REX_")}, **extra}


def test_a_revoked_key_is_refused_by_every_process(tmp_path: Path, procs: list[Proc]) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    one = serve(procs, database_url, tmp_path)
    two = serve(procs, database_url, tmp_path, "--no-worker")
    admin = rex_env(database_url)
    key = first_key(one)
    made = [rex("keys", "create", "--name", f"k{i}", env=admin) for i in range(2)]
    assert all(m.returncode == 0 for m in made), made
    api_key, cli_key = (m.stdout.strip().splitlines()[-1] for m in made)

    for url in (one.url, two.url):
        for k in (api_key, cli_key):
            assert httpx.get(f"{url}/contacts", headers={"X-Api-Key": k}).status_code == 200

    listed = httpx.get(f"{one.url}/keys", headers={"X-Api-Key": key})
    assert listed.status_code == 200
    body = listed.text
    assert key not in body and api_key not in body and cli_key not in body
    by_name = {k["name"]: k for k in listed.json()["data"]}
    assert set(by_name) == {"first key", "k0", "k1"}
    assert by_name["k0"]["prefix"] == api_key[:15]
    assert by_name["k0"]["last_used_at"] is not None  # used just above
    assert by_name["k0"]["expires_at"] is None and by_name["k0"]["revoked_at"] is None

    # Revoked through the API of one process: refused by the other from the next request.
    revoked = httpx.delete(f"{one.url}/keys/{by_name['k0']['id']}", headers={"X-Api-Key": key})
    assert revoked.status_code == 200 and revoked.json()["data"]["revoked_at"]
    started = time.monotonic()
    for url in (two.url, one.url):
        refused = httpx.get(f"{url}/contacts", headers={"X-Api-Key": api_key})
        assert refused.status_code == 401, refused.text
    assert time.monotonic() - started < 1.0
    missing = httpx.delete(
        f"{one.url}/keys/key_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", headers={"X-Api-Key": key}
    )
    assert missing.status_code == 404

    # Revoked with the CLI, on the database: refused by both servers.
    listed_cli = json.loads(rex("keys", "list", "--json", env=admin).stdout)
    [cli_row] = [k for k in listed_cli if k["name"] == "k1"]
    assert cli_key not in json.dumps(listed_cli)
    done = rex("keys", "revoke", cli_row["id"], env=admin)
    assert done.returncode == 0, done.stderr
    for url in (one.url, two.url):
        assert httpx.get(f"{url}/contacts", headers={"X-Api-Key": cli_key}).status_code == 401
    assert {k["name"] for k in json.loads(rex("keys", "list", "--json", env=admin).stdout)} == {
        "first key"
    }
    again = rex("keys", "revoke", "key_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", env=admin)
    assert again.returncode == 4 and "no API key" in again.stderr

    # A key with an expiry works until then, and is refused after.
    short = rex("keys", "create", "--name", "short", "--expires-in", "2s", env=admin)
    short_key = short.stdout.strip().splitlines()[-1]
    assert httpx.get(f"{two.url}/contacts", headers={"X-Api-Key": short_key}).status_code == 200
    time.sleep(2.2)
    assert httpx.get(f"{two.url}/contacts", headers={"X-Api-Key": short_key}).status_code == 401
    assert rex("keys", "create", "--expires-in", "soon", env=admin).returncode == 2


def test_admin_commands_never_create_a_database(tmp_path: Path) -> None:
    env = client_env(REX_DATABASE_URL=f"sqlite:///{tmp_path}/missing.db")
    for args in (
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke", "key_x"],
        ["workspaces", "create", "acme"],
        ["backup", str(tmp_path / "copy.db")],
        ["status"],
    ):
        result = rex(*args, env=env, cwd=tmp_path)
        assert_one_line_error(result, f"no Rex database at sqlite:///{tmp_path}/missing.db")
        assert "REX_DATABASE_URL" in result.stderr and "rex migrate" in result.stderr
        assert result.returncode == 1
    assert list(tmp_path.iterdir()) == []  # nothing created, not even ./rex.db


def test_global_options_exit_codes_and_client_commands(tmp_path: Path, procs: list[Proc]) -> None:
    version = rex("--version", env=client_env())
    assert version.returncode == 0 and version.stdout.startswith("rex ")
    completion = rex(
        "--show-completion",
        "bash",
        env=client_env(_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1"),
    )
    assert completion.returncode == 0 and "complete" in completion.stdout

    database_url = f"sqlite:///{tmp_path}/rex.db"
    server = serve(procs, database_url, tmp_path)
    key = first_key(server)
    env = client_env()  # no REX_URL, no REX_API_KEY: the flags alone
    flags = ["--url", server.url, "--api-key", key]

    created = rex(*flags, "webhooks", "create", "https://example.com/hook", "--json", env=env)
    assert created.returncode == 0, created.stderr
    endpoint = json.loads(created.stdout)
    got = json.loads(rex(*flags, "webhooks", "get", endpoint["id"], "--json", env=env).stdout)
    assert got["id"] == endpoint["id"] and "secret" not in got
    rotated = rex(*flags, "webhooks", "rotate-secret", endpoint["id"], "--json", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["secret"] != endpoint["secret"]

    changed = rex(
        *flags,
        "workspace",
        "set",
        "--allowed-origins",
        "https://www.acme.test",
        "--redirect-url",
        "https://www.acme.test/thanks",
        "--rate-limit",
        "600/minute",
        "--json",
        env=env,
    )
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(rex(*flags, "workspace", "show", "--json", env=env).stdout)
    assert shown["allowed_origins"] == ["https://www.acme.test"]
    assert shown["redirect_url"] == "https://www.acme.test/thanks"
    assert shown["capture_rate_limit"] == "600/minute"

    # The environment is the default; the flag wins over it.
    env_wrong = client_env(REX_URL=server.url, REX_API_KEY="rex_sk_" + "x" * 43)
    assert rex("webhooks", "list", env=env_wrong).returncode == 3
    assert rex("--api-key", key, "webhooks", "list", env=env_wrong).returncode == 0

    # Exit codes: usage 2, authentication 3, not found 4, unreachable 5, other API error 1.
    assert rex(*flags, "webhooks", "get", env=env).returncode == 2
    assert rex(*flags, "--bogus", env=env).returncode == 2
    assert rex("webhooks", "list", env=env).returncode == 2  # no key anywhere
    auth = rex("--url", server.url, "--api-key", "rex_sk_" + "y" * 43, "webhooks", "list", env=env)
    assert_one_line_error(auth, "authentication failed")
    assert auth.returncode == 3
    missing = rex(*flags, "webhooks", "get", "wh_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", env=env)
    assert_one_line_error(missing, "not found")
    assert missing.returncode == 4
    down = rex("--url", "http://127.0.0.1:9", "--api-key", key, "webhooks", "list", env=env)
    assert_one_line_error(down, "cannot reach Rex")
    assert down.returncode == 5
    invalid = rex(*flags, "webhooks", "create", "not a url", env=env)
    assert_one_line_error(invalid, "422")
    assert invalid.returncode == 1
    assert sql(database_url, "SELECT count(*) AS n FROM endpoints")[0].n == 1
