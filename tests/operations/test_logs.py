"""REX_LOG_JSON=1: every line a real `rex serve` and `rex worker` write on stdout and stderr
is one JSON object (uvicorn's and Alembic's too); one access line per request; the
X-Request-Id is echoed or made, and is in the error envelope and that request's lines."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.cli import REX
from tests.operations.conftest import rex_env
from tests.support import free_port, wait_until


def json_lines(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON in {path.name}: {line!r}") from None
        assert isinstance(value, dict), line
        parsed.append(value)
    return parsed


def test_every_line_is_json_with_request_ids(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = rex_env(database_url, REX_LOG_JSON="1", REX_TRUSTED_PROXIES="127.0.0.1")
    with out.open("wb") as stdout, err.open("wb") as stderr:
        serve = subprocess.Popen(
            [REX, "serve", "--port", str(port)], env=env, stdout=stdout, stderr=stderr
        )
    try:

        def up() -> bool:
            assert serve.poll() is None, err.read_text()
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, timeout=40)
        # The first key is never logged (docs/security.md): the log names its 0600 file.
        [first] = [line for line in json_lines(err) if line["event"] == "first_api_key_file"]
        key_file = Path(first["path"]).read_text()
        key = key_file.split("REX_API_KEY=")[1].split()[0]
        assert key not in err.read_text()

        chosen = httpx.get(f"{url}/contacts", headers={"X-Request-Id": "req-chosen.1"})
        assert chosen.status_code == 401
        assert chosen.headers["x-request-id"] == "req-chosen.1"
        assert chosen.json()["error"]["request_id"] == "req-chosen.1"
        invalid = httpx.get(
            f"{url}/contacts/nope", headers={"X-Request-Id": "bad id; " + "x" * 200}
        )
        made = invalid.headers["x-request-id"]
        assert not made.startswith("bad") and len(made) == 32
        assert invalid.json()["error"]["request_id"] == made
        absent = httpx.get(f"{url}/healthz", headers={"X-Forwarded-For": "203.0.113.9"})
        assert len(absent.headers["x-request-id"]) == 32
        ok = httpx.post(
            f"{url}/contacts", json={"email": "j@example.com"}, headers={"X-Api-Key": key}
        )
        assert ok.status_code == 201 and ok.headers["x-request-id"]

        # An internal error: its traceback is logged as JSON, with the request's id.
        with sqlite3.connect(tmp_path / "rex.db") as conn:
            conn.execute("DROP TABLE tasks")
        broken = httpx.post(
            f"{url}/tasks",
            json={"title": "t"},
            headers={"X-Api-Key": key, "X-Request-Id": "req-broken"},
        )
        assert broken.status_code == 500
        assert broken.json()["error"]["request_id"] == "req-broken"
    finally:
        serve.terminate()
        assert serve.wait(40) == 0

    lines = json_lines(err) + json_lines(out)
    loggers = {line.get("logger") for line in lines}
    assert {"uvicorn.error", "alembic.runtime.migration"} <= loggers, loggers
    events = [line["event"] for line in lines]
    assert "serving" in events and "worker_started" in events and "shutting_down" in events
    [serving] = [line for line in lines if line["event"] == "serving"]
    assert serving["database"] == f"sqlite:///{tmp_path.resolve()}/rex.db"

    access = [line for line in lines if line["event"] == "request"]
    assert len(access) >= 5
    for line in access:
        assert {"method", "route", "status", "duration_ms", "client", "request_id"} <= set(line)
    by_id = {line["request_id"]: line for line in access}
    assert by_id["req-chosen.1"]["status"] == 401
    assert by_id["req-chosen.1"]["route"] == "/contacts"
    assert by_id[made]["route"] == "/contacts/{contact_id}"
    assert by_id["req-broken"]["status"] == 500
    assert by_id["req-broken"]["client"] == "127.0.0.1"
    # Behind a trusted proxy, the client is the address it vouches for.
    assert by_id[absent.headers["x-request-id"]]["client"] == "203.0.113.9"
    # Every line logged while serving a request carries its id: the traceback's too.
    [unhandled] = [line for line in lines if line["event"] == "unhandled_error"]
    assert unhandled["request_id"] == "req-broken"
    assert "Traceback" in unhandled["exception"]
    others = [ln for ln in err.read_text().splitlines() if '"first_api_key"' not in ln]
    assert key not in "\n".join(others) and key not in out.read_text()


def test_worker_lines_are_json(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    env = rex_env(database_url, REX_LOG_JSON="1")
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        worker = subprocess.Popen([REX, "worker"], env=env, stdout=stdout, stderr=stderr)
    try:
        wait_until(lambda: "worker_started" in err.read_text(), timeout=40)
    finally:
        worker.terminate()
        assert worker.wait(40) == 0
    lines = json_lines(err) + json_lines(out)
    assert [line["event"] for line in lines if line["event"].startswith("worker_")] == [
        "worker_started",
        "worker_stopped",
    ]
    assert any(line.get("logger") == "alembic.runtime.migration" for line in lines)
