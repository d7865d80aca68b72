"""REX_PROXY_URL: every delivery goes through an HTTP egress proxy (a real one on 127.0.0.1,
``tests.proxy``), and the SSRF guard still refuses destinations before anything is sent."""

from __future__ import annotations

import pytest

from rex.worker.ssrf import DestinationPolicy
from rex.worker.transport import REFUSED, AiohttpTransport, DeliveryFailed
from tests.proxy import ConnectProxy
from tests.receiver import Receiver
from tests.support import StubResolver, make_settings, serve_rex


def test_every_delivery_goes_through_the_proxy(database_url: str, receiver: Receiver) -> None:
    with ConnectProxy() as proxy:
        settings = make_settings(database_url, proxy_url=proxy.url)
        with serve_rex(settings) as rex, rex.client() as client:
            created = client.post("/webhooks", json={"url": receiver.url(), "events": ["*"]})
            assert created.status_code == 201, created.text
            for i in range(3):
                client.post("/contacts", json={"email": f"p{i}@example.com"}).raise_for_status()
            got = receiver.wait_for(3)
        # The receiver's client, for each request, is a connection the proxy opened.
        assert all(proxy.came_through(request.client) for request in got), (
            [r.client for r in got],
            proxy.upstream_clients,
        )
        assert proxy.seen() == [f"POST {receiver.url()}"] * 3


async def test_the_guard_refuses_before_the_proxy_is_asked() -> None:
    """Names are resolved and checked by Rex first; only allowed targets reach the proxy,
    http ones as absolute-form requests and https ones through CONNECT."""
    resolver = StubResolver(
        {
            "hooks.test": ["127.0.0.1"],
            "internal.test": ["10.0.0.5"],
            "mixed.test": ["127.0.0.1", "192.168.1.1"],
        }
    )
    policy = DestinationPolicy(allow_private=False, allowed_networks=["127.0.0.1/32"])
    with Receiver() as receiver, ConnectProxy() as proxy:
        port = receiver.port
        async with AiohttpTransport(policy, resolver=resolver, proxy=proxy.url) as transport:
            answer = await transport.post(
                f"http://hooks.test:{port}/hook", b"{}", {"Content-Type": "application/json"}, 30
            )
            assert answer.status_code == 200
            for url in (
                f"http://internal.test:{port}/hook",
                f"https://internal.test:{port}/hook",
                f"http://mixed.test:{port}/hook",
                f"http://10.0.0.5:{port}/hook",
                f"http://nowhere.test:{port}/hook",
            ):
                with pytest.raises(DeliveryFailed) as refused:
                    await transport.post(url, b"{}", {}, 30)
                assert refused.value.error == REFUSED, url
            # https: a CONNECT tunnel (the receiver speaks plain HTTP, so TLS then fails).
            with pytest.raises(DeliveryFailed) as tls:
                await transport.post(f"https://hooks.test:{port}/hook", b"{}", {}, 30)
            assert tls.value.error != REFUSED
        assert proxy.seen() == [
            f"POST http://hooks.test:{port}/hook",
            f"CONNECT hooks.test:{port}",
        ]
        [request] = receiver.requests
        assert proxy.came_through(request.client)
