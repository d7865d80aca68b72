"""AiohttpTransport against a real receiver on 127.0.0.1.

Every connection stays on the loopback interface. Names other than
``localhost`` (answered by /etc/hosts) go through a stub resolver, so no DNS
query leaves the machine; refusals of other addresses are only exercised on
paths that refuse before connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest

from rex.worker.ssrf import DestinationPolicy, DestinationRefused
from rex.worker.transport import (
    REFUSED,
    AiohttpTransport,
    DeliveryFailed,
    Transport,
    TransportResponse,
    parse_retry_after,
)
from tests.receiver import Disconnect, Hang, Receiver, Redirect, Reset, Respond, Slow
from tests.support import StubResolver, missing

HEADERS = {"Content-Type": "application/json", "User-Agent": "Rex-Webhooks/test"}
BODY = b'{"id": "evt_1", "event": "contact.created"}'
OPEN = DestinationPolicy(allow_private=True)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    async with AiohttpTransport(OPEN) as t:
        yield t


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- responses ---------------------------------------------------------------------


async def test_posts_body_and_headers(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Respond(200, body="ok"))
    response = await transport.post(rx.url("/hook"), BODY, HEADERS, 5)
    assert response == TransportResponse(status_code=200, excerpt="ok", retry_after=None)
    [request] = rx.requests
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.body == BODY
    assert request.headers["content-type"] == "application/json"
    assert request.headers["User-Agent"] == "Rex-Webhooks/test"
    assert request.headers["Content-Length"] == str(len(BODY))
    assert request.headers["Accept-Encoding"] == "identity"


async def test_sends_no_aiohttp_user_agent(rx: Receiver, transport: AiohttpTransport) -> None:
    await transport.post(rx.url(), BODY, {}, 5)
    [request] = rx.requests
    assert "User-Agent" not in request.headers
    assert "aiohttp" not in str(dict(request.headers)).lower()


async def test_cookies_are_not_kept_between_deliveries(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(Respond(200, headers={"Set-Cookie": "session=abc; Path=/"}))
    await transport.post(rx.url(), BODY, HEADERS, 5)
    await transport.post(rx.url(), BODY, HEADERS, 5)
    assert "Cookie" not in rx.requests[1].headers


async def test_excerpt_is_the_first_kib(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Respond(500, body="a" * 1000 + "b" * 2000))
    response = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert response.status_code == 500
    assert response.excerpt == "a" * 1000 + "b" * 24


async def test_excerpt_does_not_end_in_half_a_character(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(Respond(200, body="é" * 600), Respond(200, body=b"ok \xff\xfe"))
    cut = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert cut.excerpt == "é" * 512
    invalid = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert invalid.excerpt == "ok \ufffd\ufffd"


async def test_compressed_bodies_are_not_decompressed(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(
        Respond(200, body=gzip.compress(b"x" * 10_000), headers={"Content-Encoding": "gzip"})
    )
    response = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert response.status_code == 200
    assert len(response.excerpt) < 1024  # the compressed bytes, not 10 kB of "x"


async def test_a_huge_body_is_cut_off_and_its_connection_dropped(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(Respond(200, body=b"z" * (32 * 1024 * 1024)))
    response = await transport.post(rx.url(), BODY, HEADERS, 10)
    assert response.status_code == 200
    assert response.excerpt == "z" * 1024
    await transport.post(rx.url(), BODY, HEADERS, 5)
    first, second = rx.requests
    assert first.client_port != second.client_port  # the unread body was not reused


async def test_redirects_are_not_followed(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Redirect(302, rx.url("/elsewhere")), Redirect(307, rx.url("/elsewhere")))
    for status in (302, 307):
        response = await transport.post(rx.url("/hook"), BODY, HEADERS, 5)
        assert response.status_code == status
    assert [r.path for r in rx.requests] == ["/hook", "/hook"]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds(
    status: int, rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(Respond(status, headers={"Retry-After": "120"}))
    response = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert (response.status_code, response.retry_after) == (status, 120.0)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_as_http_date(
    status: int, rx: Receiver, transport: AiohttpTransport
) -> None:
    when = email.utils.formatdate(time.time() + 90, usegmt=True)
    rx.respond_with(Respond(status, headers={"Retry-After": when}))
    response = await transport.post(rx.url(), BODY, HEADERS, 5)
    assert response.status_code == status
    assert response.retry_after is not None
    assert 85 <= response.retry_after <= 90


async def test_retry_after_absent_invalid_or_past(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    rx.respond_with(
        429,
        Respond(429, headers={"Retry-After": "soon"}),
        Respond(503, headers={"Retry-After": "-5"}),
        Respond(503, headers={"Retry-After": past}),
    )
    results = [(await transport.post(rx.url(), BODY, HEADERS, 5)).retry_after for _ in range(4)]
    assert results == [None, None, None, 0.0]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after("Wed, 15 Nov 2023 00:13:20 GMT", now=now) == 7200.0
    assert parse_retry_after("Wednesday, 15-Nov-23 00:13:20 GMT", now=now) == 7200.0
    assert parse_retry_after("Wed Nov 15 00:13:20 2023", now=now) == 7200.0
    assert parse_retry_after("Tue, 14 Nov 2023 18:00:00 GMT", now=now) == 0.0


# -- failures without a response ---------------------------------------------------------


async def test_timeout(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Hang(), Slow(0.05))
    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as failed:
        await transport.post(rx.url(), BODY, HEADERS, 0.3)
    assert failed.value.error == "timed out after 0.3s"
    # Not early; the upper bound only says it was this timeout (Hang() never answers).
    assert 0.25 < time.monotonic() - started < 10
    assert (await transport.post(rx.url(), BODY, HEADERS, 5)).status_code == 200


async def test_timeout_message_uses_whole_seconds_when_it_can(
    rx: Receiver, transport: AiohttpTransport
) -> None:
    rx.respond_with(Slow(5))
    with pytest.raises(DeliveryFailed, match=r"^timed out after 1s$"):
        await transport.post(rx.url(), BODY, HEADERS, 1.0)


async def test_connection_reset(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Reset())
    with pytest.raises(DeliveryFailed) as failed:
        await transport.post(rx.url(), BODY, HEADERS, 5)
    assert failed.value.error == "connection reset"
    assert len(rx.requests) == 1  # the receiver got it, then reset
    assert (await transport.post(rx.url(), BODY, HEADERS, 5)).status_code == 200


async def test_closed_without_a_response(rx: Receiver, transport: AiohttpTransport) -> None:
    rx.respond_with(Disconnect())
    with pytest.raises(DeliveryFailed, match=r"^connection closed without a response$"):
        await transport.post(rx.url(), BODY, HEADERS, 5)


async def test_connection_refused(transport: AiohttpTransport) -> None:
    with pytest.raises(DeliveryFailed) as failed:
        await transport.post(f"http://127.0.0.1:{closed_port()}/hook", BODY, HEADERS, 5)
    assert failed.value.error == "connection refused"


async def test_dns_failure() -> None:
    resolver = StubResolver({})
    async with AiohttpTransport(OPEN, resolver=resolver) as transport:
        with pytest.raises(DeliveryFailed) as failed:
            await transport.post("http://hooks.example.invalid/x", BODY, HEADERS, 5)
    # API clients see one message for "no such name" and "refused" (no network map); the
    # detail is for the log.
    assert failed.value.error == REFUSED
    assert failed.value.detail == "DNS lookup failed for hooks.example.invalid"
    assert resolver.closed


async def test_invalid_urls_fail_without_a_request(transport: AiohttpTransport) -> None:
    for url, message in [
        ("ftp://127.0.0.1/", "scheme must be http or https"),
        ("http://user:secret@127.0.0.1/", "user name or password"),
        ("not a url", "spaces"),
    ]:
        with pytest.raises(DeliveryFailed, match=message):
            await transport.post(url, BODY, HEADERS, 5)


# -- the destination policy ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address"),
        (
            "http://localhost:{port}/hook",
            "127.0.0.1 is a loopback address (resolved from localhost)",
        ),
        ("http://2130706433:{port}/hook", "127.0.0.1 is a loopback address"),
        ("http://0x7f.1:{port}/hook", "127.0.0.1 is a loopback address"),
        ("http://127.1:{port}/hook", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/hook", "IPv4-mapped form of 127.0.0.1"),
        ("http://[::1]:{port}/hook", "::1 is a loopback address"),
        # Refused before any connect: these are never dialled.
        ("http://10.0.0.1:{port}/hook", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://0.0.0.0:{port}/hook", "0.0.0.0 is the unspecified address"),
    ],
)
async def test_refused_destinations_are_never_contacted(
    url: str, reason: str, rx: Receiver
) -> None:
    async with AiohttpTransport(DestinationPolicy()) as transport:
        with pytest.raises(DeliveryFailed) as failed:
            await transport.post(url.format(port=rx.port), BODY, HEADERS, 5)
    assert failed.value.error == REFUSED
    assert failed.value.detail.startswith("destination refused: ")
    assert reason in failed.value.detail
    rx.assert_no_requests(within=0.1)


async def test_a_name_with_any_refused_address_is_refused(rx: Receiver) -> None:
    # 127.0.0.2 is allowed and would be tried first; 127.0.0.1 is not, so the
    # whole name is refused (a mixed answer is how rebinding tricks look).
    resolver = StubResolver({"mixed.test": ["127.0.0.2", "127.0.0.1"]})
    policy = DestinationPolicy(allowed_networks=["127.0.0.2/32"])
    async with AiohttpTransport(policy, resolver=resolver) as transport:
        with pytest.raises(DeliveryFailed) as failed:
            await transport.post(f"http://mixed.test:{rx.port}/hook", BODY, HEADERS, 5)
    assert failed.value.detail == (
        "destination refused: 127.0.0.1 is a loopback address (resolved from mixed.test)"
    )
    rx.assert_no_requests(within=0.1)


async def test_a_resolved_name_is_dialled_at_the_checked_address(rx: Receiver) -> None:
    resolver = StubResolver({"hooks.test": ["127.0.0.1"]})
    policy = DestinationPolicy(allowed_networks=["127.0.0.1/32"])
    async with AiohttpTransport(policy, resolver=resolver) as transport:
        response = await transport.post(f"http://hooks.test:{rx.port}/hook", BODY, HEADERS, 5)
    assert response.status_code == 200
    [request] = rx.requests
    assert request.headers["Host"] == f"hooks.test:{rx.port}"


async def test_allowed_networks_let_loopback_through(rx: Receiver) -> None:
    policy = DestinationPolicy(allowed_networks=["127.0.0.0/8"])
    async with AiohttpTransport(policy) as transport:
        for url in (rx.url(), f"http://localhost:{rx.port}/hook"):
            assert (await transport.post(url, BODY, HEADERS, 5)).status_code == 200
    assert len(rx.requests) == 2


async def test_every_dialled_address_is_checked(rx: Receiver) -> None:
    # The socket factory is the last gate (aiohttp skips the resolver for
    # IP literals): it refuses before creating a socket.
    transport = AiohttpTransport(DestinationPolicy())
    addr_info = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", rx.port))
    with pytest.raises(DestinationRefused, match=r"127\.0\.0\.1 is a loopback address"):
        transport._open_socket(addr_info)
    allowed = AiohttpTransport(DestinationPolicy(allowed_networks=["127.0.0.1/32"]))
    allowed._open_socket(addr_info).close()


# -- connections ---------------------------------------------------------------


async def test_keep_alive_reuses_connections(rx: Receiver, transport: AiohttpTransport) -> None:
    for _ in range(50):
        assert (await transport.post(rx.url(), BODY, HEADERS, 5)).status_code == 200
    requests = rx.wait_for(50)
    assert len({r.client_port for r in requests}) == 1


async def test_concurrent_posts_share_a_bounded_pool(rx: Receiver) -> None:
    rx.set_default(Respond(200, delay=0.02))
    async with AiohttpTransport(OPEN, limit=5) as transport:
        responses = await asyncio.gather(
            *(transport.post(rx.url(), BODY, HEADERS, 10) for _ in range(50))
        )
    assert {r.status_code for r in responses} == {200}
    ports = {r.client_port for r in rx.wait_for(50)}
    assert 1 < len(ports) <= 5


async def test_close_is_idempotent_and_final(rx: Receiver) -> None:
    transport = AiohttpTransport(OPEN)
    await transport.post(rx.url(), BODY, HEADERS, 5)
    await transport.close()
    await transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        await transport.post(rx.url(), BODY, HEADERS, 5)


async def test_close_before_use() -> None:
    """Smoke test: closing a transport that never sent anything does not raise."""
    transport: Transport = AiohttpTransport(OPEN)  # a Transport: checked by mypy
    await transport.close()


async def test_random_failures_come_out_as_statuses_or_delivery_failures(rx: Receiver) -> None:
    rx.fail_randomly(0.5, seed=7, failures=(500, Reset(), Disconnect(), Slow(1)))
    outcomes: list[str] = []
    async with AiohttpTransport(OPEN) as transport:
        for _ in range(40):
            try:
                outcomes.append(
                    str((await transport.post(rx.url(), BODY, HEADERS, 0.3)).status_code)
                )
            except DeliveryFailed as exc:
                outcomes.append(exc.error)
    assert set(outcomes) == {
        "200",
        "500",
        "connection reset",
        "connection closed without a response",
        "timed out after 0.3s",
    }
    assert len(rx.wait_for(40)) == 40


# -- the test receiver itself ------------------------------------------------------


def _post_sync(url: str, body: bytes = b"{}") -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def test_receiver_from_sync_code() -> None:
    with Receiver() as rx:
        rx.respond_with(410, lambda request: 201 if request.json() == {"a": 1} else 400)
        assert _post_sync(rx.url("/a"), b"{}") == 410
        assert _post_sync(rx.url("/b?x=1"), b'{"a": 1}') == 201
        assert _post_sync(rx.url("/a")) == 200  # the default after the queue
        first, second = rx.wait_for(2)
        assert (first.path, second.path, second.query_string) == ("/a", "/b", "x=1")
        assert [r.path for r in rx.wait_for(2, path="/a")] == ["/a", "/a"]
        rx.clear()
        rx.assert_no_requests()


def test_receiver_wait_for_says_what_arrived() -> None:
    with Receiver() as rx:
        _post_sync(rx.url("/hook"), b"abc")
        with pytest.raises(AssertionError, match=r"expected 2 request\(s\) within 0.1s, got 1"):
            rx.wait_for(2, timeout=0.1)
        with pytest.raises(AssertionError, match=r"POST /hook \(3 bytes\)"):
            rx.wait_for(1, timeout=0.1, path="/other")


def test_receiver_reports_a_crashing_behaviour() -> None:
    def broken(request: object) -> int:
        raise KeyError("oops")

    rx = Receiver()
    with pytest.raises(AssertionError, match="a callable behaviour raised"), rx:
        rx.respond_with(broken)
        assert _post_sync(rx.url()) == 500


def test_receiver_stops_promptly_with_hanging_requests() -> None:
    rx = Receiver(default=Hang()).start()
    thread = threading.Thread(target=lambda: _post_sync_ignoring_errors(rx.url()))
    thread.start()
    rx.wait_for(1)
    started = time.monotonic()
    rx.stop()
    thread.join(5)
    # Below the 10 s that stop() would wait for a receiver thread held by a hanging request.
    assert time.monotonic() - started < 8
    assert not thread.is_alive()


def _post_sync_ignoring_errors(url: str) -> None:
    with contextlib.suppress(OSError):
        _post_sync(url)


async def test_receiver_on_ipv6_loopback_and_async_wait() -> None:
    if not socket.has_ipv6:
        missing("no IPv6")
    try:
        rx = Receiver(host="::1").start()
    except OSError:
        missing("::1 is not available")
    try:
        async with AiohttpTransport(DestinationPolicy(allowed_networks=["::1/128"])) as transport:
            task = asyncio.create_task(rx.wait_for_async(1, timeout=5))
            assert (await transport.post(rx.url(), BODY, HEADERS, 5)).status_code == 200
            [request] = await task
        assert request.client[0] == "::1"
    finally:
        rx.stop()
