"""API keys: list, revoke, expiry and "last used" (the key itself is never stored or shown).

Authentication reads the key's row on every request, so a revoked or expired key is refused
by every process from the next request on. "Last used" is written at most once a minute per
key and process, after the answer, so that it costs no write per request.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.engine import Database
from rex.db.pagination import fetch_page
from rex.db.schema import api_keys, workspaces
from rex.ids import rfc3339, utcnow
from rex.workspaces.service import KEY_PREFIX

log = structlog.get_logger("rex.keys")

LAST_USED_RESOLUTION = 60.0
"""Seconds: "last used" is recorded at most this often per key and process."""
_PREFIX_SHOWN = 8


class KeyData(TypedDict):
    """An API key as ``GET /keys`` and ``rex keys list --json`` show it (never the key)."""

    id: str
    workspace: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class KeyInfo:
    id: str
    workspace: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def as_json(self) -> KeyData:
        return {
            "id": self.id,
            "workspace": self.workspace,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": rfc3339(self.created_at),
            "last_used_at": rfc3339(self.last_used_at),
            "expires_at": rfc3339(self.expires_at),
            "revoked_at": rfc3339(self.revoked_at),
        }


def _query() -> sa.Select[Any]:
    return sa.select(
        api_keys.c.id,
        api_keys.c.name,
        api_keys.c.lookup,
        api_keys.c.created_at,
        api_keys.c.last_used_at,
        api_keys.c.expires_at,
        api_keys.c.revoked_at,
        workspaces.c.slug,
    ).join(workspaces, workspaces.c.id == api_keys.c.workspace_id)


def _info(row: sa.Row[Any]) -> KeyInfo:
    return KeyInfo(
        id=row.id,
        workspace=row.slug,
        name=row.name,
        prefix=KEY_PREFIX + row.lookup[:_PREFIX_SHOWN],
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


async def list_keys(
    conn: AsyncConnection, workspace_id: str | None = None, *, include_revoked: bool = False
) -> list[KeyInfo]:
    query = _query().order_by(api_keys.c.id.desc())
    if workspace_id is not None:
        query = query.where(api_keys.c.workspace_id == workspace_id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [_info(row) for row in await conn.execute(query)]


async def list_keys_page(
    conn: AsyncConnection, workspace_id: str, *, cursor: str | None, limit: int
) -> tuple[list[KeyInfo], str | None]:
    """One page of a workspace's active keys, newest first from ``cursor``, and the next
    page's cursor (``None`` on the last): what the console's Settings shows."""
    query = _query().where(api_keys.c.workspace_id == workspace_id, api_keys.c.revoked_at.is_(None))
    rows, next_cursor = await fetch_page(conn, query, api_keys.c.id, limit=limit, cursor=cursor)
    return [_info(row) for row in rows], next_cursor


async def revoke(
    conn: AsyncConnection, key_id: str, workspace_id: str | None = None
) -> KeyInfo | None:
    """Revoke ``key_id`` (in ``workspace_id`` when given); None when there is no such key.
    Revoking a revoked key keeps its first revocation time."""
    where = [api_keys.c.id == key_id]
    if workspace_id is not None:
        where.append(api_keys.c.workspace_id == workspace_id)
    await conn.execute(
        sa.update(api_keys)
        .where(*where, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    row = (await conn.execute(_query().where(*where))).first()
    return _info(row) if row is not None else None


class UsageRecorder:
    """Writes ``last_used_at`` in the background, at most once a minute per key."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._written: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def used(self, key_id: str) -> None:
        now = time.monotonic()
        last = self._written.get(key_id)
        if last is not None and now - last < LAST_USED_RESOLUTION:
            return
        self._written[key_id] = now
        if len(self._written) > 10_000:
            self._written.clear()
        task = asyncio.create_task(self._write(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, key_id: str) -> None:
        try:
            async with self.db.transaction() as conn:
                await conn.execute(
                    sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=utcnow())
                )
        except Exception as exc:  # best effort: the next use tries again
            self._written.pop(key_id, None)
            log.warning("key_last_used_failed", key=key_id, error=str(exc)[:200])

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
