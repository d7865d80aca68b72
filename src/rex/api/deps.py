"""FastAPI dependency aliases (``RuntimeDep``, ``SettingsDep``, ``DbDep``, ``AuthDep``) and
the group of key-authenticated routers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rex.api.envelope import ApiError
from rex.api.query import ONE_VALUE_PER_SCALAR
from rex.db.engine import Database
from rex.runtime import Runtime, runtime_of
from rex.settings import Settings
from rex.workspaces import service as workspaces
from rex.workspaces.service import Workspace

_api_key_header = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="An API key from `rex keys create`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


# Async on purpose: FastAPI runs a plain `def` dependency on a worker thread, which cost
# more than the whole database work of a capture.
async def _runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


async def _settings(request: Request) -> Settings:
    return runtime_of(request.app).settings


async def _db(request: Request) -> Database:
    return runtime_of(request.app).db


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[Database, Depends(_db)]


@dataclass(frozen=True)
class Auth:
    """Who is calling: the key's id and its workspace (the only one it can touch)."""

    key_id: str
    workspace: Workspace


async def authenticate(
    runtime: RuntimeDep,
    db: DbDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Auth:
    key = api_key or (bearer.credentials if bearer else None)
    if not key:
        raise ApiError(
            401,
            "No API key: send it as `X-Api-Key: <key>` or `Authorization: Bearer <key>` "
            "(create one with `rex keys create`).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    async with db.read() as conn:
        found = await workspaces.authenticate(conn, key.strip())
    if found is None:
        raise ApiError(401, "Invalid or revoked API key.", headers={"WWW-Authenticate": "Bearer"})
    usage = runtime.key_usage
    if usage is not None:
        usage.used(found[0])  # "last used", at most once a minute (rex.ops.keys)
    return Auth(key_id=found[0], workspace=found[1])


AuthDep = Annotated[Auth, Depends(authenticate)]

# The one dependency that makes a route key-authenticated: routers are mounted under it by
# ``authenticated_routes`` (handlers take ``AuthDep`` for the caller; FastAPI runs it once).
REQUIRES_API_KEY = Depends(authenticate)


def authenticated_routes(*routers: APIRouter) -> APIRouter:
    """One router holding ``routers``; every route in it requires an API key (checked before
    the one-value-per-scalar rule of ``rex.api.query``, so an anonymous caller learns nothing
    about the parameters)."""
    group = APIRouter(dependencies=[REQUIRES_API_KEY, ONE_VALUE_PER_SCALAR])
    for router in routers:
        group.include_router(router)
    return group


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request presents, the way ``AuthDep`` reads it."""
    key = headers.get("x-api-key")
    if not key:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        key = credentials if scheme.lower() == "bearer" else None
    return key.strip() if key else None
