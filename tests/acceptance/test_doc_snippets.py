"""The verification snippets and listeners of docs/receiving.md, run exactly as printed.

Each one is checked against signatures made by Rex itself, with two ``v1=`` values where the
one that matches is the second (a rotation seen by a receiver that still holds the old
secret): a snippet that reads only one ``v1=`` fails here. The listeners run as their own
processes (``node listener.js``, ``uvicorn listener:app``) and, at the end, receive real
deliveries from a real Rex across a real secret rotation.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from rex._signing import sign
from tests.acceptance.doctext import snippet
from tests.receiver import Receiver
from tests.support import free_port, make_settings, serve_rex, stop_process, wait_until

NODE = shutil.which("node") or ("/usr/bin/node" if Path("/usr/bin/node").exists() else None)
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (Debian: nodejs)")
UVICORN = str(Path(sys.executable).with_name("uvicorn"))

SECRET = "whsec_the_receivers_secret_of_32_chars_or_more"
NEWER = "whsec_rotated_in_since_then_also_32_chars_long"
BODY = json.dumps(
    {"id": "evt_01DOCS", "event": "contact.created", "data": {"email": "jane@example.com"}}
).encode()


def cases(now: int) -> list[tuple[str, bytes, str, str, bool]]:
    """(what, body, header, secret, should verify), every header signed by Rex's ``sign``."""
    rotating = sign(BODY, [NEWER, SECRET], now)  # the receiver's secret is the second v1=
    return [
        ("matching v1= second", BODY, rotating, SECRET, True),
        ("matching v1= first", BODY, rotating, NEWER, True),
        ("one v1=", BODY, sign(BODY, [SECRET], now), SECRET, True),
        ("wrong secret", BODY, rotating, "whsec_someone_else", False),
        ("tampered body", BODY.replace(b"jane", b"mallory"), rotating, SECRET, False),
        ("replayed an hour later", BODY, sign(BODY, [NEWER, SECRET], now - 3600), SECRET, False),
        ("from the future", BODY, sign(BODY, [SECRET], now + 3600), SECRET, False),
        ("no v1=", BODY, f"t={now}", SECRET, False),
        ("no t=", BODY, rotating.split(",", 1)[1], SECRET, False),
        ("empty header", BODY, "", SECRET, False),
        ("garbage", BODY, "t=abc,v1=zz,v1=é", SECRET, False),
    ]


def test_the_python_verifier_accepts_any_v1_and_nothing_else() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(snippet("receiving.md", "verify-python"), "receiving.md", "exec"), namespace)
    verify = namespace["verify_signature"]
    for what, body, header, secret, expected in cases(int(time.time())):
        assert verify(body, header, secret) is expected, what


@needs_node
def test_the_node_verifier_accepts_any_v1_and_nothing_else(tmp_path: Path) -> None:
    assert NODE is not None
    script = tmp_path / "verify.js"
    script.write_text(
        snippet("receiving.md", "verify-node")
        + "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        + "process.stdout.write(JSON.stringify(cases.map(([body, header, secret]) =>"
        + " verifySignature(Buffer.from(body, 'base64'), header, secret))));\n"
    )
    table = cases(int(time.time()))
    stdin = json.dumps([[base64.b64encode(b).decode(), h, s] for _, b, h, s, _ in table])
    result = subprocess.run(
        [NODE, str(script)], input=stdin, capture_output=True, text=True, check=True, timeout=30
    )
    answers = json.loads(result.stdout)
    assert {what: got for (what, *_), got in zip(table, answers, strict=True)} == {
        what: expected for what, _, _, _, expected in table
    }


def test_the_listeners_carry_the_verifiers_verbatim() -> None:
    """The complete listeners repeat the verifiers above them: the same code, not a variant."""
    python_verifier = snippet("receiving.md", "verify-python")
    function = python_verifier[python_verifier.index("def verify_signature") :]
    assert function in snippet("receiving.md", "listener-python")
    node_verifier = snippet("receiving.md", "verify-node")
    function = node_verifier[node_verifier.index("// True when") :]
    assert function in snippet("receiving.md", "listener-node")


class Listener:
    """A docs listener running as its own process on 127.0.0.1, its output kept."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], port: int) -> None:
        self.port = port
        self.log = cwd / "listener.log"
        with self.log.open("wb") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def answering() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                httpx.get(self.url, timeout=2)
            except httpx.TransportError:
                return False
            return True

        wait_until(answering, timeout=30, interval=0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/rex"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def printed(self, text: str) -> bool:
        return text in self.output()

    def post(self, body: bytes, header: str) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-Rex-Signature": header}
        return httpx.post(self.url, content=body, headers=headers, timeout=10)


def _node_listener(tmp_path: Path, secret: str) -> Listener:
    assert NODE is not None
    (tmp_path / "listener.js").write_text(snippet("receiving.md", "listener-node"))
    port = free_port()
    env = {"REX_WEBHOOK_SECRET": secret, "PORT": str(port)}
    return Listener([NODE, "listener.js"], tmp_path, env, port)


def _python_listener(tmp_path: Path, secret: str) -> Listener:
    (tmp_path / "listener.py").write_text(snippet("receiving.md", "listener-python"))
    port = free_port()
    command = [UVICORN, "listener:app", "--host", "127.0.0.1", "--port", str(port)]
    return Listener(command, tmp_path, {"REX_WEBHOOK_SECRET": secret}, port)


@pytest.fixture(params=["node", "python"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    if request.param == "node" and NODE is None:
        pytest.skip("node is not installed (Debian: nodejs)")
    start = _node_listener if request.param == "node" else _python_listener
    running = start(tmp_path, SECRET)
    try:
        yield running
    finally:
        stop_process(running.process, timeout=10)


def test_a_docs_listener_verifies_deduplicates_and_processes(listener: Listener) -> None:
    now = int(time.time())
    first = listener.post(BODY, sign(BODY, [NEWER, SECRET], now))
    assert first.status_code == 200, listener.output()
    again = listener.post(BODY, sign(BODY, [NEWER, SECRET], now + 1))  # a retry, same event id
    assert again.status_code == 200
    assert "duplicate" in again.text and "duplicate" not in first.text
    assert listener.post(BODY, sign(BODY, ["whsec_someone_else"], now)).status_code == 401
    assert listener.post(BODY, "").status_code == 401
    assert listener.post(b"[not json", sign(b"[not json", [SECRET], now)).status_code == 400
    wait_until(lambda: "new lead jane@example.com" in listener.output(), timeout=10)
    assert listener.output().count("new lead") == 1


def test_docs_listeners_keep_receiving_real_deliveries_across_a_rotation(tmp_path: Path) -> None:
    """Real Rex, a real rotation: each delivery after it carries the new secret's v1= first
    and the listeners' (old) secret's second, and both docs listeners accept it at once."""
    starters = [_python_listener] + ([_node_listener] if NODE is not None else [])
    started: list[Listener] = []
    try:
        for start in starters:
            folder = tmp_path / start.__name__
            folder.mkdir()
            started.append(start(folder, SECRET))
        settings = make_settings(f"sqlite:///{tmp_path}/rex.db")
        with Receiver() as inspector, serve_rex(settings) as rex, rex.client() as client:
            hooks = []
            for url in [running.url for running in started] + [inspector.url()]:
                body = {"url": url, "events": ["contact.created"], "secret": SECRET}
                created = client.post("/webhooks", json=body)
                assert created.status_code == 201, created.text
                hook = created.json()["data"]["id"]
                rotated = client.post(f"/webhooks/{hook}/rotate-secret")
                assert rotated.status_code == 200, rotated.text
                hooks.append(hook)
            captured = httpx.post(f"{rex.url}/capture", json={"email": "jane@example.com"})
            assert captured.status_code == 201, captured.text

            # What every endpoint got: two v1=, the old secret's (the listeners') second.
            [request] = inspector.wait_for(1)
            header = request.headers["X-Rex-Signature"]
            t, newest, oldest = header.split(",")
            assert newest.startswith("v1=") and oldest.startswith("v1=")
            assert sign(request.body, [SECRET], int(t[2:])) == f"{t},{oldest}"

            def delivered() -> list[dict[str, Any]] | None:
                found = [client.get(f"/webhooks/{h}/deliveries").json()["data"] for h in hooks]
                if all(d and d[0]["status"] == "delivered" for d in found):
                    return [d[0] for d in found]
                return None

            for delivery in wait_until(delivered, timeout=30, interval=0.2):
                assert delivery["attempt_count"] == 1  # accepted at the first attempt
        for running in started:
            wait_until(partial(running.printed, "new lead jane@example.com"), timeout=10)
    finally:
        for running in started:
            stop_process(running.process, timeout=10)
