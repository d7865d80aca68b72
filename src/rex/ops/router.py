"""``/healthz``, ``/readyz``, ``/metrics`` and ``/keys``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from rex._version import __version__
from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES, ApiError
from rex.api.schemas import One, Page
from rex.errors import NotFound
from rex.ops import keys, metrics
from rex.ops.health import readiness
from rex.runtime import runtime_of

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> Any:
    """Liveness: 200 while the process serves HTTP. It touches nothing (not the database):
    use `/readyz` to decide whether to send traffic."""
    return {"status": "ok", "version": __version__}


@router.get(
    "/readyz",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok", "checks": {}}}}},
        503: {
            "description": "Not ready: a check failed",
            "content": {
                "application/json": {
                    "example": {"status": "unavailable", "checks": {"database": "unavailable"}}
                }
            },
        },
    },
)
async def readyz(request: Request) -> Any:
    """Readiness: the database answers, its schema is current and, where this process runs
    a delivery worker, the worker's heartbeat is fresh. 503 with the failing checks otherwise."""
    runtime = runtime_of(request.app)
    result = await readiness(runtime.database, runtime.worker_id)
    body = {"status": "ok" if result.ready else "unavailable", "checks": result.checks}
    return JSONResponse(body, status_code=200 if result.ready else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics (text exposition format)."""
    settings = runtime_of(request.app).settings
    if not metrics.token_ok(settings.metrics_token, request.headers.get("authorization")):
        raise ApiError(
            401,
            "/metrics needs `Authorization: Bearer <REX_METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body, content_type = await scrape(runtime_of(request.app).database)
    return Response(body, media_type=content_type)


async def scrape(db: Any) -> tuple[bytes, str]:
    """The exposition text, its backlog gauges read from ``db`` (kept stale if it fails)."""
    if db is None:
        return await metrics.render(None)
    try:
        async with db.read() as conn:
            return await metrics.render(conn)
    except Exception:
        return await metrics.render(None)


class ApiKeyOut(BaseModel):
    id: str
    workspace: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]
    next_cursor: str | None = None


class ApiKeyEnvelope(BaseModel):
    data: ApiKeyOut


keys_router = APIRouter(prefix="/keys", tags=["keys"], responses=ERROR_RESPONSES)


@keys_router.get("", response_model=ApiKeyList)
async def list_api_keys(auth: AuthDep, db: DbDep) -> Page[keys.KeyData]:
    """The workspace's active API keys: id, name, prefix, created, last used, expiry. The
    key itself is never stored, so never shown."""
    async with db.read() as conn:
        found = await keys.list_keys(conn, auth.workspace.id)
    return {"data": [k.as_json() for k in found], "next_cursor": None}


@keys_router.delete("/{key_id}", response_model=ApiKeyEnvelope)
async def revoke_api_key(key_id: str, auth: AuthDep, db: DbDep) -> One[keys.KeyData]:
    """Revoke a key: every Rex process refuses it from the next request on (401)."""
    async with db.transaction() as conn:
        revoked = await keys.revoke(conn, key_id, auth.workspace.id)
    if revoked is None:
        raise NotFound("API key", key_id)
    return {"data": revoked.as_json()}
