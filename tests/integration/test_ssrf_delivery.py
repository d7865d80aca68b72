"""The SSRF guard end to end: the worker resolves each destination at connect time, and a
refusal is a failed attempt with its error. Names are answered by a stub resolver injected
into the worker's transport: no DNS query leaves the machine."""

from __future__ import annotations

from typing import Any

import httpx

from rex.worker.ssrf import DestinationPolicy
from rex.worker.transport import REFUSED, AiohttpTransport
from tests.receiver import Receiver
from tests.support import StubResolver, make_settings, serve_rex, sql, wait_until

STRICT = {"allow_private_destinations": False, "retry_schedule": (0.2, 0.2)}


def attempts_to(database_url: str, endpoint_id: str) -> list[Any]:
    return sql(
        database_url,
        "SELECT a.* FROM attempts a JOIN deliveries d ON d.id = a.delivery_id"
        " WHERE d.endpoint_id = :e ORDER BY a.at",
        e=endpoint_id,
    )


def test_names_resolving_to_refused_addresses_are_recorded_failures(
    database_url: str, receiver: Receiver
) -> None:
    port = receiver.port
    resolver = StubResolver(
        {
            "private.test": ["10.0.0.7"],
            "metadata.test": ["169.254.169.254"],
            "cgnat.test": ["100.64.1.1"],
            "linklocal.test": ["fe80::1"],
            "multicast.test": ["224.0.0.1"],
            "unspecified.test": ["0.0.0.0"],
            "loopback.test": ["127.0.0.1"],
        }
    )
    settings = make_settings(database_url, **STRICT)
    transport = AiohttpTransport(DestinationPolicy(allow_private=False), resolver=resolver)
    expected = {
        "private.test": "10.0.0.7 is a private address (resolved from private.test)",
        "metadata.test": "169.254.169.254 is a cloud metadata address",
        "cgnat.test": "100.64.1.1 is a carrier-grade NAT (shared) address",
        "linklocal.test": "fe80::1 is a link-local address",
        "multicast.test": "224.0.0.1 is a multicast address",
        "unspecified.test": "0.0.0.0 is the unspecified address",
        "loopback.test": "127.0.0.1 is a loopback address",
    }
    with serve_rex(settings, transport=transport) as rex:
        hooks = {}
        with rex.client() as client:
            for name in expected:
                # Accepted at creation: names are not resolved then (DNS can change).
                response = client.post(
                    "/webhooks", json={"url": f"http://{name}:{port}/{name}", "events": ["*"]}
                )
                assert response.status_code == 201, response.text
                hooks[name] = response.json()["data"]["id"]
        httpx.post(f"{rex.url}/capture", json={"email": "ssrf@example.com"}).raise_for_status()

        def all_failed() -> bool:
            rows = sql(rex.database_url, "SELECT status FROM deliveries")
            return len(rows) == len(expected) and {r.status for r in rows} == {"failed"}

        wait_until(all_failed, timeout=30)
        for name, words in expected.items():
            attempts = attempts_to(rex.database_url, hooks[name])
            assert len(attempts) == 3, name  # refused every time, on the schedule
            for attempt in attempts:
                assert attempt.status_code is None and attempt.response_excerpt is None
                # One message for API clients, whatever the address (the log has it).
                assert attempt.error == REFUSED, (name, attempt.error)
                assert words.split()[0] not in attempt.error
        with rex.client() as client:
            shown = client.get(f"/webhooks/{hooks['metadata.test']}/deliveries").json()
            detail = client.get(f"/deliveries/{shown['data'][0]['id']}").json()["data"]
        assert detail["attempts"][0]["error"] == REFUSED  # no "cloud metadata" oracle
    assert receiver.requests == []  # nothing was ever dialled


class ChangingResolver(StubResolver):
    """Gives ``first`` for a name's first lookup and the table's answer afterwards: DNS that
    changes between two attempts."""

    def __init__(self, table: dict[str, list[str]], first: dict[str, list[str]]) -> None:
        super().__init__(table)
        self.first = dict(first)

    async def resolve(self, host: str, *args: Any, **kwargs: Any) -> Any:
        if host in self.first:
            self.table, saved = {**self.table, host: self.first.pop(host)}, self.table
            try:
                return await super().resolve(host, *args, **kwargs)
            finally:
                self.table = saved
        return await super().resolve(host, *args, **kwargs)


def test_each_attempt_resolves_again_and_allowed_networks_open_a_range(
    database_url: str, receiver: Receiver
) -> None:
    resolver = ChangingResolver(
        {"hooks.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.1"]},
        first={"hooks.test": ["10.20.30.40"]},
    )
    settings = make_settings(database_url, **STRICT, allowed_networks=["127.0.0.1/32"])
    policy = DestinationPolicy(allow_private=False, allowed_networks=settings.allowed_networks)
    transport = AiohttpTransport(policy, resolver=resolver)
    port = receiver.port

    with serve_rex(settings, transport=transport) as rex:
        with rex.client() as client:
            hooks = {
                name: client.post(
                    "/webhooks", json={"url": f"http://{name}:{port}/{name}", "events": ["*"]}
                ).json()["data"]["id"]
                for name in ("hooks.test", "mixed.test")
            }
            # A literal address inside REX_ALLOWED_NETWORKS is accepted at creation too...
            literal = client.post("/webhooks", json={"url": receiver.url("/lit"), "events": "*"})
            assert literal.status_code == 201, literal.text
            # ...and one outside it is not.
            outside = client.post(
                "/webhooks", json={"url": "http://127.0.0.2:9/x", "events": ["*"]}
            )
            assert outside.status_code == 422
            assert "loopback" in outside.json()["error"]["message"]
        httpx.post(f"{rex.url}/capture", json={"email": "dns@example.com"}).raise_for_status()

        # Refused while the name pointed at a private address, delivered once it moved to
        # an allowed one: the name is resolved and checked again at every attempt.
        [request] = receiver.wait_for(1, path="/hooks.test", timeout=20)
        receiver.wait_for(1, path="/lit", timeout=20)

        def finished() -> list[Any]:
            rows = sql(rex.database_url, "SELECT status FROM deliveries")
            return rows if {r.status for r in rows} <= {"delivered", "failed"} else []

        wait_until(finished, timeout=30)
        refused, delivered = attempts_to(rex.database_url, hooks["hooks.test"])
        mixed = attempts_to(rex.database_url, hooks["mixed.test"])
    assert refused.error == REFUSED and "10.20.30.40" not in refused.error
    assert delivered.status_code == 200 and delivered.error is None
    assert request.json()["data"]["email"] == "dns@example.com"
    # One allowed address does not make a name allowed: every address is checked.
    assert len(mixed) == 3
    assert all(a.error == REFUSED for a in mixed)
    assert not [r for r in receiver.requests if r.path == "/mixed.test"]


REFUSED_URLS = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "gopher://example.com:70/_x",
    "javascript:alert(1)",
    "https://user:password@example.com/hook",
    "https://user@example.com/hook",
    "https://:password@example.com/hook",
    "http://[::1]:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433/hook",
    "not a url",
]


def test_webhook_urls_with_credentials_bad_schemes_or_refused_addresses_are_422(
    database_url: str,
) -> None:
    with serve_rex(make_settings(database_url, **STRICT)) as rex, rex.client() as client:
        ok = client.post("/webhooks", json={"url": "https://example.com/h", "events": "*"})
        for url in REFUSED_URLS:
            created = client.post("/webhooks", json={"url": url, "events": ["*"]})
            assert created.status_code == 422, (url, created.text)
            assert created.json()["error"]["field"] == "url"
            patched = client.patch(f"/webhooks/{ok.json()['data']['id']}", json={"url": url})
            assert patched.status_code == 422, (url, patched.text)
        [row] = sql(rex.database_url, "SELECT url FROM endpoints")
    assert row.url == "https://example.com/h"
