"""The ASGI application: ``create_app(settings)`` wires storage, routers and the worker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from rex._version import __version__
from rex.api.client_ip import ProxyTrust
from rex.api.errors import DatabaseErrorsMiddleware, install_error_handlers
from rex.api.idempotency import IdempotencyMiddleware
from rex.api.limits import RequestGuardMiddleware
from rex.api.openapi import install_openapi
from rex.capture.ratelimit import RateLimiter
from rex.capture.router import router as capture_router
from rex.contacts.router import router as contacts_router
from rex.db import outbox
from rex.db.engine import Database
from rex.deals.router import router as deals_router
from rex.delivery.router import router as deliveries_router
from rex.delivery.ssrf import DestinationPolicy
from rex.delivery.transport import AiohttpTransport, Transport
from rex.delivery.worker import DeliveryWorker
from rex.events.router import router as events_router
from rex.events.webhooks import register_webhooks
from rex.forms.router import router as forms_router
from rex.listen.router import router as listen_router
from rex.listen.stream import ListenHub, expire_sessions
from rex.mail.mailer import Mailer
from rex.mail.transport import MailTransport, RoutingTransport
from rex.pipelines.router import router as pipelines_router
from rex.settings import Settings
from rex.submissions.router import router as submissions_router
from rex.tasks.router import router as tasks_router
from rex.webhooks.router import router as webhooks_router
from rex.workspaces import service as workspaces
from rex.workspaces.router import router as workspace_router


def destination_policy(settings: Settings) -> DestinationPolicy:
    return DestinationPolicy(
        allow_private=settings.allow_private_destinations,
        allowed_networks=settings.allowed_networks,
    )


API_DESCRIPTION = """\
Rex captures leads, keeps contacts, deals and tasks, and tells your systems about every change
through signed, retried webhooks (see **Webhooks** below for every payload).

**Authentication.** Every endpoint but `POST /capture` and `/healthz` takes an API key as
`X-Api-Key: <key>` or `Authorization: Bearer <key>` (`rex keys create` makes one). A key sees
only its own workspace: another workspace's objects answer 404, exactly like missing ones.

**Envelope.** One object is `{"data": {...}}`; a list is `{"data": [...], "next_cursor": ...}`
(newest first; pass `next_cursor` back as `cursor`, `null` on the last page).

**Errors.** Any non-2xx carries `{"error": {"type", "message", "field"}}`. Bad input is a 4xx
and writes nothing.

**Idempotency.** Every authenticated `POST` accepts `Idempotency-Key`: a repeat with the same
key and body within 24 hours returns the first response without writing again.
"""


def create_app(
    settings: Settings | None = None,
    *,
    run_worker: bool | None = None,
    transport: Transport | None = None,
) -> FastAPI:
    """Build the app. ``run_worker`` defaults to True on SQLite (the embedded worker), which
    sends with ``transport`` (default: ``AiohttpTransport`` under the destination policy; it
    is closed at shutdown)."""
    settings = settings or Settings()
    embedded_worker = settings.is_sqlite if run_worker is None else run_worker

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        await db.migrate()
        async with db.transaction() as conn:
            await workspaces.ensure_default_workspace(conn)
        app.state.db = db
        stop = asyncio.Event()
        worker_task = None
        hub: ListenHub = app.state.listen_hub
        hub.bind(asyncio.get_running_loop())
        db.on_deliveries_queued(hub.wake)
        expiry_task = asyncio.create_task(expire_sessions(db, settings, stop))
        # mailto: endpoints (forms' new-lead emails) go through the mailer.
        sender = RoutingTransport(
            transport or AiohttpTransport(app.state.destination_policy),
            MailTransport(Mailer(settings.smtp_url, settings.mail_from)),
        )
        if embedded_worker:
            if db.is_sqlite:
                # One worker per SQLite database: leases left by a previous run are stale.
                async with db.transaction() as conn:
                    await outbox.release_all_leases(conn)
            worker = DeliveryWorker(db, settings, sender)
            worker_task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            hub.close()
            await expiry_task
            if worker_task is not None:
                await worker_task
            await sender.close()
            await db.close()

    app = FastAPI(
        title="Rex",
        version=__version__,
        summary="Lead capture, contacts, deals and tasks, with signed, retried webhooks.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.destination_policy = destination_policy(settings)
    app.state.proxy_trust = ProxyTrust(settings.trusted_proxies)
    app.state.capture_limiter = RateLimiter()
    app.state.workspace_cache = workspaces.WorkspaceCache()
    # `rex listen` streams of this process; servers call close_threadsafe() when they begin
    # to shut down (see `rex serve`), so open streams do not hold the shutdown up.
    app.state.listen_hub = ListenHub()
    install_error_handlers(app)
    # Innermost first: the guard bounds and checks the body before idempotency buffers it.
    app.add_middleware(IdempotencyMiddleware)
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=settings.max_request_bytes)
    app.add_middleware(DatabaseErrorsMiddleware)  # answers outages without dropping connections
    app.include_router(capture_router)
    app.include_router(contacts_router)
    app.include_router(deals_router)
    app.include_router(pipelines_router)
    app.include_router(tasks_router)
    app.include_router(events_router)
    app.include_router(webhooks_router)
    app.include_router(workspace_router)
    app.include_router(listen_router)
    app.include_router(deliveries_router)
    app.include_router(forms_router)
    app.include_router(submissions_router)
    register_webhooks(app)
    install_openapi(app, description=API_DESCRIPTION)

    @app.get(
        "/healthz",
        tags=["operations"],
        responses={
            200: {"content": {"application/json": {"example": {"status": "ok"}}}},
            503: {
                "description": "The database does not answer",
                "content": {"application/json": {"example": {"status": "unavailable"}}},
            },
        },
    )
    async def healthz() -> Any:
        """200 when the database answers, 503 otherwise."""
        try:
            async with app.state.db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return {"status": "ok", "version": __version__}

    return app
