"""Serving `rex listen` sessions: the event stream, its wake-ups, and session expiry.

A connected ``rex listen`` holds one long ``GET /listen/sessions/{id}/stream`` open (Server-
Sent Events). The API process serving that request claims the session's due deliveries
(``rex.outbox.queue.claim_listen_deliveries``, with a lease like a worker's), sends each one
down the stream with the same signed headers a worker would send (``rex.worker.headers``),
and the CLI posts it to the local URL and reports the outcome (``POST
/listen/sessions/{id}/results``), which is recorded and retried like any other attempt
(``rex.worker.retry.outcome_for``). Nothing here needs the CLI and the stream to meet in the
same process: any number of API processes can serve streams and take reports.

Like the delivery worker, a stream is a long-running unit that opens its own short
transactions (one per claim or heartbeat); it is not a request handler's transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rex.db.engine import Database
from rex.ids import new_id, utcnow
from rex.json_types import JsonObject
from rex.listen import service
from rex.listen.schemas import StreamEvent
from rex.outbox import queue
from rex.policies import ListenConfig
from rex.worker.headers import signed_headers

log = structlog.get_logger("rex.listen")

Write = Callable[[bytes], Awaitable[None]]


def sse(event: StreamEvent, data: JsonObject, *, event_id: str | None = None) -> bytes:
    """One Server-Sent Event. The JSON is on one line (JSON strings escape newlines)."""
    lines = [f"event: {event}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


KEEPALIVE = b": keepalive\n\n"


class ListenHub:
    """This process's streams: wakes them when a local commit queued deliveries, and ends
    them all when the server begins shutting down (a stream never ends by itself, and the
    server would otherwise wait for it until its graceful-shutdown timeout).

    Commits in other processes are found by each stream's polling.
    """

    def __init__(self) -> None:
        self._wakers: set[asyncio.Event] = set()
        self.closing = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def wake(self) -> None:
        for waker in self._wakers:
            waker.set()

    def subscribe(self) -> asyncio.Event:
        waker = asyncio.Event()
        self._wakers.add(waker)
        return waker

    def unsubscribe(self, waker: asyncio.Event) -> None:
        self._wakers.discard(waker)

    def close(self) -> None:
        self.closing.set()

    def close_threadsafe(self) -> None:
        """``close`` from a signal handler or another thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.close)


class EventStream(Response):
    """A ``text/event-stream`` response fed by ``produce(write, disconnected)``.

    ``disconnected`` is set as soon as the client goes away, so the producer can stop
    waiting and clean up; whatever ``produce`` does in ``finally`` still runs then.
    """

    media_type = "text/event-stream"

    def __init__(self, produce: Callable[[Write, asyncio.Event], Awaitable[None]]) -> None:
        # As StreamingResponse does: no body, so no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        async def write(chunk: bytes) -> None:
            if disconnected.is_set():
                raise ConnectionResetError("the listener went away")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            with contextlib.suppress(ConnectionResetError, OSError):
                await self._produce(write, disconnected)
            if not disconnected.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


class SessionStreamer:
    """Feeds one connected ``rex listen``: claims its due deliveries and streams them."""

    def __init__(
        self,
        db: Database,
        config: ListenConfig,
        hub: ListenHub,
        session_id: str,
    ) -> None:
        self.db = db
        self.config = config
        self.hub = hub
        self.session_id = session_id
        self.connection_id = new_id("lcn")
        # The lease token: the CLI echoes it with each report (see record_report).
        self.worker_id = f"listen:{self.connection_id}"

    async def run(self, write: Write, disconnected: asyncio.Event) -> None:
        try:
            async with self.db.transaction() as conn:
                max_in_flight = await service.attach(
                    conn, self.session_id, self.connection_id, self.config, utcnow()
                )
        except Exception as exc:  # the database is down: end the stream, the CLI retries
            log.warning("listen_attach_failed", session=self.session_id, error=str(exc)[:200])
            return
        if max_in_flight is None:
            await write(sse("gone", {"message": "This listen session has expired."}))
            return
        log.info("listen_connected", session=self.session_id, connection=self.connection_id)
        waker = self.hub.subscribe()
        try:
            await write(
                sse("ready", {"session": self.session_id, "connection": self.connection_id})
            )
            await self._serve(write, disconnected, waker, max_in_flight)
        finally:
            self.hub.unsubscribe(waker)
            # Shielded: this must run even when the server cancels the request on shutdown.
            await asyncio.shield(self._detach())

    async def _serve(
        self, write: Write, disconnected: asyncio.Event, waker: asyncio.Event, max_in_flight: int
    ) -> None:
        heartbeat_every = self.config.heartbeat
        next_heartbeat = time.monotonic() + heartbeat_every
        stop_waiters = (disconnected, self.hub.closing)
        while not any(event.is_set() for event in stop_waiters):
            if time.monotonic() >= next_heartbeat:
                state = await self._heartbeat()
                if state == "superseded":
                    await write(
                        sse(
                            "superseded",
                            {"message": "Another rex listen connected to this session."},
                        )
                    )
                    return
                if state == "gone":
                    await write(sse("gone", {"message": "This listen session was removed."}))
                    return
                await write(KEEPALIVE)
                next_heartbeat = time.monotonic() + heartbeat_every
            waker.clear()
            for message in await self._claim(max_in_flight):
                await write(message)
            timeout = min(self.config.poll_interval, max(next_heartbeat - time.monotonic(), 0))
            await _wait_any((waker, *stop_waiters), timeout)

    async def _claim(self, max_in_flight: int) -> list[bytes]:
        now = utcnow()
        try:
            async with self.db.transaction() as conn:
                claimed = await queue.claim_listen_deliveries(
                    conn,
                    endpoint_id=self.session_id,
                    worker_id=self.worker_id,
                    now=now,
                    lease=self.config.lease,
                    max_in_flight=max_in_flight,
                )
        except Exception as exc:  # the database is down or busy: the next poll retries
            log.warning("listen_claim_failed", session=self.session_id, error=str(exc)[:200])
            return []
        timestamp = int(utcnow().timestamp())
        return [
            sse(
                "delivery",
                {
                    "id": delivery.id,
                    "event_id": delivery.event_id,
                    "event": delivery.event_type,
                    "attempt": delivery.attempt_count + 1,
                    "lease": self.worker_id,
                    "headers": signed_headers(delivery, timestamp),
                    "payload": delivery.payload.decode("utf-8"),
                },
                event_id=delivery.id,
            )
            for delivery in claimed
        ]

    async def _heartbeat(self) -> str:
        try:
            async with self.db.transaction() as conn:
                return await service.heartbeat(conn, self.session_id, self.connection_id, utcnow())
        except Exception as exc:
            log.warning("listen_heartbeat_failed", session=self.session_id, error=str(exc)[:200])
            return "ok"

    async def _detach(self) -> None:
        try:
            async with self.db.transaction() as conn:
                await service.detach(
                    conn, self.session_id, self.connection_id, self.worker_id, utcnow()
                )
        except Exception as exc:  # the heartbeats stopped: expiry still happens on time
            log.warning("listen_detach_failed", session=self.session_id, error=str(exc)[:200])
        log.info("listen_disconnected", session=self.session_id, connection=self.connection_id)


async def _wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def expire_sessions(db: Database, config: ListenConfig, stop: asyncio.Event) -> None:
    """Every so often, remove sessions not seen for the grace period (any process may)."""
    interval = max(min(config.grace_period / 4, 60.0), 0.2)
    while not stop.is_set():
        try:
            async with db.transaction() as conn:
                removed = await service.delete_expired(conn, config, utcnow())
            if removed:
                log.info("listen_sessions_expired", count=removed)
        except Exception as exc:
            log.warning("listen_expiry_failed", error=str(exc)[:200])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


class StreamQuota:
    """Streams connected at once per workspace, in this process (each holds a connection
    and a claim loop)."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, workspace_id: str, limit: int) -> bool:
        if self._open.get(workspace_id, 0) >= limit:
            return False
        self._open[workspace_id] = self._open.get(workspace_id, 0) + 1
        return True

    def release(self, workspace_id: str) -> None:
        left = self._open.get(workspace_id, 0) - 1
        if left > 0:
            self._open[workspace_id] = left
        else:
            self._open.pop(workspace_id, None)
