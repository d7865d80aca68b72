"""A real webhook receiver for tests: records what it gets, misbehaves on request.

An aiohttp server on 127.0.0.1 (a free port), running in a background thread
with its own event loop, so sync tests, async tests and subprocesses (it is
just a URL) can all send to it::

    from tests.receiver import Receiver, Reset, Respond, Slow

    with Receiver() as rx:
        rx.respond_with(500, Reset(), Respond(429, headers={"Retry-After": "1"}))
        ...  # point Rex at rx.url("/hook")
        first, second = rx.wait_for(2)
        assert first.json()["event"] == "contact.created"
        assert second.headers["x-rex-event-id"] == first.headers["X-Rex-Event-Id"]

Queued behaviours answer successive requests; after the queue, every request
gets the default (200 unless ``set_default`` changed it). A behaviour is one of

* an ``int``: that status with an empty body (``410``, ``500``...);
* ``Respond(status, body=..., headers=..., delay=...)``; a dict or list body is
  sent as JSON;
* ``Redirect(302, to="/elsewhere")``;
* ``Reset()``: abort the TCP connection (RST) without a response;
* ``Disconnect()``: close the connection (FIN) without a response;
* ``Slow(seconds, then=200)``: wait, then answer with ``then``;
  ``Hang()`` never answers (until the receiver stops);
* a callable taking the ``ReceivedRequest`` and returning one of the above.

Every request is recorded before its behaviour runs, including the ones that
are reset or hang. The ``receiver`` fixture below is available to a test
module that imports it, or to the whole suite with
``pytest_plugins = ["tests.receiver"]`` in the top-level ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import random
import socket
import ssl
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "Behaviour",
    "Disconnect",
    "Hang",
    "ReceivedRequest",
    "Receiver",
    "Redirect",
    "Reset",
    "Respond",
    "Slow",
    "receiver",
]


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as the receiver got it."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]  # case-insensitive: headers["x-rex-event"]
    body: bytes
    received_at: float  # time.time()
    client: tuple[str, int]  # the sender's (address, port)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def client_port(self) -> int:
        """The sender's source port: requests on one keep-alive connection share it."""
        return self.client[1]

    def __str__(self) -> str:
        qs = f"?{self.query_string}" if self.query_string else ""
        return f"{self.method} {self.path}{qs} ({len(self.body)} bytes)"


@dataclass(frozen=True)
class Respond:
    """Answer with ``status``, ``body`` (bytes, str, or JSON for a dict/list),
    ``headers``, after ``delay`` seconds."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Redirect:
    status: int = 302
    to: str = "/redirected"


@dataclass(frozen=True)
class Reset:
    """Abort the TCP connection with a RST, without a response."""


@dataclass(frozen=True)
class Disconnect:
    """Close the TCP connection cleanly (FIN), without a response."""


@dataclass(frozen=True)
class Slow:
    """Wait ``seconds`` (a client with a shorter timeout times out), then answer."""

    seconds: float
    then: Behaviour = 200


def Hang() -> Slow:
    """Never answer (until the receiver stops)."""
    return Slow(math.inf)


Behaviour: TypeAlias = (
    "int | Respond | Redirect | Reset | Disconnect | Slow | Callable[[ReceivedRequest], Behaviour]"
)

_RANDOM_FAILURES: tuple[Behaviour, ...] = (500, Reset(), Hang())


class Receiver:
    """A webhook receiver on ``host`` (127.0.0.1 or ::1), port chosen by the OS.

    Use it as a context manager (or call ``start``/``stop``). All methods are
    thread-safe.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        default: Behaviour = 200,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context  # serve https with it
        self.port = 0
        self.errors: list[BaseException] = []  # exceptions raised by callable behaviours
        self._default: Behaviour = default
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._requests: list[ReceivedRequest] = []
        self._changed = threading.Condition()
        self._random: random.Random | None = None
        self._random_p = 0.0
        self._random_failures = _RANDOM_FAILURES
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Receiver:
        if self._thread is not None:
            raise RuntimeError("the receiver is already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.setblocking(False)
            self.port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"Receiver:{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the receiver did not start within 10s")
        if self._startup_error is not None:
            self._thread.join()
            raise RuntimeError("the receiver failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving: hanging requests are released, connections closed."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        if thread.is_alive():
            raise RuntimeError("the receiver thread did not stop within 10s")

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc_type is None and self.errors:
            raise AssertionError(
                "a callable behaviour raised:\n"
                + "".join(traceback.format_exception(self.errors[0]))
            )

    def __repr__(self) -> str:
        return f"<Receiver {self.base_url} requests={len(self.requests)}>"

    # -- addresses -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    def url(self, path: str = "/hook") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    # -- behaviour -----------------------------------------------------------

    def respond_with(self, *behaviours: Behaviour) -> Receiver:
        """Queue behaviours for the next requests, in order (after any already queued)."""
        with self._changed:
            self._queue.extend(behaviours)
        return self

    def set_default(self, behaviour: Behaviour) -> Receiver:
        """What requests get once the queue is empty (initially 200)."""
        with self._changed:
            self._default = behaviour
        return self

    def fail_randomly(
        self,
        p: float,
        seed: int | None = None,
        *,
        failures: tuple[Behaviour, ...] = _RANDOM_FAILURES,
    ) -> Receiver:
        """Answer each request that would get the default with a random one of
        ``failures`` (500, a reset, a hang) with probability ``p``. Queued
        behaviours are not affected. ``p=0`` turns it off."""
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be between 0 and 1")
        with self._changed:
            self._random = random.Random(seed)
            self._random_p = p
            self._random_failures = failures
        return self

    def _next_behaviour(self) -> Behaviour:
        with self._changed:
            if self._queue:
                return self._queue.popleft()
            if self._random is not None and self._random.random() < self._random_p:
                return self._random.choice(self._random_failures)
            return self._default

    # -- what was received ---------------------------------------------------

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._changed:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests received so far."""
        with self._changed:
            self._requests.clear()

    def _matching(self, path: str | None) -> list[ReceivedRequest]:
        return [r for r in self._requests if path is None or r.path == path]

    def _timeout_message(self, n: int, timeout: float, path: str | None) -> str:
        got = self._matching(path)
        where = f" to {path}" if path is not None else ""
        lines = "".join(f"\n  {r}" for r in self.requests)
        return (
            f"expected {n} request(s){where} within {timeout}s, got {len(got)};"
            f" all requests received:{lines or ' none'}"
        )

    def wait_for(
        self, n: int, timeout: float = 10, *, path: str | None = None
    ) -> list[ReceivedRequest]:
        """Block until ``n`` requests (to ``path``, if given) have arrived and
        return the first ``n``; raise ``AssertionError`` listing what did arrive."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._matching(path)) >= n, timeout):
                raise AssertionError(self._timeout_message(n, timeout, path))
            return self._matching(path)[:n]

    async def wait_for_async(
        self, n: int, timeout: float = 10, *, path: str | None = None
    ) -> list[ReceivedRequest]:
        """``wait_for`` for async tests: does not block the event loop."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                got = self._matching(path)
                if len(got) >= n:
                    return got[:n]
                if time.monotonic() >= deadline:
                    raise AssertionError(self._timeout_message(n, timeout, path))
            await asyncio.sleep(0.01)

    def assert_no_requests(self, within: float = 0.0) -> None:
        """Assert nothing arrived (waiting ``within`` seconds for stragglers)."""
        with self._changed:
            self._changed.wait_for(lambda: bool(self._requests), within)
            if self._requests:
                lines = "".join(f"\n  {r}" for r in self._requests)
                raise AssertionError(f"expected no requests, got {len(self._requests)}:{lines}")

    # -- the server (runs in the receiver's thread) --------------------------

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._serve(sock))
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
        finally:
            sock.close()
            self._ready.set()

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            received_at=time.time(),
            client=(str(peer[0]), int(peer[1])) if peer else ("", 0),
        )
        with self._changed:
            self._requests.append(received)
            self._changed.notify_all()
        return await self._perform(self._next_behaviour(), request, received)

    async def _perform(
        self, behaviour: Behaviour, request: web.Request, received: ReceivedRequest
    ) -> web.StreamResponse:
        if isinstance(behaviour, bool):
            raise TypeError(f"not a behaviour: {behaviour!r}")
        if isinstance(behaviour, int):
            return web.Response(status=behaviour)
        if isinstance(behaviour, Respond):
            await self._sleep(behaviour.delay)
            return _response(behaviour)
        if isinstance(behaviour, Redirect):
            return web.Response(status=behaviour.status, headers={"Location": behaviour.to})
        if isinstance(behaviour, Slow):
            await self._sleep(behaviour.seconds)
            return await self._perform(behaviour.then, request, received)
        if isinstance(behaviour, (Reset, Disconnect)):
            transport = request.transport
            if transport is not None:
                if isinstance(behaviour, Reset):
                    sock = transport.get_extra_info("socket")
                    # SO_LINGER with a zero timeout makes close() send a RST.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    transport.abort()
                else:
                    transport.close()
            # aiohttp finds the transport closing and drops this response quietly.
            return web.Response(status=599)
        if callable(behaviour):
            try:
                chosen = behaviour(received)
            except Exception as exc:
                self.errors.append(exc)
                return web.Response(status=500, text="".join(traceback.format_exception(exc)))
            return await self._perform(chosen, request, received)
        raise TypeError(f"not a behaviour: {behaviour!r}")

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short when the receiver stops."""
        if seconds <= 0:
            return
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), None if math.isinf(seconds) else seconds)


def _response(spec: Respond) -> web.Response:
    headers = CIMultiDict(spec.headers)
    body = spec.body
    if isinstance(body, (dict, list)):
        headers.setdefault("Content-Type", "application/json")
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        body = body.encode()
    return web.Response(status=spec.status, body=body, headers=headers)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started ``Receiver``, stopped after the test."""
    with Receiver() as rx:
        yield rx
