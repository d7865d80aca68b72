"""The outbound HTTP sender used by the delivery worker.

``Transport`` is the seam: the worker only needs ``post`` and ``close``, so a
test or another HTTP stack can stand in for ``AiohttpTransport`` (the shape
follows httpx's ``_transports/base.py``).
"""

from __future__ import annotations

import asyncio
import codecs
import datetime
import email.utils
import errno
import math
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiohttp
import structlog
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from multidict import CIMultiDict
from yarl import URL

from rex.worker.ssrf import (
    DestinationPolicy,
    DestinationRefused,
    IPAddress,
    parse_ip_host,
    validate_endpoint_url,
)

__all__ = [
    "EXCERPT_BYTES",
    "MAX_RESPONSE_BYTES",
    "AiohttpTransport",
    "DeliveryFailed",
    "Transport",
    "TransportResponse",
    "parse_retry_after",
]

EXCERPT_BYTES = 1024
# What an API client sees when the destination policy refused an address, or a name did not
# resolve: one message, so attempts cannot map an internal network (the log has the detail).
REFUSED = "destination refused (the host did not resolve to an allowed address)"
_PUBLIC_ONLY = DestinationPolicy()
log = structlog.get_logger("rex.delivery")
# Bodies up to this size are read to the end so the connection can be reused;
# a larger body is cut off and its connection closed.
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class TransportResponse:
    """The HTTP response to one delivery attempt (whatever its status)."""

    status_code: int
    excerpt: str
    """The first 1 KiB of the body, decoded as UTF-8 with replacement characters."""
    retry_after: float | None
    """Seconds from a ``Retry-After`` header, None when absent or invalid."""


class DeliveryFailed(Exception):
    """No HTTP response was obtained; ``error`` says why in a few words."""

    def __init__(self, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        # What the log gets; ``error`` is what API clients see (REFUSED for refusals).
        self.detail = detail or error


class Transport(Protocol):
    """Sends one webhook attempt. Implementations never follow redirects."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """POST ``body`` to ``url`` within ``timeout`` seconds in total.

        Returns the response whatever its status; raises ``DeliveryFailed``
        when there is none (timeout, refused destination, network error).
        """
        ...

    async def close(self) -> None:
        """Release connections. The transport cannot be used afterwards."""
        ...


_DELTA_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an
    HTTP-date (a date in the past gives 0). None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP-dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _decode_excerpt(data: bytes, *, complete: bool) -> str:
    # An incremental decoder drops a multi-byte character cut in half at the
    # 1 KiB mark instead of turning it into U+FFFD.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    excerpt = data[:EXCERPT_BYTES]
    return decoder.decode(excerpt, final=complete and len(data) <= EXCERPT_BYTES)


class _PolicyResolver(AbstractResolver):
    """Resolves names, then refuses the whole name if any address is refused.

    Refusing on any (not just the first) address keeps a name with one public
    and one private record from being usable to reach the private one. The
    connector dials exactly the addresses returned here, so there is no gap
    for DNS rebinding between this check and the connect.
    """

    def __init__(self, policy: DestinationPolicy, resolver: AbstractResolver) -> None:
        self._policy = policy
        self._resolver = resolver
        # Names last resolved to an address that only REX_ALLOWED_NETWORKS opens.
        self.internal_hosts: set[str] = set()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            reason = _refusal_reason(self._policy, result["host"])
            if reason is not None:
                raise DestinationRefused(f"{reason} (resolved from {host})")
        if any(_refusal_reason(_PUBLIC_ONLY, r["host"]) for r in results):
            self.internal_hosts.add(host)
        else:
            self.internal_hosts.discard(host)
        return results

    async def close(self) -> None:
        await self._resolver.close()


def parse_proxy_url(value: str) -> tuple[URL, dict[str, str] | None]:
    """``REX_PROXY_URL`` as aiohttp takes it: the URL without credentials, and the
    ``Proxy-Authorization`` header its user and password make (None without)."""
    url = URL(value.strip())
    if url.scheme != "http" or not url.host:
        raise ValueError(
            f"the proxy URL must look like http://host:port (an HTTP CONNECT proxy), got {value!r}"
        )
    if url.user is None:
        return url, None
    auth = aiohttp.BasicAuth(url.user, url.password or "")
    return url.with_user(None), {"Proxy-Authorization": auth.encode()}


def _refusal_reason(policy: DestinationPolicy, address: str) -> str | None:
    try:
        return policy.refusal_reason(address)
    except ValueError:
        return f"{address} is not an IP address that can be checked"  # fail closed


def _find_refusal(exc: BaseException) -> DestinationRefused | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DestinationRefused):
            return current
        if isinstance(current, aiohttp.ClientConnectorError) and isinstance(
            current.os_error, DestinationRefused
        ):
            return current.os_error
        current = current.__cause__ or current.__context__
    return None


def _describe(exc: aiohttp.ClientError, host: str) -> str:
    """A short message for an attempt that got no HTTP response."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed for {host}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate verification failed for {host}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {host} failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        return f"could not connect to {host}: {exc.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed without a response"
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return "connection reset"
        return f"connection error: {exc.strerror or exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {exc.message}"
    return f"request failed: {exc}"


# URLs whose checks are kept (one per endpoint; forgotten all at once beyond this many).
_TARGETS_CACHED = 4096


@dataclass(frozen=True, slots=True)
class _Target:
    """What ``post`` decides from a URL alone, before sending anything."""

    host: str
    port: int
    literal_ip: IPAddress | None
    invalid: str | None = None
    """Why the URL cannot even be parsed."""
    refused: str | None = None
    """Why the policy refuses its literal IP host."""
    problem: str | None = None
    """What ``validate_endpoint_url`` finds wrong with it."""


def _check_url(url: str, policy: DestinationPolicy) -> _Target:
    try:
        parsed = URL(url)
        host = parsed.raw_host or ""
    except ValueError as exc:
        return _Target("", 0, None, invalid=f"URL is not valid: {exc}")
    # Refusing a literal IP here gives the same message whatever the spelling (aiohttp 3.14
    # rejects "2130706433" as not canonical, older versions dial it); _open_socket would
    # refuse it in any case.
    literal_ip = parse_ip_host(host)
    refused = policy.refusal_reason(literal_ip) if literal_ip is not None else None
    problem = None if refused is not None else validate_endpoint_url(url, policy)
    try:
        port = parsed.port or 0
    except ValueError:
        port = 0
    return _Target(host, port, literal_ip, refused=refused, problem=problem)


class AiohttpTransport:
    """``Transport`` on one aiohttp session with a keep-alive pool of up to
    ``limit`` connections, created lazily in the running event loop.

    Every address is checked against ``policy`` just before it is dialled.
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        limit: int = 256,
        resolver: AbstractResolver | None = None,
        proxy: str | None = None,
    ) -> None:
        """``resolver`` replaces aiohttp's default (``getaddrinfo`` in a thread);
        its answers are checked against ``policy`` all the same, and it is
        closed with the transport.

        ``proxy`` (``REX_PROXY_URL``, ``http://[user:password@]host:port``): every
        request goes through that HTTP proxy (``CONNECT`` for https targets,
        absolute-form requests for http ones). The target's name is resolved and
        checked against ``policy`` before anything is sent; the proxy itself is
        the operator's and may be on a private or loopback address."""
        self._policy = policy
        self._limit = limit
        self._resolver = resolver
        self._policy_resolver: _PolicyResolver | None = None
        self._proxy: URL | None = None
        self._proxy_headers: dict[str, str] | None = None
        if proxy:
            self._proxy, self._proxy_headers = parse_proxy_url(proxy)
        self._proxy_resolver: AbstractResolver | None = None
        self._session: aiohttp.ClientSession | None = None
        self._targets: dict[str, _Target] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def __aenter__(self) -> AiohttpTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_socket(self, addr_info: AddrInfoType) -> socket.socket:
        # The last gate, on every address actually dialled. aiohttp hands IP
        # literal hosts straight to the connect, skipping the resolver (and so
        # _PolicyResolver), so this is where literal IPs are checked for sure;
        # for names it re-checks what the resolver already allowed.
        family, type_, proto, _, sockaddr = addr_info
        reason = _refusal_reason(self._policy, str(sockaddr[0]))
        if reason is not None:
            raise DestinationRefused(reason)
        return socket.socket(family=family, type=type_, proto=proto)

    def _session_in_running_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._session is None:
            self._policy_resolver = _PolicyResolver(
                self._policy, self._resolver or DefaultResolver()
            )
            if self._proxy is None:
                connector = aiohttp.TCPConnector(
                    limit=self._limit,
                    resolver=self._policy_resolver,
                    socket_factory=self._open_socket,
                )
            else:
                # Only the proxy is ever dialled: targets were checked in post(),
                # before the request, by the policy resolver.
                self._proxy_resolver = DefaultResolver()
                connector = aiohttp.TCPConnector(limit=self._limit, resolver=self._proxy_resolver)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # post() enforces one deadline for the whole attempt (DNS,
                # connect, request, response) with asyncio.timeout_at.
                timeout=aiohttp.ClientTimeout(total=None),
                # Deliveries must not pick up cookies, proxies or .netrc
                # credentials, nor carry aiohttp's User-Agent.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                skip_auto_headers=("User-Agent",),
                # Bodies are only excerpted: no need to decompress (or to be
                # exposed to decompression bombs).
                auto_decompress=False,
            )
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("the transport is bound to the event loop it was first used in")
        return self._session

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        """POST ``body`` to ``url``; see ``Transport.post``."""
        session = self._session_in_running_loop()
        target = self._target(url)
        if target.invalid is not None:
            raise DeliveryFailed(target.invalid)
        host, literal_ip = target.host, target.literal_ip
        if target.refused is not None:
            log.info("destination_refused", host=host, detail=target.refused)
            raise DeliveryFailed(REFUSED, f"destination refused: {target.refused}")
        if target.problem is not None:
            raise DeliveryFailed(target.problem)
        if self._proxy is not None and literal_ip is None:
            await self._check_target(host, target.port)

        request_headers = CIMultiDict(headers)
        request_headers.setdefault("Accept-Encoding", "identity")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await session.post(
                    url,
                    data=body,
                    headers=request_headers,
                    allow_redirects=False,
                    proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                )
        except TimeoutError:
            raise DeliveryFailed(f"timed out after {timeout:g}s") from None
        except aiohttp.ClientError as exc:
            refusal = _find_refusal(exc)
            if refusal is not None:
                detail = f"destination refused: {refusal.reason}"
                log.info("destination_refused", host=host, detail=detail)
                raise DeliveryFailed(REFUSED, detail) from None
            if isinstance(exc, aiohttp.ClientConnectorDNSError):
                log.info("destination_refused", host=host, detail=_describe(exc, host))
                raise DeliveryFailed(REFUSED, _describe(exc, host)) from None
            raise DeliveryFailed(_describe(exc, host)) from exc
        # An address reachable only because REX_ALLOWED_NETWORKS opens it is internal: its
        # answer is never stored where API clients can read it back.
        internal = not self._policy.allow_private and (
            (literal_ip is not None and _PUBLIC_ONLY.refusal_reason(literal_ip) is not None)
            or (
                self._policy_resolver is not None
                and host.lower().rstrip(".") in self._policy_resolver.internal_hosts
            )
        )

        # The status line and headers decide the attempt. A body that stalls
        # or breaks off only shortens the excerpt.
        data = bytearray()
        complete = False
        try:
            async with asyncio.timeout_at(deadline):
                while len(data) < MAX_RESPONSE_BYTES:
                    chunk = await response.content.read(MAX_RESPONSE_BYTES - len(data))
                    if not chunk:
                        complete = True
                        break
                    data += chunk
                else:
                    complete = response.content.at_eof()
        except (TimeoutError, aiohttp.ClientError):
            pass
        finally:
            if complete:
                response.release()  # back to the keep-alive pool
            else:
                response.close()  # unread data: the connection cannot be reused
        if internal:
            log.info("internal_response_not_stored", host=host, status_code=response.status)
        return TransportResponse(
            status_code=response.status,
            excerpt="" if internal else _decode_excerpt(bytes(data), complete=complete),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _target(self, url: str) -> _Target:
        """What the URL alone decides, worked out once per URL: every delivery to an
        endpoint has the same URL, and parsing and checking it cost more than signing the
        body (a profile of a fan-out). The policy never changes, so neither does the answer;
        names are still checked at every connect (``_PolicyResolver``, ``_open_socket``)."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _TARGETS_CACHED:
                self._targets.clear()
            target = self._targets[url] = _check_url(url, self._policy)
        return target

    async def _check_target(self, host: str, port: int) -> None:
        """Through a proxy, aiohttp never resolves the target: resolve it here and refuse
        it, before anything is sent, if any address is one the policy refuses (the proxy
        resolves the name again; a filtering proxy such as smokescreen closes that gap)."""
        assert self._policy_resolver is not None
        try:
            await self._policy_resolver.resolve(host, port, socket.AF_UNSPEC)
        except DestinationRefused as exc:
            log.info("destination_refused", host=host, detail=exc.reason)
            raise DeliveryFailed(REFUSED, f"destination refused: {exc.reason}") from None
        except OSError as exc:
            detail = f"DNS lookup failed for {host}: {exc}"
            log.info("destination_refused", host=host, detail=detail)
            raise DeliveryFailed(REFUSED, detail) from None

    async def close(self) -> None:
        """Close the pooled connections; idempotent."""
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._policy_resolver is not None:
            # The connector does not close a resolver it was given.
            resolver, self._policy_resolver = self._policy_resolver, None
            await resolver.close()
        if self._proxy_resolver is not None:
            proxy_resolver, self._proxy_resolver = self._proxy_resolver, None
            await proxy_resolver.close()
