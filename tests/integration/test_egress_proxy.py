"""REX_PROXY_URL: every delivery goes through an HTTP egress proxy (a real one on 127.0.0.1,
``tests.proxy``), and the SSRF guard still refuses destinations before anything is sent."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rex.worker.ssrf import DestinationPolicy
from rex.worker.transport import REFUSED, AiohttpTransport, DeliveryFailed
from tests.proxy import ConnectProxy
from tests.receiver import Receiver
from tests.support import StubResolver, make_settings, serve_rex, serve_rex_process


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


def _certificates(directory: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file, for ``SSL_CERT_FILE``) and a TLS context for ``localhost`` and
    127.0.0.1 signed by it, made here: nothing is downloaded."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rex test CA")])
    ca_cert = certificate("Rex test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate("localhost", key, ca_name, ca_key, ca=False)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    return ca_file, context


def test_https_deliveries_go_through_a_connect_tunnel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `rex serve` process trusting a test CA: https deliveries are tunnelled with
    CONNECT (TLS end to end with the receiver), each one through the proxy."""
    ca_file, context = _certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    with Receiver(ssl_context=context) as receiver, ConnectProxy() as proxy:
        url = f"https://localhost:{receiver.port}/hook"
        settings = make_settings(f"sqlite:///{tmp_path}/rex.db", proxy_url=proxy.url)
        with serve_rex_process(settings) as rex, rex.client() as client:
            created = client.post("/webhooks", json={"url": url, "events": ["*"]})
            assert created.status_code == 201, created.text
            for i in range(2):
                client.post("/contacts", json={"email": f"t{i}@example.com"}).raise_for_status()
            got = receiver.wait_for(2, timeout=60)
        assert all(proxy.came_through(request.client) for request in got)
        assert set(proxy.seen()) == {f"CONNECT localhost:{receiver.port}"}
