"""examples/fastapi_listener.py, driven through FastAPI's TestClient."""

from __future__ import annotations

import importlib.util
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from rex._signing import sign

with warnings.catch_warnings():
    # Starlette >= 1.x warns when its TestClient runs on httpx rather than httpx2.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).parents[2] / "examples" / "fastapi_listener.py"
SECRET = "whsec_test_secret"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_listener", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


listener = load_example()


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_next = False

    async def __call__(self, event: dict[str, Any]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("downstream is down")
        self.events.append(event)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> Iterator[TestClient]:
    with TestClient(listener.create_app(SECRET, handle_event=recorder)) as client:
        yield client


def event_body(event_id: str = "evt_01HQ") -> bytes:
    event = {"id": event_id, "event": "contact.created", "data": {"email": "jane@example.com"}}
    return json.dumps(event).encode()


def deliver(client: TestClient, body: bytes, signature: str | None = None) -> Any:
    if signature is None:
        signature = sign(body, ["whsec_newer", SECRET], int(time.time()))
    headers = {"Content-Type": "application/json", "X-Rex-Signature": signature}
    return client.post("/webhooks/rex", content=body, headers=headers)


def test_valid_event_is_acknowledged_and_processed_once(
    client: TestClient, recorder: Recorder
) -> None:
    body = event_body()
    first = deliver(client, body)
    assert first.status_code == 200
    assert first.json() == {"status": "ok"}
    second = deliver(client, body)  # a retry: freshly signed, same event id
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate"}
    assert recorder.events == [json.loads(body)]

    assert deliver(client, event_body("evt_02")).status_code == 200
    assert [e["id"] for e in recorder.events] == ["evt_01HQ", "evt_02"]


@pytest.mark.parametrize(
    "signature",
    [
        sign(event_body(), ["whsec_other"], int(time.time())),  # wrong secret
        sign(event_body(), [SECRET], int(time.time()) - 3600),  # replayed later
        "t=1,v1=",
        "",
    ],
    # Fixed ids: the signatures carry the time, and xdist's workers must collect the same names.
    ids=["wrong-secret", "replayed", "empty-v1", "empty"],
)
def test_bad_signature_is_refused(client: TestClient, recorder: Recorder, signature: str) -> None:
    response = deliver(client, event_body(), signature)
    assert response.status_code == 401
    assert response.json()["detail"]
    assert recorder.events == []


def test_tampered_body_is_refused(client: TestClient, recorder: Recorder) -> None:
    signature = sign(event_body(), [SECRET], int(time.time()))
    response = deliver(client, event_body().replace(b"jane", b"mallory"), signature)
    assert response.status_code == 401
    assert recorder.events == []


def test_signed_non_json_is_a_400(client: TestClient) -> None:
    assert deliver(client, b"not json").status_code == 400


def test_failed_processing_lets_a_redelivery_through(
    client: TestClient, recorder: Recorder
) -> None:
    recorder.fail_next = True
    assert deliver(client, event_body()).status_code == 200  # answered before the failure
    assert recorder.events == []
    assert deliver(client, event_body()).json() == {"status": "ok"}
    assert len(recorder.events) == 1


def test_default_router_handles_the_catalogue(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="rex_listener")
    stage_changed = {
        "id": "evt_9",
        "event": "deal.stage_changed",
        "from": "lead",
        "to": "won",
        "data": {"id": "deal_1"},
    }
    other = {"id": "evt_11", "event": "task.created", "data": {}}
    with TestClient(listener.create_app(SECRET)) as client:
        for body in (json.dumps(stage_changed).encode(), event_body(), json.dumps(other).encode()):
            assert deliver(client, body).status_code == 200
    assert [r.getMessage() for r in caplog.records] == [
        "deal deal_1 moved lead -> won",
        "new lead jane@example.com",
        "unhandled event task.created",
    ]


def test_seen_events_forgets_the_oldest() -> None:
    seen = listener.SeenEvents(capacity=2)
    assert seen.add("a") and seen.add("b") and seen.add("c")
    assert not seen.add("c")
    assert seen.add("a")  # forgotten when "c" came in
