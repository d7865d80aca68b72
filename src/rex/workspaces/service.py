"""Workspaces and API keys. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import api_keys, workspaces
from rex.errors import Invalid
from rex.ids import new_id, rfc3339, utcnow
from rex.outbox import alerts
from rex.outbox.records import SystemRole
from rex.pipelines import service as pipelines
from rex.workspaces.origins import safe_redirect
from rex.workspaces.schemas import WorkspaceOut, WorkspaceUpdate

DEFAULT_SLUG = "default"
KEY_PREFIX = "rex_sk_"
_LOOKUP_LEN = 12
SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Workspace:
    id: str
    slug: str
    name: str
    allowed_origins: list[str]
    redirect_url: str | None
    capture_rate_limit: str | None
    created_at: datetime
    notify_emails: list[str] = field(default_factory=list)
    notify_slack_url: str | None = None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Workspace:
        return cls(
            id=row.id,
            slug=row.slug,
            name=row.name,
            allowed_origins=list(row.allowed_origins or []),
            redirect_url=row.redirect_url,
            capture_rate_limit=row.capture_rate_limit,
            created_at=row.created_at,
            notify_emails=list(row.notify_emails or []),
            notify_slack_url=row.notify_slack_url,
        )


class SlugTaken(Exception):
    pass


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def get_by_slug(conn: AsyncConnection, slug: str) -> Workspace | None:
    row = (await conn.execute(sa.select(workspaces).where(workspaces.c.slug == slug))).first()
    return Workspace.from_row(row) if row else None


async def get_by_id(conn: AsyncConnection, workspace_id: str) -> Workspace | None:
    row = (await conn.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id))).first()
    return Workspace.from_row(row) if row else None


class WorkspaceCache:
    """Workspaces by slug, for ``/capture``: each is read again after ``ttl`` seconds.

    Every capture needs its workspace (allowed origins, rate limit) before anything else;
    reading it from the database each time cost about a tenth of a capture. A change made
    through this process (``PATCH /workspace``) clears the cache at once; one made through
    another API process is seen within ``ttl``. Misses are not kept, so a workspace created
    a moment ago is found at once. When an entry is due, one caller reads it again while the
    others keep using the one they have (no stampede of reads every ``ttl``).
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Workspace]] = {}
        self._refreshing: set[str] = set()

    async def get(
        self, conn_factory: Callable[[], AbstractAsyncContextManager[AsyncConnection]], slug: str
    ) -> Workspace | None:
        """The workspace ``slug``; ``conn_factory()`` opens a read when it must be fetched."""
        entry = self._entries.get(slug)
        now = time.monotonic()
        if entry is not None and (now - entry[0] < self.ttl or slug in self._refreshing):
            return entry[1]
        self._refreshing.add(slug)
        try:
            async with conn_factory() as conn:
                workspace = await get_by_slug(conn, slug)
        finally:
            self._refreshing.discard(slug)
        if workspace is None:
            self._entries.pop(slug, None)
        else:
            if len(self._entries) > 10_000:  # many hosts: start afresh rather than grow
                self._entries.clear()
            self._entries[slug] = (now, workspace)
        return workspace

    def clear(self) -> None:
        self._entries.clear()


def serialize(workspace: Workspace) -> WorkspaceOut:
    """A workspace's one shape: its settings as ``/workspace`` returns them."""
    return WorkspaceOut(
        id=workspace.id,
        slug=workspace.slug,
        name=workspace.name,
        allowed_origins=workspace.allowed_origins,
        redirect_url=workspace.redirect_url,
        capture_rate_limit=workspace.capture_rate_limit,
        notify_emails=workspace.notify_emails,
        notify_slack_url=workspace.notify_slack_url,
        created_at=rfc3339(workspace.created_at) or "",
    )


async def update_settings(
    conn: AsyncConnection, workspace_id: str, update: WorkspaceUpdate
) -> Workspace:
    """Apply the fields ``update`` sets (name, allowed_origins, redirect_url,
    capture_rate_limit, notify_emails, notify_slack_url).

    A ``redirect_url`` must stay on an explicitly allowed origin, whichever of the two changes.
    The alert destinations are the workspace's hidden alert endpoints (``rex.outbox.alerts``);
    the router has checked ``notify_slack_url`` against the destination policy.
    """
    changes = update.model_dump(exclude_unset=True)  # the columns to write
    slack_url = changes.get("notify_slack_url")
    row = (
        await conn.execute(
            sa.select(workspaces).where(workspaces.c.id == workspace_id).with_for_update()
        )
    ).one()
    current = Workspace.from_row(row)
    origins = changes.get("allowed_origins", current.allowed_origins)
    redirect_url = changes.get("redirect_url", current.redirect_url)
    if redirect_url and safe_redirect(redirect_url, origins) is None:
        field = "redirect_url" if "redirect_url" in changes else "allowed_origins"
        raise Invalid(
            field,
            f"redirect_url {redirect_url!r} is not on an origin listed in allowed_origins "
            "(form posts are only redirected to sites listed there by name; '*' is not enough).",
        )
    if changes:
        await conn.execute(
            sa.update(workspaces)
            .where(workspaces.c.id == workspace_id)
            .values(**changes, updated_at=utcnow())
        )
    now = utcnow()
    if "notify_emails" in changes:
        emails = changes["notify_emails"]
        await alerts.sync_alert_endpoint(
            conn,
            workspace_id=workspace_id,
            role=SystemRole.ALERT_EMAIL,
            url=alerts.mailto_url(emails) if emails else None,
            now=now,
        )
    if "notify_slack_url" in changes:
        await alerts.sync_alert_endpoint(
            conn,
            workspace_id=workspace_id,
            role=SystemRole.ALERT_SLACK,
            url=alerts.SLACK_PREFIX + slack_url if slack_url else None,
            now=now,
        )
    updated = await get_by_id(conn, workspace_id)
    assert updated is not None
    return updated


async def create_workspace(conn: AsyncConnection, slug: str, name: str | None = None) -> Workspace:
    """Create a workspace; raises ``SlugTaken`` if the slug exists."""
    if not SLUG_PATTERN.match(slug):
        raise ValueError(
            "a workspace slug is 1-63 lower-case letters, digits or '-', "
            "not starting or ending with '-'"
        )
    if await get_by_slug(conn, slug):
        raise SlugTaken(slug)
    workspace = Workspace(
        id=new_id("ws"),
        slug=slug,
        name=name or slug,
        allowed_origins=[],
        redirect_url=None,
        capture_rate_limit=None,
        created_at=utcnow(),
    )
    await conn.execute(
        sa.insert(workspaces).values(
            id=workspace.id,
            slug=slug,
            name=workspace.name,
            allowed_origins=[],
            created_at=workspace.created_at,
            updated_at=workspace.created_at,
        )
    )
    await pipelines.ensure_default(conn, workspace.id, workspace.created_at)
    return workspace


async def ensure_default_workspace(conn: AsyncConnection) -> tuple[Workspace, bool]:
    """The default workspace, created on first start. Returns ``(workspace, created)``."""
    existing = await get_by_slug(conn, DEFAULT_SLUG)
    if existing:
        return existing, False
    return await create_workspace(conn, DEFAULT_SLUG, "Default workspace"), True


async def create_api_key(
    conn: AsyncConnection,
    workspace_id: str,
    name: str = "default",
    *,
    expires_at: datetime | None = None,
) -> tuple[str, str]:
    """Create a key; returns ``(key_id, plaintext key)``. The plaintext is never stored."""
    random_part = secrets.token_urlsafe(32)
    key = KEY_PREFIX + random_part
    key_id = new_id("key")
    await conn.execute(
        sa.insert(api_keys).values(
            id=key_id,
            workspace_id=workspace_id,
            name=name,
            lookup=random_part[:_LOOKUP_LEN],
            key_hash=_hash_key(key),
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )
    return key_id, key


async def authenticate(conn: AsyncConnection, key: str) -> tuple[str, Workspace] | None:
    """``(key_id, workspace)`` for a valid, unrevoked key, else ``None``.

    The row is found by a short non-secret prefix; the full hash is compared in constant time.
    """
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + _LOOKUP_LEN:
        return None
    lookup = key[len(KEY_PREFIX) : len(KEY_PREFIX) + _LOOKUP_LEN]
    query = (
        sa.select(workspaces, api_keys.c.id.label("key_id"), api_keys.c.key_hash)
        .join(workspaces, workspaces.c.id == api_keys.c.workspace_id)
        .where(
            api_keys.c.lookup == lookup,
            api_keys.c.revoked_at.is_(None),
            sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > utcnow()),
        )
    )
    row = (await conn.execute(query)).first()
    if row is None or not hmac.compare_digest(row.key_hash, _hash_key(key)):
        return None
    return row.key_id, Workspace.from_row(row)
