"""The delivery worker: claims due deliveries, sends them signed, records every attempt.

One runs inside ``rex serve`` on SQLite; on PostgreSQL any number run side by side as
``rex worker`` processes (claims use ``FOR UPDATE SKIP LOCKED`` and leases; see
``rex.db.outbox``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import is_standard_webhooks_secret, sign, sign_standard_webhooks
from rex._version import __version__
from rex.db import outbox
from rex.db.engine import Database, asyncpg_dsn
from rex.db.outbox import AttemptOutcome, ClaimedDelivery, DeliveryStatus
from rex.delivery.retention import prune_expired
from rex.delivery.retry import next_state
from rex.delivery.transport import DeliveryFailed, Transport
from rex.ids import utcnow
from rex.ops import metrics
from rex.settings import Settings
from rex.webhooks import service as webhooks

log = structlog.get_logger("rex.worker")

USER_AGENT = f"Rex-Webhooks/{__version__}"
_MIN_IDLE_WAIT = 0.05
_MIN_CYCLE_INTERVAL = 0.005
RETENTION_INTERVAL = 3600.0
"""Seconds between two retention runs (the first runs when the worker starts)."""
GONE_REASON = "the endpoint answered 410 Gone: it asked not to receive webhooks any more"


def signed_headers(delivery: ClaimedDelivery, timestamp: int) -> dict[str, str]:
    """Every header a delivery carries, signatures included."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Rex-Event": delivery.event_type,
        "X-Rex-Event-Id": delivery.event_id,
        "X-Rex-Delivery-Id": delivery.id,
        "X-Rex-Signature": sign(delivery.payload, delivery.secrets, timestamp),
    }
    standard = [s for s in delivery.secrets if is_standard_webhooks_secret(s)]
    if standard:
        # Standard Webhooks (webhook-*) headers, for receivers using that library. The
        # message id is the event id: it stays the same across retries, as the spec asks.
        headers["webhook-id"] = delivery.event_id
        headers["webhook-timestamp"] = str(timestamp)
        headers["webhook-signature"] = sign_standard_webhooks(
            delivery.event_id, timestamp, delivery.payload, standard
        )
    return headers


class DeliveryWorker:
    """Runs until ``stop`` is set, then finishes the attempts in flight and returns.

    Each cycle is one transaction that records the attempts finished since the last cycle
    and claims what is due for the slots they freed; attempts are sent outside any
    transaction. Under load that is one commit for many attempts (and, on SQLite, it shares
    the commit of the requests being served), instead of one commit per attempt and per
    claim.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        transport: Transport,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.transport = transport
        self.concurrency = concurrency or settings.worker_concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._kick = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Attempts sent whose outcome is not stored yet (their rows are still leased).
        self._finished: list[tuple[ClaimedDelivery, AttemptOutcome]] = []
        db.on_deliveries_queued(self.wake)

    def wake(self) -> None:
        """Look for due deliveries now (called after commits that queued some)."""
        self._kick.set()

    async def run(self, stop: asyncio.Event) -> None:
        listener = None
        if not self.db.is_sqlite:
            listener = asyncio.create_task(self._listen_for_notifications(stop))
        retention = asyncio.create_task(self._retention_loop(stop))
        stopping = asyncio.create_task(stop.wait())
        log.info("worker_started", worker=self.worker_id, concurrency=self.concurrency)
        try:
            while not stop.is_set():
                started = time.monotonic()
                wait = await self._cycle(claim=True)
                # Wake-ups come with every commit that queues a delivery (hundreds a second
                # under load, to every worker): gather what arrives within a few
                # milliseconds into one cycle rather than run a cycle for each.
                pause = _MIN_CYCLE_INTERVAL - (time.monotonic() - started)
                if pause > 0:
                    await asyncio.wait({stopping}, timeout=pause)
                    wait -= pause
                if wait > 0:
                    kicked = asyncio.create_task(self._kick.wait())
                    await asyncio.wait(
                        {kicked, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                    )
                    kicked.cancel()
                self._kick.clear()
        finally:
            stopping.cancel()
            for background in (listener, retention):
                if background is not None:
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await background
            if self._in_flight:
                # SIGTERM: let attempts in flight finish (each is bounded by the timeout), so
                # their outcome is recorded instead of waiting for the lease to expire.
                await asyncio.wait(self._in_flight, timeout=self.settings.delivery_timeout + 5)
            await self._cycle(claim=False)
            log.info("worker_stopped", worker=self.worker_id)

    async def _cycle(self, *, claim: bool) -> float:
        """Record the finished attempts, claim what fits and start sending it; return how
        long to idle before the next cycle (a finishing attempt or a commit that queued
        deliveries wakes the worker sooner)."""
        free = self.concurrency - len(self._in_flight) if claim else 0
        finished, self._finished = self._finished, []
        if free <= 0 and not finished:
            return self.settings.delivery_poll_interval  # a finishing attempt kicks us
        now = utcnow()

        async def record_and_claim(
            conn: AsyncConnection,
        ) -> tuple[list[str], list[ClaimedDelivery], datetime | None]:
            disabled: list[str] = []
            if finished:
                # First, so that the slots these attempts held are free for the claim.
                recorded = await outbox.record_attempts(
                    conn,
                    worker_id=self.worker_id,
                    results=finished,
                    disable_after=self.settings.endpoint_disable_after or None,
                )
                disabled = recorded.disabled_endpoints
                for endpoint_id in disabled:
                    at = max(o.at for d, o in finished if d.endpoint_id == endpoint_id)
                    await webhooks.emit_endpoint_disabled(conn, endpoint_id, now=at)
            if free <= 0:
                return disabled, [], None
            claimed = await outbox.claim_due_deliveries(
                conn,
                worker_id=self.worker_id,
                now=now,
                lease=self.settings.delivery_lease,
                limit=free,
            )
            # After a short claim, what is left is either not due yet, or waiting for an
            # endpoint at its concurrency limit (left out: one of our attempts finishing
            # kicks us, other workers' are found by polling), so this does not spin.
            next_due = await outbox.next_due_at(conn, now) if len(claimed) < free else None
            return disabled, claimed, next_due

        try:
            # Urgent: on SQLite it goes before the requests waiting for the shared commit,
            # so that a flood of captures cannot starve their deliveries.
            disabled, claimed, next_due = await self.db.run_in_transaction(
                record_and_claim, urgent=True
            )
        except Exception as exc:  # the database is down or locked: polling will retry
            # Outcomes not stored are kept for the next cycle; if the leases expire first,
            # the deliveries are sent again (at-least-once).
            self._finished[:0] = finished
            log.warning("worker_cycle_failed", error=str(exc)[:200], unrecorded=len(finished))
            return self.settings.delivery_poll_interval
        for endpoint_id in disabled:
            log.warning("endpoint_disabled", endpoint=endpoint_id)
        if not claim:
            return 0.0
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._attempt_done)
        if len(claimed) == free or self._finished:
            return 0.0
        if next_due is None:
            return self.settings.delivery_poll_interval
        until_due = (next_due - utcnow()).total_seconds()
        return min(max(until_due, _MIN_IDLE_WAIT), self.settings.delivery_poll_interval)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._kick.set()

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        at = utcnow()
        headers = signed_headers(delivery, int(at.timestamp()))
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            response = await self.transport.post(
                delivery.url, delivery.payload, headers, self.settings.delivery_timeout
            )
            status_code, excerpt = response.status_code, response.excerpt
            retry_after = response.retry_after if status_code in (429, 503) else None
        except DeliveryFailed as exc:
            error = exc.error
        except Exception as exc:  # a bug in a transport must not lose the delivery
            log.exception("transport_error", delivery=delivery.id)
            error = f"internal error: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        latency_ms = int(elapsed * 1000)
        metrics.record_attempt(status_code, error, elapsed, delivery.event_id)
        outcome = self._outcome(delivery, at, status_code, error, latency_ms, excerpt, retry_after)
        log.info(
            "delivery_attempt",
            delivery=delivery.id,
            endpoint=delivery.endpoint_id,
            event_type=delivery.event_type,
            status_code=status_code,
            error=error,
            latency_ms=latency_ms,
            result=outcome.status.value,
        )
        self._finished.append((delivery, outcome))

    def _outcome(
        self,
        delivery: ClaimedDelivery,
        at: datetime,
        status_code: int | None,
        error: str | None,
        latency_ms: int,
        excerpt: str | None,
        retry_after: float | None,
    ) -> AttemptOutcome:
        disable = None
        if status_code == 410:
            status, next_at, disable = DeliveryStatus.FAILED, None, GONE_REASON
        else:
            status, next_at = next_state(
                self.settings, delivery.attempt_count + 1, at, status_code, retry_after
            )
        return AttemptOutcome(
            at=at,
            status_code=status_code,
            error=error,
            latency_ms=latency_ms,
            response_excerpt=excerpt,
            status=status,
            next_attempt_at=next_at,
            disable_endpoint=disable,
        )

    async def _retention_loop(self, stop: asyncio.Event) -> None:
        """Prune old finished events now, then every ``RETENTION_INTERVAL`` seconds."""
        if self.settings.retention_days <= 0:
            return
        while not stop.is_set():
            try:
                removed = await prune_expired(
                    self.db, retention_days=self.settings.retention_days, now=utcnow()
                )
            except Exception as exc:  # retried at the next run
                log.warning("retention_failed", error=str(exc)[:200])
            else:
                if removed:
                    log.info("retention_pruned", events=removed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETENTION_INTERVAL)

    async def _listen_for_notifications(self, stop: asyncio.Event) -> None:
        """PostgreSQL LISTEN on a dedicated connection: a wake-up hint, reconnected forever."""
        import asyncpg

        dsn = asyncpg_dsn(self.settings.database_url)
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(dsn)
            except Exception as exc:
                log.warning("listen_connect_failed", error=str(exc)[:200])
                await asyncio.sleep(2)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda *_, lost=lost: lost.set())
            try:
                await connection.add_listener(outbox.NOTIFY_CHANNEL, lambda *_: self.wake())
                waiters = {asyncio.create_task(lost.wait()), asyncio.create_task(stop.wait())}
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                if not stop.is_set():
                    log.warning("listen_connection_lost")
                    self.wake()  # anything notified while reconnecting is found by polling
            finally:
                with contextlib.suppress(Exception):
                    await connection.close(timeout=2)
