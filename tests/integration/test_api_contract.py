"""The API's contract as a whole: the error envelope everywhere, limits, and the OpenAPI
document (every $ref resolves, webhooks, examples, Idempotency-Key)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from typing import Any

import httpx

from rex.events.webhooks import CUSTOM_EVENT_ENTRY
from rex.outbox.catalogue import EVENT_TYPES
from tests.support import RexServer


def _is_envelope(response: httpx.Response) -> bool:
    body = response.json()
    return set(body) == {"error"} and {"type", "message", "field"} <= set(body["error"])


def test_unknown_routes_and_methods_use_the_envelope(rex: RexServer) -> None:
    with rex.client() as client:
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and _is_envelope(missing)
        wrong = client.put("/deals/deal_01HQ3Z8W6X9Y2V4T5R7P8N0M1K", json={})
        assert wrong.status_code == 405 and _is_envelope(wrong)
        assert wrong.headers["allow"] == "DELETE, GET, PATCH"


def test_bad_input_is_a_4xx_envelope_never_a_500(rex: RexServer) -> None:
    huge = b'{"name": "' + b"x" * (rex.settings.max_request_bytes + 1) + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    json_headers = {"Content-Type": "application/json"}
    with rex.client() as client:
        cases = [
            (client.post("/deals", content=huge, headers=json_headers), 413),
            (client.post("/deals", content=chunks(), headers=json_headers), 413),
            (client.post("/deals", content=b'{"name": ', headers=json_headers), 400),
            (client.post("/deals", content=b"[1, 2]", headers=json_headers), 422),
            (client.post("/deals", json={"name": "nul \u0000 here"}), 422),
            (client.post("/tasks", json={"title": "t", "body": "\u0000"}), 422),
            (client.post("/contacts", json={"email": "a@example.com", "company": "\u0000"}), 422),
            (
                httpx.post(
                    f"{rex.url}/capture",
                    content=b'{"email": "inf@example.com", "metadata": {"n": 1e400}}',
                    headers=json_headers,
                ),
                422,
            ),
            (
                client.post(
                    "/contacts",
                    content=b'{"email": "nan@example.com", "metadata": {"n": NaN}}',
                    headers=json_headers,
                ),
                422,
            ),
            (
                client.post(
                    "/deals",
                    content=b'{"name": "x", "metadata": {"a": ' + b"[" * 900 + b"]" * 900 + b"}}",
                    headers=json_headers,
                ),
                422,
            ),
            (client.get("/deals/deal_%00"), 400),
            (client.get("/contacts", params={"email": "a\u0000@example.com"}), 400),
            (client.get("/deals", params={"limit": "many"}), 422),
            (client.get("/deals/" + "x" * 5000), 404),
            (client.patch("/tasks/task_x", content=b"{", headers=json_headers), 400),
            (client.post("/pipelines", json={"name": "p", "stages": "lead"}), 422),
            (
                client.post(
                    "/deals",
                    content=b'{"name": "x", "metadata": {"n": 1e400}}',
                    headers=json_headers,
                ),
                422,
            ),
        ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text[:200])
        assert _is_envelope(response)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_openapi_document_is_complete(rex: RexServer) -> None:
    with rex.client() as client:
        openapi = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower() and "/openapi.json" in docs.text

    assert openapi["openapi"].startswith("3.1")
    for ref in set(_refs(openapi)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[-1] in openapi["components"]["schemas"], ref

    # One entry per built-in type, and one standing for every type of your own.
    assert set(openapi["webhooks"]) == EVENT_TYPES | {CUSTOM_EVENT_ENTRY}
    for name, item in openapi["webhooks"].items():
        body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].startswith("#/components/schemas/"), name
        headers = {p["name"] for p in item["post"]["parameters"] if p["in"] == "header"}
        assert {"x-rex-signature", "x-rex-event-id"} <= {h.lower() for h in headers}

    schemas = openapi["components"]["schemas"]
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            if path == "/healthz":  # liveness: {"status": "ok"} while the process serves
                assert list(responses) == ["200"]
                continue
            if path == "/readyz":  # for load balancers: {"status": ...}, 200 or 503
                assert "503" in responses
                continue
            errors = [code for code in responses if code.startswith(("4", "5"))]
            assert errors, where
            for code in errors:
                content = responses[code]["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/ErrorEnvelope"), (where, code)
                assert "example" in content or "examples" in content, (where, code)
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                # An optional body is anyOf [the model, null].
                schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
                name = schema["$ref"].rsplit("/", 1)[-1]
                assert schemas[name].get("examples"), f"{where}: request body has no example"
            authenticated = bool(operation.get("security"))
            idempotent = any(
                p["name"] == "Idempotency-Key" for p in operation.get("parameters", [])
            )
            assert idempotent == (method == "post" and authenticated), where
    for resource in ("Contact", "Deal", "Task", "Pipeline", "Endpoint", "Delivery", "Event"):
        assert schemas[resource].get("examples"), resource


def test_concurrent_duplicate_contacts_are_409_not_500(rex: RexServer) -> None:
    """Check-then-insert races are caught by the unique index and answered 409."""

    def post(_: int) -> int:
        with rex.client() as client:
            return client.post("/contacts", json={"email": "race@example.com"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(post, range(16)))
    assert statuses.count(201) == 1
    assert set(statuses) == {201, 409}
