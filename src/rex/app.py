"""The ASGI application: ``create_app(settings)`` wires storage, routers and the worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI

from rex._version import __version__
from rex.api.deps import authenticated_routes
from rex.api.errors import DatabaseErrorsMiddleware, install_error_handlers
from rex.api.hosts import HostCheckMiddleware
from rex.api.idempotency import IdempotencyMiddleware
from rex.api.limits import RequestGuardMiddleware
from rex.api.openapi import install_openapi
from rex.api.query import ONE_VALUE_PER_SCALAR
from rex.api.requests import RequestContextMiddleware
from rex.api.warmup import build_routes
from rex.capture.router import router as capture_router
from rex.clock import Clock
from rex.consent.router import router as consent_router
from rex.console import install_console
from rex.contacts.router import router as contacts_router
from rex.db.clocksync import CLOCK
from rex.db.engine import Database
from rex.deals.router import router as deals_router
from rex.delivery.router import router as deliveries_router
from rex.events.router import router as events_router
from rex.events.router import types_router as event_types_router
from rex.events.webhooks import register_webhooks
from rex.forms.router import router as forms_router
from rex.listen.router import router as listen_router
from rex.listen.stream import expire_sessions
from rex.mail.mailer import Mailer
from rex.mail.transport import MailTransport, RoutingTransport
from rex.ops.docs import install_docs
from rex.ops.health import Heartbeat
from rex.ops.keys import UsageRecorder
from rex.ops.lifecycle import release_leases
from rex.ops.router import keys_router
from rex.ops.router import router as ops_router
from rex.outbox import queue
from rex.pipelines.router import router as pipelines_router
from rex.runtime import Runtime
from rex.settings import Settings
from rex.submissions.router import router as submissions_router
from rex.tasks.router import router as tasks_router
from rex.webhooks.router import router as webhooks_router
from rex.worker.loop import DeliveryWorker
from rex.worker.transport import AiohttpTransport, Transport
from rex.workspaces import service as workspaces
from rex.workspaces.router import router as workspace_router

API_DESCRIPTION = """\
Rex captures leads, keeps contacts, deals and tasks, and tells your systems about every change
through signed, retried webhooks (see **Webhooks** below for every payload).

**Authentication.** Every endpoint but `POST /capture` and `/healthz` takes an API key as
`X-Api-Key: <key>` or `Authorization: Bearer <key>` (`rex keys create` makes one). A key sees
only its own workspace: another workspace's objects answer 404, exactly like missing ones.

**Envelope.** One object is `{"data": {...}}`; a list is `{"data": [...], "next_cursor": ...}`
(newest first; pass `next_cursor` back as `cursor`, `null` on the last page).

**Errors.** Any non-2xx carries `{"error": {"type", "message", "field", "request_id"}}`
(`request_id`: the `X-Request-Id` of the request, echoed or made). Bad input is a 4xx
and writes nothing.

**Idempotency.** Every authenticated `POST` accepts `Idempotency-Key`: a repeat with the same
key and body within 24 hours returns the first response without writing again.
"""


def create_app(
    settings: Settings | None = None,
    *,
    run_worker: bool | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    on_deliveries_queued: Callable[[], None] | None = None,
    worker_process_id: str | None = None,
) -> FastAPI:
    """Build the app. ``run_worker`` defaults to True on SQLite (the embedded worker), which
    sends with ``transport`` (default: ``AiohttpTransport`` under the destination policy; it
    is closed at shutdown). ``clock`` (default: the system's) is the time the app and its
    worker decide durations by (see ``rex.clock``). ``on_deliveries_queued`` is called after
    each commit that queued deliveries (``rex serve`` wakes its worker process with it)."""
    settings = settings or Settings()
    embedded_worker = settings.is_sqlite if run_worker is None else run_worker
    runtime = Runtime.from_settings(settings, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.database_url,
            pool_size=settings.pool_size,
            timeout=settings.database_timeout,
        )
        await db.migrate()
        async with db.transaction() as conn:
            await workspaces.ensure_default_workspace(conn)
        runtime.open(db)
        runtime.key_usage = UsageRecorder(db)
        stop = asyncio.Event()
        # PostgreSQL: the database's clock, measured before serving (rex.db.clocksync).
        await CLOCK.ensure(db)
        clock_task = asyncio.create_task(CLOCK.run(db, stop))
        worker_task = heartbeat_task = None
        hub = runtime.listen_hub
        hub.bind(asyncio.get_running_loop())
        db.on_deliveries_queued(hub.wake)
        if on_deliveries_queued is not None:
            db.on_deliveries_queued(on_deliveries_queued)
        expiry_task = asyncio.create_task(expire_sessions(db, settings.listen, stop))
        # mailto: endpoints (forms' new-lead emails) go through the mailer.
        sender = RoutingTransport(
            transport or AiohttpTransport(runtime.destination_policy, proxy=settings.proxy_url),
            MailTransport(Mailer(settings.smtp_url, settings.mail_from)),
        )
        if embedded_worker:
            if db.is_sqlite:
                # One worker per SQLite database: leases left by a previous run are stale.
                async with db.transaction() as conn:
                    await queue.release_all_leases(conn)
            worker = DeliveryWorker(db, settings.delivery, sender, clock=runtime.clock)
            runtime.worker_id = worker.worker_id
            heartbeat = Heartbeat(db, worker.worker_id, kind="embedded")
            await heartbeat.beat()
            worker_task = asyncio.create_task(worker.run(stop))
            heartbeat_task = asyncio.create_task(heartbeat.run(stop))
        elif worker_process_id is not None:
            # `rex serve`'s worker process beats under this id; its first beat is written
            # here, before serving, as the inline worker's is.
            runtime.worker_id = worker_process_id
            await Heartbeat(db, worker_process_id, kind="embedded").beat()
        try:
            yield
        finally:
            stop.set()
            hub.close()
            await expiry_task
            await clock_task
            if worker_task is not None:
                await worker_task
                await release_leases(db, worker.worker_id)
            if heartbeat_task is not None:
                await heartbeat_task
            await runtime.key_usage.close()
            await sender.close()
            await db.close()

    app = FastAPI(
        title="Rex",
        version=__version__,
        summary="Lead capture, contacts, deals and tasks, with signed, retried webhooks.",
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (rex.ops.docs): offline
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    # Innermost first: the guard bounds and checks the body before idempotency buffers it.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=settings.max_request_bytes)
    app.add_middleware(DatabaseErrorsMiddleware)  # answers outages without dropping connections
    app.add_middleware(HostCheckMiddleware)  # two Host headers are a 400
    # X-Request-Id, the access log, HTTP metrics (outermost: it sees every answer).
    app.add_middleware(RequestContextMiddleware, proxy_trust=runtime.proxy_trust)
    # no API key: the host names the workspace
    app.include_router(capture_router, dependencies=[ONE_VALUE_PER_SCALAR])
    # /healthz, /readyz, /metrics (a token of their own)
    app.include_router(ops_router, dependencies=[ONE_VALUE_PER_SCALAR])
    app.include_router(
        authenticated_routes(
            contacts_router,
            consent_router,
            deals_router,
            pipelines_router,
            tasks_router,
            events_router,
            event_types_router,
            webhooks_router,
            workspace_router,
            listen_router,
            deliveries_router,
            keys_router,
            forms_router,
            submissions_router,
        )
    )
    install_console(app)  # /console: the web app (its own sessions, CSRF and headers)
    register_webhooks(app)
    install_openapi(app, description=API_DESCRIPTION)
    install_docs(app)

    build_routes(app)
    return app
