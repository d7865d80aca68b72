"""``rex serve``'s HTTP/1.1 protocol: uvicorn's httptools protocol with a read deadline and
a check of absolute-form request lines.

- **Read deadline.** A request (its line, headers and body) must arrive within
  ``REX_REQUEST_READ_TIMEOUT`` seconds of the connection opening or of the request's first
  byte; a slow client (slowloris) is disconnected then. Between requests uvicorn's own
  keep-alive timeout (``REX_KEEP_ALIVE_TIMEOUT``) applies. Responses, however long
  (``rex listen`` streams), are not limited.
- **Absolute-form request lines** (``POST http://acme.example/capture HTTP/1.1``): the
  ``Host`` header chooses the workspace, so a request line that names another host is a 400
  rather than silently ignored.

Duplicate ``Host`` headers are refused by ``rex.api.hosts.HostCheckMiddleware`` (any server).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("rex.http")


class _AbsoluteFormMismatch(Exception):
    pass


def _authority(host: bytes) -> str:
    return host.decode("latin-1").strip().lower().rstrip(".")


class RexHttpProtocol(HttpToolsProtocol):
    """Configured through ``make_protocol`` (uvicorn instantiates it per connection)."""

    read_timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            log.info("request_read_timeout client=%s", self.client)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        if self.url[:7].lower() == b"http://" or self.url[:8].lower() == b"https://":
            authority = urlsplit(self.url.decode("latin-1")).netloc.rsplit("@", 1)[-1]
            hosts = [value for name, value in self.headers if name == b"host"]
            if len(hosts) != 1 or _authority(hosts[0]) != authority.lower().rstrip("."):
                # Raised inside the parser's callback: uvicorn answers 400 and closes.
                log.info("absolute_form_host_mismatch client=%s", self.client)
                raise _AbsoluteFormMismatch
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        super().send_400_response(msg)


def make_protocol(read_timeout: float) -> type[RexHttpProtocol]:
    """The protocol class with this deadline (uvicorn takes a class, not an instance)."""
    return type("RexHttpProtocol", (RexHttpProtocol,), {"read_timeout": read_timeout})
