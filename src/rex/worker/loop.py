"""The delivery worker: claims due deliveries, sends them signed, records every attempt.

One runs inside ``rex serve`` on SQLite; on PostgreSQL any number run side by side as
``rex worker`` processes (claims use ``FOR UPDATE SKIP LOCKED`` and leases; see
``rex.outbox.queue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import datetime
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from rex import tracing
from rex.clock import SYSTEM_CLOCK, Clock
from rex.db.clocksync import CLOCK
from rex.db.engine import Database, asyncpg_dsn, tune_socket
from rex.errors import StorageFull
from rex.ops import metrics
from rex.outbox import attempts, queue, traces
from rex.outbox.records import NOTIFY_CHANNEL, AttemptOutcome, ClaimedDelivery
from rex.policies import DeliveryConfig
from rex.worker.headers import signed_headers
from rex.worker.retention import prune_expired
from rex.worker.retry import Answer, outcome_for
from rex.worker.transport import DeliveryFailed, Transport

log = structlog.get_logger("rex.worker")

_MIN_IDLE_WAIT = 0.05
_MIN_CYCLE_INTERVAL = 0.005
# On a full disk the worker retries its cycle after 0.5 s, 1 s, 2 s... up to this: no hot
# loop (and no log line per cycle) while the disk stays full, and it resumes by itself
# within this long once space is freed.
_FULL_DISK_MAX_BACKOFF = 5.0


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
        config: DeliveryConfig,
        transport: Transport,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.transport = transport
        self.concurrency = concurrency or config.concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._kick = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Attempts sent whose outcome is not stored yet (their rows are still leased).
        self._finished: list[tuple[ClaimedDelivery, AttemptOutcome]] = []
        # Cycles refused in a row for a full disk, and until when (monotonic) to wait.
        self._full_disk_failures = 0
        self._paused_until = 0.0
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
                if self._paused_until > time.monotonic():
                    # Backing off (a full disk): kicks do not cut the pause short.
                    await asyncio.wait({stopping}, timeout=self._paused_until - time.monotonic())
                elif wait > 0:
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
                await asyncio.wait(self._in_flight, timeout=self.config.timeout + 5)
            await self._cycle(claim=False)
            log.info("worker_stopped", worker=self.worker_id)

    async def _cycle(self, *, claim: bool) -> float:
        """Record the finished attempts, claim what fits and start sending it; return how
        long to idle before the next cycle (a finishing attempt or a commit that queued
        deliveries wakes the worker sooner)."""
        free = self.concurrency - len(self._in_flight) if claim else 0
        finished, self._finished = self._finished, []
        if free <= 0 and not finished:
            return self.config.poll_interval  # a finishing attempt kicks us

        parents: dict[str, str] = {}

        async def record_and_claim(
            conn: AsyncConnection,
        ) -> tuple[list[str], list[ClaimedDelivery], datetime | None]:
            if not self.db.is_sqlite and CLOCK.due():
                # The database's clock (rex.db.clocksync): measured before the first claim
                # and every 30 s, so a machine clock that runs fast steals no lease.
                await CLOCK.measure(conn)
            # Read when the transaction runs, not before it waited for the write lock: the
            # claim (leases, due times, which secrets still sign) is decided at this time.
            now = self.clock.now()
            disabled: list[str] = []
            if finished:
                # First, so that the slots these attempts held are free for the claim.
                # It announces the endpoints it disabled (endpoint.disabled) itself.
                recorded = await attempts.record_attempts(
                    conn,
                    worker_id=self.worker_id,
                    results=finished,
                    disable_after=self.config.disable_after,
                    failing_after=self.config.failing_after,
                )
                disabled = recorded.disabled_endpoints
            if free <= 0:
                return disabled, [], None
            claimed = await queue.claim_due_deliveries(
                conn,
                worker_id=self.worker_id,
                now=now,
                lease=self.config.lease,
                limit=free,
            )
            # After a short claim, what is left is either not due yet, or waiting for an
            # endpoint at its concurrency limit (left out: one of our attempts finishing
            # kicks us, other workers' are found by polling), so this does not spin.
            next_due = await queue.next_due_at(conn, now) if len(claimed) < free else None
            if tracing.ENABLED and claimed:
                parents.update(await traces.traceparents(conn, [d.event_id for d in claimed]))
            return disabled, claimed, next_due

        try:
            # Urgent: on SQLite it goes before the requests waiting for the shared commit,
            # so that a flood of captures cannot starve their deliveries.
            disabled, claimed, next_due = await self.db.run_in_transaction(
                record_and_claim, urgent=True
            )
        except StorageFull:
            # The disk is full (STORAGE logged it once): back off, doubling, and keep the
            # outcomes for the cycle that succeeds once space is freed.
            self._finished[:0] = finished
            self._full_disk_failures += 1
            pause: float = min(0.5 * 2.0 ** (self._full_disk_failures - 1), _FULL_DISK_MAX_BACKOFF)
            self._paused_until = time.monotonic() + pause
            if self._full_disk_failures == 1:
                log.warning("worker_paused_storage_full", unrecorded=len(finished))
            return pause
        except Exception as exc:  # the database is down or locked: polling will retry
            # Outcomes not stored are kept for the next cycle; if the leases expire first,
            # the deliveries are sent again (at-least-once).
            self._finished[:0] = finished
            log.warning("worker_cycle_failed", error=str(exc)[:200], unrecorded=len(finished))
            return self.config.poll_interval
        if self._full_disk_failures:
            log.warning("worker_resumed", refused_cycles=self._full_disk_failures)
            self._full_disk_failures = 0
        for endpoint_id in disabled:
            log.warning("endpoint_disabled", endpoint=endpoint_id)
        if not claim:
            return 0.0
        for delivery in claimed:
            task = asyncio.create_task(self._deliver(delivery, parents.get(delivery.event_id)))
            self._in_flight.add(task)
            task.add_done_callback(self._attempt_done)
        if len(claimed) == free or self._finished:
            return 0.0
        if next_due is None:
            return self.config.poll_interval
        until_due = (next_due - self.clock.now()).total_seconds()
        return min(max(until_due, _MIN_IDLE_WAIT), self.config.poll_interval)

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._kick.set()

    async def _deliver(self, delivery: ClaimedDelivery, traceparent: str | None = None) -> None:
        if delivery.send_at is not None:
            # The endpoint's rate limit gave this delivery a slot (at most 0.2 s away).
            wait = (delivery.send_at - self.clock.now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
        if not tracing.ENABLED:
            await self._attempt(delivery, tracing.AttemptSpan(None))
            return
        with tracing.attempt_span(
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            endpoint_id=delivery.endpoint_id,
            attempt=delivery.attempt_count + 1,
            url_host=urlsplit(delivery.url).hostname,
            traceparent=traceparent,
        ) as span:
            await self._attempt(delivery, span)

    async def _attempt(self, delivery: ClaimedDelivery, span: tracing.AttemptSpan) -> None:
        at = self.clock.now()
        headers = signed_headers(delivery, int(at.timestamp()))
        started = time.perf_counter()
        status_code: int | None = None
        excerpt: str | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            response = await self.transport.post(
                delivery.url, delivery.payload, headers, self.config.timeout
            )
            status_code, excerpt = response.status_code, response.excerpt
            retry_after = response.retry_after
        except DeliveryFailed as exc:
            error = exc.error
        except Exception as exc:  # a bug in a transport must not lose the delivery
            log.exception("transport_error", delivery=delivery.id)
            error = f"internal error: {type(exc).__name__}"
        elapsed = time.perf_counter() - started
        latency_ms = int(elapsed * 1000)
        metrics.record_attempt(status_code, error, elapsed, delivery.event_id)
        outcome = outcome_for(
            self.config.retry,
            Answer(
                attempt=delivery.attempt_count + 1,
                at=at,
                status_code=status_code,
                error=error,
                latency_ms=latency_ms,
                excerpt=excerpt,
                retry_after=retry_after,
            ),
        )
        span.answered(status_code=status_code, error=error, result=outcome.status.value)
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

    async def _retention_loop(self, stop: asyncio.Event) -> None:
        """Prune old finished events now, then every ``retention_interval`` seconds."""
        if self.config.retention_days <= 0:
            return
        while not stop.is_set():
            try:
                removed = await prune_expired(
                    self.db, retention_days=self.config.retention_days, now=self.clock.now()
                )
            except Exception as exc:  # retried at the next run
                log.warning("retention_failed", error=str(exc)[:200])
            else:
                if removed:
                    log.info("retention_pruned", events=removed)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.retention_interval)

    async def _listen_for_notifications(self, stop: asyncio.Event) -> None:
        """PostgreSQL LISTEN on a dedicated connection: a wake-up hint, reconnected forever."""
        import asyncpg

        dsn = asyncpg_dsn(self.db.url)
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(dsn, timeout=self.db.timeout)
                # It idles for hours: keepalives make a silent partition end it (and the
                # termination listener below reconnects) within about the timeout.
                tune_socket(connection, self.db.timeout)
            except Exception as exc:
                log.warning("listen_connect_failed", error=str(exc)[:200])
                await asyncio.sleep(2)
                continue
            lost = asyncio.Event()
            connection.add_termination_listener(lambda *_, lost=lost: lost.set())
            try:
                await connection.add_listener(NOTIFY_CHANNEL, lambda *_: self.wake())
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
