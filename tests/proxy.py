"""A small HTTP egress proxy for tests, on 127.0.0.1, in a thread of its own.

It serves both forms an HTTP client uses with a proxy: ``CONNECT host:port`` (a tunnel, for
https targets) and absolute-form requests (``POST http://host:port/path``, for http
targets). Every target is recorded, and so is the local address of every connection the
proxy opens upstream, so that a test can check that each request its receiver got came
through the proxy (the receiver sees that address as its client). Upstream connections go
to 127.0.0.1 whatever the host named (``upstream_host``): tests use names no DNS knows.
Absolute-form requests are sent upstream one per connection (``Connection: close``), so
each one is parsed and recorded here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType


class ConnectProxy:
    def __init__(self, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.port = 0
        self.targets: list[str] = []  # "CONNECT host:port" or "POST http://host:port/path"
        self.upstream_clients: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.targets)

    def came_through(self, client: tuple[str, int]) -> bool:
        with self._lock:
            return client in self.upstream_clients

    def __enter__(self) -> ConnectProxy:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(sock),), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, sock=sock)
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()

    async def _open_upstream(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.upstream_host, port)
        local = writer.get_extra_info("sockname")
        with self._lock:
            self.upstream_clients.add((str(local[0]), int(local[1])))
        return reader, writer

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            with self._lock:
                self.targets.append(f"{method} {target}")
            if method == "CONNECT":
                port = int(target.rsplit(":", 1)[1])
                up_reader, up_writer = await self._open_upstream(port)
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
                return
            # Absolute form: http://host:port/path -> origin form, one request upstream.
            rest = target.split("://", 1)[1]
            authority, _, path = rest.partition("/")
            port = int(authority.rsplit(":", 1)[1]) if ":" in authority else 80
            headers = [
                line
                for line in header_lines
                if line and not line.lower().startswith(("connection:", "proxy-"))
            ]
            length = next(
                (
                    int(h.split(":", 1)[1])
                    for h in headers
                    if h.lower().startswith("content-length:")
                ),
                0,
            )
            body = await reader.readexactly(length)
            up_reader, up_writer = await self._open_upstream(port)
            upstream_head = "\r\n".join(
                [f"{method} /{path} HTTP/1.1", *headers, "Connection: close", "", ""]
            )
            up_writer.write(upstream_head.encode("latin-1") + body)
            await up_writer.drain()
            await _pipe(up_reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            pass
        finally:
            for opened in (writer, up_writer):
                if opened is not None:
                    with contextlib.suppress(OSError):
                        opened.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
