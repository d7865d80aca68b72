"""FastAPI dependency aliases: ``SettingsDep``, ``DbDep``, ``AuthDep``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from rex.api.errors import ApiError
from rex.db.engine import Database
from rex.settings import Settings
from rex.workspaces import service as workspaces
from rex.workspaces.service import Workspace

_api_key_header = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="An API key from `rex keys create`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


# Async on purpose: FastAPI runs a plain `def` dependency on a worker thread, which cost
# more than the whole database work of a capture.
async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(_settings)]
DbDep = Annotated[Database, Depends(_db)]


@dataclass(frozen=True)
class Auth:
    """Who is calling: the key's id and its workspace (the only one it can touch)."""

    key_id: str
    workspace: Workspace


async def _authenticate(
    request: Request,
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
    usage = getattr(request.app.state, "key_usage", None)
    if usage is not None:
        usage.used(found[0])  # "last used", at most once a minute (rex.ops.keys)
    return Auth(key_id=found[0], workspace=found[1])


AuthDep = Annotated[Auth, Depends(_authenticate)]


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key a request presents, the way ``AuthDep`` reads it."""
    key = headers.get("x-api-key")
    if not key:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        key = credentials if scheme.lower() == "bearer" else None
    return key.strip() if key else None
