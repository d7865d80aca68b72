"""``rex listen --forward-to URL``: a workspace's events on a local URL, with no tunnel.

The CLI connects out to Rex (``REX_URL``, ``REX_API_KEY``): it opens or resumes a listen
session (``POST /listen/sessions``), which is an endpoint with its own signing secret, then
holds ``GET /listen/sessions/{id}/stream`` open. Each delivery arrives there with the payload
and the signed headers Rex's workers send; the CLI posts it to the local URL unchanged,
reports the outcome (``POST /listen/sessions/{id}/results``: Rex records the attempt and
retries a failure on its normal schedule), and prints one line. A dropped connection is
re-opened with a bounded backoff; events created meanwhile are queued by Rex and arrive after
the reconnect, as long as it happens within the server's grace period (10 minutes by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import httpx
import typer

from rex.cli._errors import CliError
from rex.cli.api import ClientConfig, describe_transport_error, error_message
from rex.json_types import JsonObject

EXCERPT_BYTES = 1024
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0

Print = Callable[[str], None]


def _out(line: str) -> None:
    print(line, flush=True)


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


STOPPED = (
    "Stopped. Rex keeps queueing this session's events for a while; run the same command to resume."
)
STOP_GRACE = 10.0
"""Seconds a ^C may take to close connections before ``rex listen`` exits regardless."""


def _force_stop_after(seconds: float) -> None:
    """Exit with 130 after ``seconds`` unless the process has ended by then (a daemon timer:
    it dies with a process that stops in time)."""

    def stop() -> None:
        _err(STOPPED)
        os._exit(130)

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()


@dataclass(frozen=True)
class StreamedDelivery:
    id: str
    event_id: str
    event: str
    attempt: int
    lease: str
    headers: dict[str, str]
    payload: bytes

    @classmethod
    def from_json(cls, data: JsonObject) -> StreamedDelivery:
        return cls(
            id=str(data["id"]),
            event_id=str(data["event_id"]),
            event=str(data["event"]),
            attempt=int(data["attempt"]),
            lease=str(data["lease"]),
            headers={str(k): str(v) for k, v in data["headers"].items()},
            payload=str(data["payload"]).encode("utf-8"),
        )


class Transient(Exception):
    """The connection to Rex failed in a way a reconnect may fix."""


class SessionGone(Exception):
    """Rex no longer has the session (it expired or was deleted): open a new one."""


async def server_sent_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs from the lines of a ``text/event-stream``; comments skipped."""
    event, data = "message", list[str]()
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


class Listener:
    """Forwards one listen session's deliveries to ``forward_to`` until interrupted."""

    def __init__(
        self,
        config: ClientConfig,
        forward_to: str,
        events: list[str],
        *,
        out: Print = _out,
        err: Print = _err,
    ) -> None:
        self.config = config
        self.forward_to = forward_to
        self.events = events
        self.out = out
        self.err = err
        self.session: JsonObject = {}
        self.secret: str | None = None
        self._announced = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        api = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self.config.headers,
            timeout=self.config.client_timeout,
        )
        # Straight to the local URL: no proxy from the environment, no redirects followed
        # (a worker does not follow them either).
        local = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        delay = BACKOFF_START
        try:
            while True:
                try:
                    await self._open(api)
                    if await self._stream(api, local):
                        delay = BACKOFF_START  # the stream had been up
                    continue  # the server ended the stream: reconnect at once
                except SessionGone:
                    self.err("The listen session has expired on the server; opening a new one.")
                    continue
                except Transient as exc:
                    self.err(f"{exc}; reconnecting in {delay:g}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
        except asyncio.CancelledError:
            # ^C: asyncio.run cancels this task, then closes the clients and the loop's
            # executor. A full suite twice saw that shutdown outlast 30 s (cause not found);
            # a stop must never hang, so past STOP_GRACE the process says so and exits.
            _force_stop_after(STOP_GRACE)
            raise
        finally:
            for task in list(self._tasks):
                task.cancel()
            await api.aclose()
            await local.aclose()

    async def open_session(self, api: httpx.AsyncClient) -> JsonObject:
        """``POST /listen/sessions``: create, or resume within the grace period."""
        body = {"forward_to": self.forward_to, "events": self.events}
        try:
            response = await api.post("/listen/sessions", json=body)
        except httpx.TransportError as exc:
            raise Transient(describe_transport_error(exc, self.config.base_url)) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise Transient(error_message(response))
        if response.is_error:
            raise CliError(error_message(response))
        session: JsonObject = response.json()["data"]
        return session

    async def _open(self, api: httpx.AsyncClient) -> None:
        session = await self.open_session(api)
        if self.secret is not None and session["secret"] != self.secret:
            self.out(
                "The previous session had expired, so this is a new one with a new secret.\n"
                f"Your webhook signing secret is now {session['secret']}"
            )
        self.secret = session["secret"]
        self.session = session

    async def _stream(self, api: httpx.AsyncClient, local: httpx.AsyncClient) -> bool:
        """Read the stream until it ends; True if it got as far as ``ready``."""
        session_id = self.session["id"]
        # A read timeout well past the heartbeat spots a connection that died silently.
        read_timeout = float(self.session["keepalive"]) * 2 + 5
        timeout = httpx.Timeout(self.config.client_timeout, read=read_timeout)
        ready = False
        try:
            async with api.stream(
                "GET", f"/listen/sessions/{session_id}/stream", timeout=timeout
            ) as response:
                if response.status_code == 404:
                    raise SessionGone()
                if response.status_code >= 500 or response.status_code == 429:
                    await response.aread()
                    raise Transient(error_message(response))
                if response.is_error:
                    await response.aread()
                    raise CliError(error_message(response))
                async for event, data in server_sent_events(response.aiter_lines()):
                    message = json.loads(data)
                    if event == "ready":
                        self._ready()
                        ready = True
                    elif event == "delivery":
                        delivery = StreamedDelivery.from_json(message)
                        task = asyncio.create_task(self._forward(api, local, delivery))
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
                    elif event == "superseded":
                        raise CliError(
                            "another `rex listen` with the same key and --forward-to took over "
                            "this session; stopping this one"
                        )
                    elif event == "gone":
                        raise SessionGone()
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ReadTimeout):
                raise Transient("no heartbeat from Rex; the connection seems dead") from None
            raise Transient(describe_transport_error(exc, self.config.base_url)) from None
        if not ready:
            raise Transient("Rex closed the stream before it was ready")
        return ready

    def _ready(self) -> None:
        session = self.session
        if self._announced:
            self.err(f"Reconnected to {self.config.base_url}.")
            return
        self._announced = True
        events = ", ".join(session["events"])
        self.out(
            f"Ready! Forwarding events ({events}) from {self.config.base_url} to "
            f"{self.forward_to} (session {session['id']}).\n"
            f"Your webhook signing secret is {session['secret']} (^C to quit)"
        )
        if session.get("resumed"):
            pending = int(session.get("pending", 0))
            self.out(
                f"Resumed the existing session; {pending} event(s) queued while it was "
                "disconnected are on their way."
            )

    async def _forward(
        self, api: httpx.AsyncClient, local: httpx.AsyncClient, delivery: StreamedDelivery
    ) -> None:
        """POST one delivery to the local URL, report the outcome, print one line."""
        from rex.worker.transport import parse_retry_after  # (aiohttp: only when needed)

        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: float | None = None
        started = time.perf_counter()
        try:
            response = await local.post(
                self.forward_to,
                content=delivery.payload,
                headers=delivery.headers,
                timeout=float(self.session.get("timeout", 15)),
            )
            status_code = response.status_code
            excerpt = response.content[:EXCERPT_BYTES].decode("utf-8", "replace")
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        except httpx.TimeoutException:
            error = f"timed out after {self.session.get('timeout', 15)}s"
        except httpx.ConnectError as exc:
            error = f"cannot connect to {self.forward_to}: {exc or 'connection failed'}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency_ms = int((time.perf_counter() - started) * 1000)
        outcome = await self._report(
            api,
            {
                "delivery_id": delivery.id,
                "lease": delivery.lease,
                "status_code": status_code,
                "error": error,
                "latency_ms": latency_ms,
                "response_excerpt": excerpt,
                "retry_after": retry_after,
            },
        )
        self.out(_line(delivery, status_code, error, latency_ms, outcome))

    async def _report(self, api: httpx.AsyncClient, report: JsonObject) -> JsonObject:
        session_id = self.session["id"]
        try:
            response = await api.post(f"/listen/sessions/{session_id}/results", json=report)
        except httpx.TransportError as exc:
            # Not recorded: the lease will run out and Rex will send it again.
            return {"report_error": type(exc).__name__}
        if response.is_error:
            return {"report_error": error_message(response)}
        data: JsonObject = response.json()["data"]
        return data


def _line(
    delivery: StreamedDelivery,
    status_code: int | None,
    error: str | None,
    latency_ms: int,
    outcome: JsonObject,
) -> str:
    """``12:00:01  contact.created       evt_...  --> 200  (12 ms)`` and what happens next."""
    clock = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    result = str(status_code) if status_code is not None else f"error: {error}"
    line = f"{clock}  {delivery.event:<20} {delivery.event_id}  --> {result}  ({latency_ms} ms)"
    if delivery.attempt > 1:
        line += f"  attempt {delivery.attempt}"
    if "report_error" in outcome:
        return line + f"  [not recorded: {outcome['report_error']}; Rex will resend it]"
    if outcome.get("status") == "pending" and outcome.get("next_attempt_at"):
        line += f"  retry at {outcome['next_attempt_at']}"
    elif outcome.get("status") == "failed":
        line += "  failed: no retries left"
    return line


def _check_url(forward_to: str) -> str:
    try:
        url = httpx.URL(forward_to)
    except httpx.InvalidURL as exc:
        raise CliError(f"--forward-to {forward_to!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise CliError(
            f"--forward-to must be an http:// or https:// URL such as "
            f"http://127.0.0.1:3000/webhooks/rex, got {forward_to!r}"
        )
    return forward_to


def listen(
    forward_to: Annotated[
        str,
        typer.Option(
            "--forward-to",
            help="Local URL to POST each event to, e.g. http://127.0.0.1:3000/webhooks/rex.",
            show_default=False,
        ),
    ],
    events: Annotated[
        str, typer.Option(help='Comma-separated event names to forward, or "*" for all.')
    ] = "*",
    print_secret: Annotated[
        bool,
        typer.Option(
            "--print-secret",
            help="Print the session's signing secret and exit (to export it before starting).",
        ),
    ] = False,
) -> None:
    """Forward this workspace's events to a local URL, signed, without a tunnel.

    Prints the session's signing secret, then one line per delivery. Restarting with the
    same REX_URL, REX_API_KEY and --forward-to resumes the session (same secret, missed
    events delivered) within the server's grace period.
    """
    config = ClientConfig.load()
    names = [part.strip() for part in events.split(",") if part.strip()] or ["*"]
    listener = Listener(config, _check_url(forward_to), names)

    async def secret_only() -> None:
        async with httpx.AsyncClient(
            base_url=config.base_url, headers=config.headers, timeout=config.client_timeout
        ) as api:
            try:
                session = await listener.open_session(api)
            except Transient as exc:
                raise CliError(str(exc)) from None
        print(session["secret"], flush=True)

    if print_secret:
        asyncio.run(secret_only())
        return
    try:
        asyncio.run(listener.run())
    except KeyboardInterrupt:
        _err(STOPPED)
        raise typer.Exit(130) from None
