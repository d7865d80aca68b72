"""POST /capture against abuse: honeypot, rate limits, trusted proxies, size limits, CORS.

Distinct clients are real: sockets bound to other loopback addresses (127.0.0.0/8 is all
loopback on Linux), or X-Forwarded-For through a proxy the settings trust.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from rex.settings import Settings
from tests.support import RexServer, make_settings, serve_rex, sql

JSON = {"Accept": "application/json"}
SITE = "https://www.acme.test"


@contextmanager
def rex_with(database_url: str, **settings: Any) -> Iterator[RexServer]:
    with serve_rex(make_settings(database_url, **settings)) as server:
        yield server


def client_from(address: str) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (a loopback address)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def count(rex: RexServer, table: str) -> int:
    return int(sql(rex.database_url, f"SELECT count(*) AS n FROM {table}")[0].n)


def stored_consent_ip(rex: RexServer, email: str) -> str:
    [row] = sql(rex.database_url, "SELECT consent FROM contacts WHERE email = :e", e=email)
    consent = row.consent if isinstance(row.consent, dict) else json.loads(row.consent)
    return str(consent["ip"])


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "rate_limited"
    assert "retry in" in error["message"]


# -- honeypot ---------------------------------------------------------------------------------


def test_filled_honeypot_answers_like_a_success_and_stores_nothing(rex: RexServer) -> None:
    lead = {"email": "bot@example.com", "first_name": "Bot", "utm_source": "spam"}
    caught = httpx.post(f"{rex.url}/capture", json={**lead, "_gotcha": "I am a bot"})
    real = httpx.post(f"{rex.url}/capture", json={**lead, "email": "human@example.com"})

    assert caught.status_code == real.status_code == 201
    assert caught.headers["content-type"] == real.headers["content-type"]
    fake, stored = caught.json()["data"], real.json()["data"]
    assert list(fake) == list(stored)
    assert fake["id"].startswith("cont_") and fake["id"] != stored["id"]
    assert {k: v for k, v in fake.items() if k not in ("id", "email", "created_at")} == {
        k: v for k, v in stored.items() if k not in ("id", "email", "created_at")
    }
    assert [r.email for r in sql(rex.database_url, "SELECT email FROM contacts")] == [
        "human@example.com"
    ]
    assert count(rex, "events") == 1


def test_filled_honeypot_in_a_browser_form_gets_the_same_redirect(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch("/workspace", json={"allowed_origins": [SITE]}).raise_for_status()
    form = {"email": "x@example.com", "_next": f"{SITE}/thanks"}

    caught = httpx.post(f"{rex.url}/capture", data={**form, "_gotcha": "http://spam.test"})
    real = httpx.post(f"{rex.url}/capture", data={**form, "_gotcha": ""})

    assert (caught.status_code, caught.headers["location"]) == (303, f"{SITE}/thanks")
    assert (real.status_code, real.headers["location"]) == (303, f"{SITE}/thanks")
    assert count(rex, "contacts") == 1
    assert count(rex, "events") == 1


def test_honeypot_never_touches_an_existing_contact(rex: RexServer) -> None:
    httpx.post(f"{rex.url}/capture", json={"email": "kept@example.com"}).raise_for_status()

    response = httpx.post(
        f"{rex.url}/capture",
        data={"email": "kept@example.com", "company": "Spam Inc", "_gotcha": "1"},
        headers=JSON,
    )

    assert response.status_code == 201
    [row] = sql(rex.database_url, "SELECT company FROM contacts")
    assert row.company is None
    assert count(rex, "events") == 1


# -- rate limits ------------------------------------------------------------------------------


def test_a_flood_from_one_ip_is_limited_while_another_ip_gets_through(database_url: str) -> None:
    with (
        rex_with(database_url, capture_rate_limit="5/hour") as rex,
        client_from("127.0.0.2") as flooder,
        client_from("127.0.0.3") as neighbour,
    ):
        flood = [
            flooder.post(f"{rex.url}/capture", json={"email": f"f{i}@example.com"})
            for i in range(8)
        ]
        other = neighbour.post(f"{rex.url}/capture", json={"email": "n@example.com"})

        assert [r.status_code for r in flood] == [201] * 5 + [429] * 3
        for response in flood[5:]:
            assert_rate_limited(response)
        assert other.status_code == 201
        assert count(rex, "contacts") == 6  # a refused capture writes nothing


def test_forwarded_for_from_a_trusted_proxy_separates_clients(database_url: str) -> None:
    with rex_with(
        database_url, capture_rate_limit="3/hour", trusted_proxies=["127.0.0.0/8"]
    ) as rex:

        def post(email: str, forwarded_for: str) -> httpx.Response:
            return httpx.post(
                f"{rex.url}/capture",
                json={"email": email, "consent": {"granted": True}},
                headers={"X-Forwarded-For": forwarded_for},
            )

        first = [post(f"a{i}@example.com", "198.51.100.7") for i in range(4)]
        # The client may prepend anything; the entry the proxy appended is what counts.
        other = post("b@example.com", "198.51.100.7, 198.51.100.8")

        assert [r.status_code for r in first] == [201, 201, 201, 429]
        assert_rate_limited(first[3])
        assert other.status_code == 201
        assert stored_consent_ip(rex, "a0@example.com") == "198.51.100.7"
        assert stored_consent_ip(rex, "b@example.com") == "198.51.100.8"


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(database_url: str) -> None:
    with rex_with(database_url, capture_rate_limit="3/hour") as rex:
        responses = [
            httpx.post(
                f"{rex.url}/capture",
                json={"email": f"s{i}@example.com", "consent": {"granted": True}},
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
            )
            for i in range(4)
        ]

        assert [r.status_code for r in responses] == [201, 201, 201, 429]
        assert stored_consent_ip(rex, "s0@example.com") == "127.0.0.1"


def test_a_proxy_outside_the_trusted_list_is_not_believed(database_url: str) -> None:
    with (
        rex_with(database_url, trusted_proxies=["127.0.0.9"]) as rex,
        client_from("127.0.0.4") as untrusted,
    ):
        untrusted.post(
            f"{rex.url}/capture",
            json={"email": "u@example.com", "consent": {"granted": False}},
            headers={"X-Forwarded-For": "198.51.100.7"},
        ).raise_for_status()

        assert stored_consent_ip(rex, "u@example.com") == "127.0.0.4"


def test_workspace_limit_and_its_override_in_workspace_settings(database_url: str) -> None:
    with rex_with(
        database_url, capture_rate_limit="off", capture_workspace_rate_limit="2/hour"
    ) as rex:

        def capture(i: int) -> httpx.Response:
            return httpx.post(f"{rex.url}/capture", json={"email": f"w{i}@example.com"})

        assert [capture(i).status_code for i in range(2)] == [201, 201]
        limited = capture(2)
        assert_rate_limited(limited)
        assert "workspace" in limited.json()["error"]["message"]

        with rex.client() as client:
            settings = client.patch("/workspace", json={"capture_rate_limit": "off"})
            assert settings.json()["data"]["capture_rate_limit"] == "off"
            assert capture(3).status_code == 201

            client.patch("/workspace", json={"capture_rate_limit": "1/hour"}).raise_for_status()
            assert capture(4).status_code == 201
            assert_rate_limited(capture(5))
            assert int(capture(6).headers["Retry-After"]) > 60

            client.patch("/workspace", json={"capture_rate_limit": None}).raise_for_status()
            assert client.get("/workspace").json()["data"]["capture_rate_limit"] is None


# -- size limits ------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_stores_nothing(database_url: str) -> None:
    with rex_with(database_url, max_body_bytes=4096) as rex:
        big = {"email": "big@example.com", "notes": "x" * 5000}
        declared = httpx.post(f"{rex.url}/capture", json=big)

        def chunks() -> Iterator[bytes]:
            yield b'{"email": "big@example.com", "notes": "'
            for _ in range(5):
                yield b"x" * 1000
            yield b'"}'

        streamed = httpx.post(
            f"{rex.url}/capture", content=chunks(), headers={"Content-Type": "application/json"}
        )
        form = httpx.post(f"{rex.url}/capture", data=big, headers={"Accept": "text/html"})

        assert declared.status_code == 413
        assert declared.json()["error"]["type"] == "payload_too_large"
        assert "transfer-encoding" in streamed.request.headers
        assert streamed.status_code == 413
        assert streamed.json()["error"]["type"] == "payload_too_large"
        assert form.status_code == 413
        assert "4096 bytes" in form.text
        assert count(rex, "contacts") == 0


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"metadata[a][b][c][d]": "deep"}, "metadata.a.b.c.d", "3 levels"),
        ({"metadata[" + "k" * 101 + "]": "v"}, None, "at most 100 characters"),
    ],
)
def test_metadata_limits_are_a_clear_422(
    rex: RexServer, form: dict[str, str], field: str | None, words: str
) -> None:
    """Metadata the sender addressed to Rex (``metadata[...]``) over a limit is refused."""
    response = httpx.post(
        f"{rex.url}/capture", data={"email": "m@example.com", **form}, headers=JSON
    )

    assert response.status_code == 422
    error = response.json()["error"]
    assert words in error["message"]
    if field:
        assert error["field"] == field
    assert count(rex, "contacts") == 0


@pytest.mark.parametrize(
    ("form", "left_out"),
    [
        ({f"field{i}": "v" for i in range(51)}, "field50"),
        ({"notes": "x" * 2001}, "notes"),
    ],
)
def test_extras_over_the_metadata_limits_are_left_out_not_refused(
    rex: RexServer, form: dict[str, str], left_out: str
) -> None:
    """Unknown fields are extras: those that fit metadata's limits are kept there, the others
    only in the submission's raw body; the lead is not refused for them."""
    response = httpx.post(
        f"{rex.url}/capture", data={"email": "m@example.com", **form}, headers=JSON
    )

    assert response.status_code in (200, 201), response.text
    [row] = sql(rex.database_url, "SELECT metadata FROM contacts")
    metadata = row.metadata if isinstance(row.metadata, dict) else json.loads(row.metadata)
    assert left_out not in metadata
    [sub] = sql(rex.database_url, "SELECT status, raw_body FROM submissions")
    assert sub.status == "accepted"
    assert left_out in sub.raw_body


# -- CORS -------------------------------------------------------------------------------------


def preflight(rex: RexServer, origin: str, method: str = "POST") -> httpx.Response:
    return httpx.options(
        f"{rex.url}/capture",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_cors_for_the_workspaces_allowed_origins_only(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch("/workspace", json={"allowed_origins": [SITE]}).raise_for_status()

    allowed = preflight(rex, SITE)
    refused = preflight(rex, "https://evil.test")
    wrong_method = preflight(rex, SITE, "DELETE")

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SITE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "content-type" in allowed.headers["access-control-allow-headers"].lower()
    assert "Origin" in allowed.headers["vary"]
    assert "access-control-allow-credentials" not in allowed.headers
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    assert "allowed_origins" in refused.json()["error"]["message"]
    assert wrong_method.status_code == 403

    post = httpx.post(
        f"{rex.url}/capture", json={"email": "c@example.com"}, headers={"Origin": SITE}
    )
    assert post.status_code == 201
    assert post.headers["access-control-allow-origin"] == SITE
    assert "access-control-allow-credentials" not in post.headers
    assert "Origin" in post.headers["vary"]

    foreign = httpx.post(
        f"{rex.url}/capture", json={"email": "d@example.com"}, headers={"Origin": "https://x.test"}
    )
    assert "access-control-allow-origin" not in foreign.headers

    # Errors carry CORS too, so the page's script can show the message.
    error = httpx.post(f"{rex.url}/capture", json={"email": "nope"}, headers={"Origin": SITE})
    assert error.status_code == 422
    assert error.headers["access-control-allow-origin"] == SITE


def test_no_cors_until_the_operator_allows_an_origin(rex: RexServer) -> None:
    response = preflight(rex, SITE)

    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_star_is_sent_only_when_configured(rex: RexServer) -> None:
    with rex.client() as client:
        client.patch("/workspace", json={"allowed_origins": ["*"]}).raise_for_status()

    response = preflight(rex, "https://anyone.test")
    post = httpx.post(
        f"{rex.url}/capture", json={"email": "s@example.com"}, headers={"Origin": "https://a.test"}
    )

    assert response.headers["access-control-allow-origin"] == "*"
    assert post.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in post.headers


def test_rate_limited_answers_carry_cors_and_expose_retry_after(database_url: str) -> None:
    with rex_with(database_url, capture_rate_limit="1/hour") as rex:
        with rex.client() as client:
            client.patch("/workspace", json={"allowed_origins": [SITE]}).raise_for_status()
        headers = {"Origin": SITE}
        httpx.post(f"{rex.url}/capture", json={"email": "a@example.com"}, headers=headers)
        limited = httpx.post(f"{rex.url}/capture", json={"email": "b@example.com"}, headers=headers)

        assert_rate_limited(limited)
        assert limited.headers["access-control-allow-origin"] == SITE
        assert "Retry-After" in limited.headers["access-control-expose-headers"]


def test_repeated_captures_cannot_inflate_a_contacts_metadata(rex: RexServer) -> None:
    for batch in range(3):
        fields = {f"b{batch}k{i}": "v" for i in range(50)}
        response = httpx.post(
            f"{rex.url}/capture", data={"email": "fat@example.com", **fields}, headers=JSON
        )
        assert response.status_code in (200, 201)

    [row] = sql(rex.database_url, "SELECT metadata FROM contacts")
    metadata = row.metadata if isinstance(row.metadata, dict) else json.loads(row.metadata)
    assert len(metadata) == 100
    assert "b2k0" not in metadata


def test_default_limit_is_60_a_minute_per_ip(database_url: str) -> None:
    defaults = Settings(_env_file=None, database_url=database_url)  # type: ignore[call-arg]
    statuses: list[int] = []
    with serve_rex(defaults) as rex, httpx.Client(timeout=30) as client:
        # A burst of 60, then one more a second: sending faster than that meets a 429 soon
        # after the 60th (bounded, so a very slow machine fails instead of looping).
        for i in range(300):
            response = client.post(f"{rex.url}/capture", json={"email": f"d{i}@example.com"})
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Retry-After"] == "1"
                break

    assert statuses[:60] == [201] * 60
    assert statuses[-1] == 429
