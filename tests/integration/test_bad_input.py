"""Bad input, over real HTTP to a real Rex: never a 5xx; a 4xx is the error envelope and
writes nothing (every row of every table is compared before and after, on the real SQLite
file and on PostgreSQL).

Covered: ``POST /capture`` as JSON, urlencoded and multipart, and every key-authenticated
operation that takes a body, found by walking the app's routes (a route added later is fuzzed
automatically; its path parameters are filled like ``test_isolation`` does).

Two kinds of test:

- named cases, each one a known way to break a parser or a database (invalid UTF-8, lone
  surrogates, NUL, 10,000-deep nesting, 2**63, 1e400, truncated JSON, UTF-16, wrong
  Content-Types...), sent to every operation;
- Hypothesis, which mutates each operation's documented example (odd Unicode, huge strings,
  deep nesting, repeated keys, out-of-range numbers, byte damage, truncation, other
  encodings and Content-Types). ``REX_FUZZ_EXAMPLES`` sets the examples per operation
  (default 25), ``REX_FUZZ_SEED`` a different (reproducible) sequence.

A successful answer is allowed when the input is in fact acceptable (odd but valid Unicode in
a name, a repeated key: the last one wins, as in ``JSON.parse``); what was stored must then
read back: every list of the API is read to its end afterwards.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rex.api.routes import api_operations
from rex.app import create_app
from tests.integration.bad_input import (
    JSON,
    NAMED_FRAGMENTS,
    Checker,
    bad_json_bodies,
    bad_multipart_bodies,
    bad_urlencoded_bodies,
    encode,
    fragment_bodies,
    fuzz,
    named_whole_bodies,
    snapshots,
)
from tests.integration.samples import PARAM, SAMPLE_IDS, Samples, make_samples
from tests.receiver import Receiver
from tests.support import RexServer, make_settings, serve_rex, sql

CAPTURE_EXAMPLE = {
    "first_name": "Ada",
    "email": "ada@example.com",
    "company": "Analytical",
    "utm_source": "newsletter",
    "consent": {"granted": True, "text": "Yes"},
    "metadata": {"plan": "team"},
}
ACCEPT_JSON = {"Accept": "application/json"}


class BodyOperation:
    """One operation that takes a body, with a URL on workspace A's own objects."""

    def __init__(self, method: str, path: str, url: str, example: Any, required: bool):
        self.method, self.path, self.url = method, path, url
        self.example, self.required = example, required

    def __repr__(self) -> str:
        return f"{self.method} {self.path}"


def _body_operations(rex: RexServer, client: httpx.Client, samples: Samples) -> list[Any]:
    openapi = client.get("/openapi.json").json()
    found = []
    for op in api_operations(create_app(make_settings(rex.database_url))):
        if not op.requires_api_key:
            continue
        for method in sorted(op.methods & {"POST", "PATCH", "PUT"}):
            spec = openapi["paths"][op.path][method.lower()]
            content = spec.get("requestBody", {}).get("content", {})
            if JSON not in content:
                continue  # takes no body
            url = op.path
            for param in PARAM.findall(op.path):
                assert param in SAMPLE_IDS, f"{method} {op.path}: add {param} to SAMPLE_IDS"
                url = re.sub("{" + param + r"(?::\w+)?}", SAMPLE_IDS[param](samples), url)
            example = _example(openapi, content[JSON])
            required = bool(spec["requestBody"].get("required"))
            found.append(BodyOperation(method, op.path, url, example, required))
    return found


def _example(openapi: dict[str, Any], content: dict[str, Any]) -> Any:
    if "example" in content:
        return content["example"]
    schema = content["schema"]
    schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
    if "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    examples = schema["examples"]
    return next((e for e in examples if e), examples[0])  # one with a field to spoil


def _read_everything(client: httpx.Client) -> int:
    """Read every list of the API to its end (what was accepted must read back). Returns
    how many objects were read."""
    read = 0
    for path in ("/contacts", "/deals", "/tasks", "/pipelines", "/webhooks", "/events"):
        cursor = None
        for _ in range(200):
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, response.text)
            page = response.json()
            read += len(page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    for path in ("/workspace", "/deliveries", "/listen/sessions"):
        assert client.get(path).status_code == 200, path
    return read


@pytest.fixture
def fuzz_rex(database_url: str) -> Iterator[RexServer]:
    """Rex without its worker (nothing is ever sent), no capture rate limit."""
    with serve_rex(make_settings(database_url), run_worker=False) as server:
        yield server


@pytest.fixture
def operations(fuzz_rex: RexServer, receiver: Receiver) -> list[BodyOperation]:
    with fuzz_rex.client() as client:
        samples = make_samples(client, receiver)
        found = _body_operations(fuzz_rex, client, samples)
    names = {repr(op) for op in found}
    assert {"POST /contacts", "PATCH /deals/{deal_id}", "POST /webhooks", "PATCH /workspace"} <= (
        names
    )
    assert len(found) >= 14, names
    return found


# -- named cases ------------------------------------------------------------------------------


def test_named_bad_inputs_are_refused_by_every_operation(
    fuzz_rex: RexServer, operations: list[BodyOperation]
) -> None:
    with fuzz_rex.client() as client, snapshots(fuzz_rex.database_url) as snapshot:
        check = Checker(client, snapshot)
        targets = [(op.method, op.url, op.example, op.required) for op in operations]
        targets.append(("POST", "/capture", CAPTURE_EXAMPLE, True))
        sent = 0
        for method, url, example, required in targets:
            headers = ACCEPT_JSON if url == "/capture" else {}
            cases = [
                (name, body, JSON)
                for name, fragment in NAMED_FRAGMENTS
                for body in fragment_bodies(example, fragment)
            ]
            cases += named_whole_bodies(example)
            for name, body, content_type in cases:
                if not required and name in ("null",):
                    continue  # an optional body may be null
                response = check.send(method, url, body, content_type, headers, expect_4xx=True)
                assert response.status_code != 404, (method, url, name)
                sent += 1
        assert sent >= 15 * 30
        assert _read_everything(client) > 0
    print(f"named bad inputs: {sent} requests, statuses {sorted(check.statuses.items())}")


def test_capture_named_form_attacks(fuzz_rex: RexServer) -> None:
    form = "application/x-www-form-urlencoded"
    multipart = "multipart/form-data; boundary=b"

    def part(name: bytes, value: bytes, extra: bytes = b"") -> bytes:
        disposition = b'Content-Disposition: form-data; name="' + name + b'"' + extra
        return b"--b\r\n" + disposition + b"\r\n\r\n" + value + b"\r\n"

    email = part(b"email", b"f@example.com")
    cases = [
        ("urlencoded: invalid UTF-8", b"email=f%40example.com&first_name=%ff", form),
        ("urlencoded: encoded surrogate", b"email=f%40example.com&first_name=%ed%a0%80", form),
        ("urlencoded: raw invalid UTF-8", b"email=f%40example.com&first_name=\xff", form),
        ("urlencoded: NUL", b"email=f%40example.com&first_name=a%00b", form),
        ("urlencoded: NUL in a name", b"email=f%40example.com&meta%00data[x]=1", form),
        ("urlencoded: 201 fields", b"email=f%40example.com" + b"&x=1" * 200, form),
        ("urlencoded: 6-deep name", b"email=f%40example.com&metadata[a][b][c][d][e]=1", form),
        ("urlencoded: [] mid-name", b"email=f%40example.com&a[][b]=1", form),
        ("urlencoded: name clash", b"email=f%40example.com&a=1&a[b]=2", form),
        ("urlencoded: over 64 KiB", b"email=f%40example.com&notes=" + b"x" * 70_000, form),
        ("urlencoded: no email", b"first_name=Ada", form),
        ("urlencoded: bad consent", b"email=f%40example.com&consent[granted]=maybe", form),
        ("multipart: invalid UTF-8", email + part(b"first_name", b"\xff\xfe") + b"--b--\r\n",
         multipart),
        ("multipart: UTF-8-encoded surrogate",
         email + part(b"first_name", b"\xed\xa0\x80") + b"--b--\r\n", multipart),
        ("multipart: NUL in a value", email + part(b"company", b"a\x00b") + b"--b--\r\n",
         multipart),
        ("multipart: NUL in a name", email + part(b"meta\x00data[x]", b"1") + b"--b--\r\n",
         multipart),
        ("multipart: a file upload",
         email + part(b"cv", b"%PDF", b'; filename="cv.pdf"') + b"--b--\r\n", multipart),
        ("multipart: no boundary", email + b"--b--\r\n", "multipart/form-data"),
        ("multipart: wrong boundary", email + b"--b--\r\n", "multipart/form-data; boundary=c"),
        ("multipart: truncated", email[:20], multipart),
        ("multipart: no closing boundary", email, multipart),
        ("multipart: cut inside a file part",
         email + b'--b\r\nContent-Disposition: form-data; name="cv"; filename="a"\r\n\r\nab',
         multipart),
        ("multipart: no name", b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
         multipart),
        ("multipart: not the declared charset",
         part(b"email", "f@example.com".encode("utf-16")) + part(b"company", b"\xd8\x00")
         + b"--b--\r\n", multipart + "; charset=utf-16-be"),
        ("other Content-Type", b"email=f%40example.com", "text/plain"),
        ("JSON as XML", b'{"email": "f@example.com"}', "application/xml"),
    ]  # fmt: skip
    with (
        httpx.Client(base_url=fuzz_rex.url, timeout=30) as client,
        snapshots(fuzz_rex.database_url) as snapshot,
    ):
        check = Checker(client, snapshot)
        for name, body, content_type in cases:
            response = check.send(
                "POST", "/capture", body, content_type, ACCEPT_JSON, expect_4xx=True
            )
            assert response.status_code != 404, name
    assert sql(fuzz_rex.database_url, "SELECT count(*) AS n FROM contacts")[0].n == 0


# -- Hypothesis -------------------------------------------------------------------------------


def _fuzz_operation(check: Checker, op: BodyOperation) -> None:
    @fuzz
    @given(case=bad_json_bodies(op.example))
    def fuzz_operation(case: tuple[bytes, str | None]) -> None:
        body, content_type = case
        check.send(op.method, op.url, body, content_type)

    fuzz_operation()


def test_fuzzed_bodies_on_every_operation(
    fuzz_rex: RexServer, operations: list[BodyOperation]
) -> None:
    with fuzz_rex.client() as client, snapshots(fuzz_rex.database_url) as snapshot:
        check = Checker(client, snapshot)
        for op in operations:
            _fuzz_operation(check, op)
        _read_everything(client)
    print(f"fuzzed operations: {len(operations)}, statuses {sorted(check.statuses.items())}")


def test_fuzzed_captures_json_urlencoded_and_multipart(fuzz_rex: RexServer) -> None:
    with (
        httpx.Client(base_url=fuzz_rex.url, timeout=30) as client,
        snapshots(fuzz_rex.database_url) as snapshot,
    ):
        check = Checker(client, snapshot)

        @fuzz
        @given(case=bad_json_bodies(CAPTURE_EXAMPLE))
        def fuzz_json(case: tuple[bytes, str | None]) -> None:
            check.send("POST", "/capture", case[0], case[1], ACCEPT_JSON)

        @fuzz
        @given(body=bad_urlencoded_bodies())
        def fuzz_urlencoded(body: bytes) -> None:
            form = "application/x-www-form-urlencoded"
            check.send("POST", "/capture", body, form, ACCEPT_JSON)

        @fuzz
        @given(case=bad_multipart_bodies(), accept=st.sampled_from([ACCEPT_JSON]))
        def fuzz_multipart(case: tuple[bytes, str], accept: dict[str, str]) -> None:
            check.send("POST", "/capture", case[0], case[1], accept)

        fuzz_json()
        fuzz_urlencoded()
        fuzz_multipart()
    with fuzz_rex.client() as reader:
        _read_everything(reader)
    print(f"fuzzed captures: statuses {sorted(check.statuses.items())}")


# -- bodies cut short on the wire -------------------------------------------------------------


def _send_cut_short(url: str, head: bytes, sent: bytes) -> bytes:
    """Send a request's head and part of its body, half-close, and read until the server
    closes: the client is gone before its body is complete."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + sent)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_body_cut_short_by_a_disconnect_writes_nothing(fuzz_rex: RexServer) -> None:
    """What arrives before the client disconnects may parse (a form's first fields, a JSON
    document shorter than its Content-Length): it is still not the request, and it must not
    be acted on."""
    with fuzz_rex.client() as client:
        contact = client.post("/contacts", json={"email": "kept@example.com"}).json()["data"]
    key = f"X-Api-Key: {fuzz_rex.key}\r\n".encode()
    json_type, form = b"application/json", b"application/x-www-form-urlencoded"
    multipart = b"multipart/form-data; boundary=b"
    part = b'--b\r\nContent-Disposition: form-data; name="email"\r\n\r\ncut4@example.com\r\n'
    cases = [
        (b"POST /capture", b"", json_type, b'{"email": "cut1@example.com"}'),
        (b"POST /capture", b"", form, b"email=cut2%40example.com&first_name=Ad"),
        (b"POST /capture", b"", multipart, part + b"--b--\r\n"),
        (b"POST /contacts", key, json_type, b'{"email": "cut5@example.com"}'),
        (b"PATCH /contacts/" + contact["id"].encode(), key, json_type, b'{"stage": "customer"}'),
    ]
    with snapshots(fuzz_rex.database_url) as snapshot:
        before = snapshot.take()
        for request_line, extra, content_type, body in cases:
            common = request_line + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
            common += b"\r\n" + extra
            # Declared longer than sent...
            declared = common + f"Content-Length: {len(body) + 50}\r\n\r\n".encode()
            assert _send_cut_short(fuzz_rex.url, declared, body) == b""
            # ...and chunked, without the last (empty) chunk.
            chunked = common + b"Transfer-Encoding: chunked\r\n\r\n"
            chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n"
            assert _send_cut_short(fuzz_rex.url, chunked, chunk) == b""
        # A complete request after them, so that they were handled before it was.
        sentinel = httpx.post(f"{fuzz_rex.url}/capture", json={"email": "after@example.com"})
        assert sentinel.status_code == 201
        after = snapshot.take()
    changed = {table for table in after if after[table] != before[table]}
    # The sentinel's contact, event and submission only: a body cut short leaves nothing.
    assert changed == {"contacts", "events", "submissions"}
    assert int(after["submissions"].split()[0]) == int(before["submissions"].split()[0]) + 1
    emails = [r.email for r in sql(fuzz_rex.database_url, "SELECT email FROM contacts")]
    assert sorted(emails) == ["after@example.com", "kept@example.com"]
    [row] = sql(fuzz_rex.database_url, "SELECT stage FROM contacts WHERE id = :i", i=contact["id"])
    assert row.stage == "lead"


# -- headers and URLs -------------------------------------------------------------------------


def test_odd_bytes_in_headers_and_urls_never_answer_5xx(fuzz_rex: RexServer) -> None:
    """Header values are Latin-1 on the wire: any byte from 0x80 up may come, and percent-escapes
    in a Referer or a query decode to anything, NUL included."""
    key = fuzz_rex.key.encode()
    body = b'{"email": "hdr@example.com"}'
    cases: list[tuple[str, str, dict[str, bytes]]] = [
        ("GET", "/contacts", {"X-Api-Key": b"rex_sk_\xff\xfe\xed\xa0\x80" + b"a" * 30}),
        ("GET", "/contacts", {"Authorization": b"Bearer \xff\xff"}),
        ("POST", "/contacts", {"X-Api-Key": key, "Idempotency-Key": b"\xff\xed\xa0\x80"}),
        ("POST", "/contacts", {"X-Api-Key": key, "Idempotency-Key": b"k" * 5000}),
        ("POST", "/capture", {"Host": b"\xff\xfe.example.test"}),
        ("POST", "/capture", {"Host": b"a" * 300 + b".example.test"}),
        ("POST", "/capture", {"Origin": b"https://\xff\xfe"}),
        ("POST", "/capture", {"Referer": b"https://a.test/?utm_source=\xff%ff%00&utm_medium=%00"}),
        ("POST", "/capture", {"Referer": b"http://[::1/?utm_source=x"}),
        ("POST", "/capture", {"Accept": b"\xff/\xff", "Accept-Language": b"\xff"}),
        ("GET", "/contacts?cursor=%ff%fe&limit=1e400", {"X-Api-Key": key}),
        ("GET", "/contacts?limit=99999999999999999999999", {"X-Api-Key": key}),
        ("GET", "/events?since=9999-99-99&until=%ff&type=%ed%a0%80", {"X-Api-Key": key}),
        ("GET", "/events?object_id=%00", {"X-Api-Key": key}),
        ("GET", "/contacts/cont_%ed%a0%80", {"X-Api-Key": key}),
        ("GET", "/deals/" + "a" * 5000, {"X-Api-Key": key}),
        ("GET", "/deliveries?endpoint=%ed%a0%80&failed=%ff", {"X-Api-Key": key}),
    ]
    with (
        httpx.Client(base_url=fuzz_rex.url, timeout=30) as client,
        snapshots(fuzz_rex.database_url) as snapshot,
    ):
        check = Checker(client, snapshot)
        for method, url, headers in cases:
            content = body if method == "POST" else b""
            check.send(method, url, content, JSON, headers)  # type: ignore[arg-type]
    rows = sql(fuzz_rex.database_url, "SELECT first_touch FROM contacts")
    assert all("\\u0000" not in str(r.first_touch) for r in rows)


# -- odd but valid input ----------------------------------------------------------------------

ODD_BUT_VALID = "\u202eevil\u202c e\u0301 \U0001f600 \U0010fffd \ufeff\uffff \u00a0\u2028 \u0000"[
    :-2
]


def test_repeated_keys_last_one_wins_and_odd_valid_values_read_back_exactly(
    fuzz_rex: RexServer,
) -> None:
    """A key repeated in a JSON object: the last one wins (as in JSON.parse, Python, orjson),
    on /capture and on the API alike. Numbers beyond 64 bits and odd but valid Unicode in
    free-form metadata are stored and read back exactly, on SQLite and PostgreSQL."""
    numbers = {"big": 2**64, "small": -(2**63) - 1, "tiny": 5e-324, "huge": 1.7976931348623157e308}
    metadata = encode({**numbers, "text": ODD_BUT_VALID, ODD_BUT_VALID: "key"}, ascii=False)
    capture = (
        b'{"email": "first@example.com", "first_name": "First", "email": "second@example.com",'
        b' "first_name": ' + encode(ODD_BUT_VALID) + b', "metadata": ' + metadata + b"}"
    )
    with fuzz_rex.client() as client:
        captured = client.post("/capture", content=capture, headers={"Content-Type": JSON})
        assert captured.status_code == 201, captured.text
        created = client.post(
            "/contacts",
            content=b'{"email": "a@example.com", "email": "b@example.com", "phone": "1",'
            b' "phone": null}',
            headers={"Content-Type": JSON},
        )
        assert created.status_code == 201, created.text
        deal = client.post("/deals", json={"name": "x", "currency": "EUR"}).json()["data"]
        patched = client.patch(
            f"/deals/{deal['id']}",
            content=b'{"name": "a", "amount": 5, "name": "b", "amount": 7}',
            headers={"Content-Type": JSON},
        )
        assert patched.status_code == 200, patched.text
        contact = client.get(f"/contacts/{captured.json()['data']['id']}").json()["data"]
        other = client.get(f"/contacts/{created.json()['data']['id']}").json()["data"]
        deal = client.get(f"/deals/{deal['id']}").json()["data"]
        [event] = client.get("/events", params={"object_id": contact["id"]}).json()["data"]
    assert contact["email"] == "second@example.com"
    assert contact["first_name"] == ODD_BUT_VALID.strip()
    stored = contact["metadata"]
    assert {k: v for k, v in stored.items() if k not in numbers} == {
        "text": ODD_BUT_VALID,
        ODD_BUT_VALID: "key",
    }
    assert (stored["big"], stored["small"]) == (2**64, -(2**63) - 1)  # exact, not floats
    # The same numbers; PostgreSQL's JSONB may write them out in full (1.79e308 as 179...0).
    assert float(stored["tiny"]) == 5e-324 and float(stored["huge"]) == numbers["huge"]
    assert event["data"]["metadata"] == stored
    assert (other["email"], other["phone"]) == ("b@example.com", None)
    assert (deal["name"], deal["amount"]) == ("b", 7)
    emails = {r.email for r in sql(fuzz_rex.database_url, "SELECT email FROM contacts")}
    assert emails == {"second@example.com", "b@example.com"}
