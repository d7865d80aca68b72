"""The seeds, end to end: the real ``rex serve``, the docs' requests, the docs' own listener.

A newcomer's path: start Rex (the first run prints a key), capture a lead, subscribe the
seed's FastAPI listener, capture again, and watch the signed ``contact.created`` arrive and
pass the seed's own ``verify_signature``; then send a test event.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.acceptance.seedtext import (
    SHARED,
    VENDORED,
    curl_json_body,
    fastapi_listener_source,
    node_verify_source,
    seed,
)
from tests.support import first_key_from_log, free_port, missing, wait_until

REX = str(Path(sys.executable).with_name("rex"))


def test_vendored_seeds_match_the_shared_docs() -> None:
    if not SHARED.exists():
        missing(f"{SHARED} is not beside this checkout; using the vendored copy")
    for path in VENDORED.glob("*.txt"):
        assert path.read_text() == (SHARED / path.name).read_text(), path.name


class SeedListener:
    """The seed's FastAPI listener, with the two lines it leaves out: ``import os`` and a
    ``process_event`` that records what arrived. ``verify_signature`` is untouched."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[dict[str, Any]] = []
        self.port = free_port()

    def __enter__(self) -> SeedListener:
        module = types.ModuleType("seed_listener")
        module.__dict__["process_event"] = self._record
        previous = os.environ.get("REX_WEBHOOK_SECRET")
        os.environ["REX_WEBHOOK_SECRET"] = self.secret
        try:
            exec(
                compile("import os\n" + fastapi_listener_source(), "seed", "exec"), module.__dict__
            )
        finally:
            if previous is None:
                del os.environ["REX_WEBHOOK_SECRET"]
            else:
                os.environ["REX_WEBHOOK_SECRET"] = previous
        module.__dict__["process_event"] = self._record  # the seed calls it; it doesn't define it
        self.server = uvicorn.Server(
            uvicorn.Config(module.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    async def _record(self, event: dict[str, Any]) -> None:
        self.received.append(event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/rex"


@pytest.fixture
def rex_serve(tmp_path: Path) -> Iterator[dict[str, str]]:
    """``rex serve`` as a newcomer runs it: a subprocess on a free port, SQLite, first run."""
    port = free_port()
    env = {
        **os.environ,
        "REX_DATABASE_URL": f"sqlite:///{tmp_path}/rex.db",
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
    }
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [REX, "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30, interval=0.1)
        yield {"url": url, "log": str(tmp_path / "serve.log"), "env": json.dumps(env)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        log.close()


def _first_key(log_path: str) -> str:
    return first_key_from_log(Path(log_path).read_text())


def test_seed_flow_end_to_end(rex_serve: dict[str, str]) -> None:
    rex_url, key = rex_serve["url"], _first_key(rex_serve["log"])
    lead_doc = seed("lead-capture-webhook.txt")

    # 1. Send a lead to the capture endpoint (unauthenticated), exactly the seed's request.
    capture = curl_json_body(lead_doc, "/capture")
    response = httpx.post(f"{rex_url}/capture", headers=capture["headers"], json=capture["body"])
    assert response.status_code == 201
    data = response.json()["data"]
    expected = {"email": "jane@example.com", "first_name": "Jane", "last_name": "Doe",
                "stage": "lead", "source": "organic"}  # fmt: skip
    assert {k: data[k] for k in expected} == expected
    assert data["id"].startswith("cont_") and data["created_at"].endswith("Z")

    # 2. Create a webhook subscription (the seed's body, pointed at the seed's listener).
    subscription = curl_json_body(lead_doc, "/webhooks")
    secret = subscription["body"]["secret"]
    assert isinstance(secret, str)
    with SeedListener(secret) as listener:
        body = {**subscription["body"], "url": listener.url}
        created = httpx.post(
            f"{rex_url}/webhooks", headers={**subscription["headers"], "X-Api-Key": key}, json=body
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()["data"]

        # 3. A new lead: the listener receives a contact.created that its verifier accepts.
        lead = {**capture["body"], "email": "john@example.com", "first_name": "John"}
        new = httpx.post(f"{rex_url}/capture", json=lead).json()["data"]
        [event] = wait_until(lambda: listener.received, timeout=15)
        assert event["event"] == "contact.created"
        assert event["data"]["id"] == new["id"]
        assert event["data"]["email"] == "john@example.com"
        assert event["timestamp"].endswith("Z")

        # The webhook-listeners doc: send a test event.
        test = httpx.post(f"{rex_url}/webhooks/{endpoint['id']}/test", headers={"X-Api-Key": key})
        assert test.status_code == 202
        wait_until(lambda: len(listener.received) == 2, timeout=15)
        assert listener.received[1]["event"] == "webhook.test"

        # Every delivery answered 2xx on its first attempt: the seed's verify_signature
        # never said 401 (a 401 would be retried, and still end up delivered).
        with httpx.Client(base_url=rex_url, headers={"X-Api-Key": key}) as client:
            listed = client.get(f"/webhooks/{endpoint['id']}/deliveries")
            assert listed.status_code == 200, listed.text
            deliveries = listed.json()["data"]
            assert len(deliveries) == 2, deliveries
            for summary in deliveries:
                delivery = client.get(f"/deliveries/{summary['id']}").json()["data"]
                assert delivery["status"] == "delivered", delivery
                assert delivery["attempt_count"] == 1, delivery
                assert [200 <= a["status_code"] < 300 for a in delivery["attempts"]] == [True]


def test_catch_all_subscription_from_the_listener_doc(rex_serve: dict[str, str]) -> None:
    rex_url, key = rex_serve["url"], _first_key(rex_serve["log"])
    subscription = curl_json_body(seed("webhook-listeners.txt"), "/webhooks")
    secret = subscription["body"]["secret"]
    assert isinstance(secret, str)
    with SeedListener(secret) as listener:
        body = {**subscription["body"], "url": listener.url}
        headers = {**subscription["headers"], "X-Api-Key": key}
        assert httpx.post(f"{rex_url}/webhooks", headers=headers, json=body).status_code == 201
        with httpx.Client(base_url=rex_url, headers={"X-Api-Key": key}) as client:
            contact = client.post("/contacts", json={"email": "ann@example.com"}).json()["data"]
            client.patch(f"/contacts/{contact['id']}", json={"first_name": "Ann"})
        wait_until(lambda: len(listener.received) == 2, timeout=15)
    assert sorted(e["event"] for e in listener.received) == ["contact.created", "contact.updated"]


def test_node_verifier_from_the_seed_accepts_a_real_delivery(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        missing("node is not on PATH")
    from tests.receiver import Receiver
    from tests.support import make_settings, serve_rex

    secret = "whsec_your_signing_secret"
    with Receiver() as receiver, serve_rex(make_settings(f"sqlite:///{tmp_path}/r.db")) as rex:
        with rex.client() as client:
            client.post(
                "/webhooks", json={"url": receiver.url(), "events": ["*"], "secret": secret}
            ).raise_for_status()
        httpx.post(f"{rex.url}/capture", json={"email": "node@example.com"})
        [request] = receiver.wait_for(1)
    script = tmp_path / "verify.js"
    script.write_text(
        node_verify_source()
        + "\nconst [payload, signature, secret] = JSON.parse(require('fs').readFileSync(0));"
        + "\nprocess.stdout.write(String(verifySignature(payload, signature, secret)));\n"
    )
    args = [request.body.decode(), request.headers["X-Rex-Signature"], secret]
    for candidate_secret, expected in ((secret, "true"), ("whsec_wrong", "false")):
        result = subprocess.run(
            [node, str(script)],
            input=json.dumps([args[0], args[1], candidate_secret]),
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout == expected


def test_cli_keys_and_workspaces(tmp_path: Path) -> None:
    env = {**os.environ, "REX_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}

    def rex(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([REX, *args], env=env, cwd=tmp_path, capture_output=True, text=True)

    # Admin commands never create a database (they say which one they looked for).
    refused = rex("keys", "create", "--name", "ci")
    assert refused.returncode != 0 and "no Rex database at" in refused.stderr
    assert rex("migrate").returncode == 0
    made = rex("keys", "create", "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("rex_sk_") and " " not in key
    assert rex("workspaces", "create", "acme").returncode == 0
    again = rex("workspaces", "create", "acme")
    assert again.returncode != 0
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
    missing = rex("keys", "create", "--workspace", "nope")
    assert missing.returncode != 0 and "no workspace 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
    acme = rex("keys", "create", "--workspace", "acme").stdout.strip().splitlines()[-1]
    assert acme.startswith("rex_sk_") and acme != key
