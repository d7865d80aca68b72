"""The small HTTP server of ``rex worker --http-port PORT``: ``/metrics``, ``/healthz`` and
``/readyz``, the same answers as an API process gives (aiohttp, in the worker's loop)."""

from __future__ import annotations

import json

from aiohttp import web

from rex._version import __version__
from rex.db.engine import Database
from rex.ops import metrics
from rex.ops.health import readiness
from rex.request_id import request_id_from


def build_app(db: Database, worker_id: str, metrics_token: str | None) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": __version__})

    async def readyz(request: web.Request) -> web.Response:
        result = await readiness(db, worker_id)
        body = {"status": "ok" if result.ready else "unavailable", "checks": result.checks}
        return web.json_response(body, status=200 if result.ready else 503)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        if not metrics.token_ok(metrics_token, request.headers.get("Authorization")):
            body = {
                "error": {
                    "type": "authentication_failed",
                    "message": "/metrics needs `Authorization: Bearer <REX_METRICS_TOKEN>`.",
                    "field": None,
                    "request_id": request_id_from(request.headers.get("X-Request-Id")),
                }
            }
            return web.Response(
                text=json.dumps(body),
                status=401,
                content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            async with db.read() as conn:
                payload, content_type = await metrics.render(conn)
        except Exception:
            payload, content_type = await metrics.render(None)
        response = web.Response(body=payload)
        response.headers["Content-Type"] = content_type
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


async def start(
    db: Database, worker_id: str, metrics_token: str | None, host: str, port: int
) -> web.AppRunner:
    runner = web.AppRunner(build_app(db, worker_id, metrics_token), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
