"""Console sessions, kept server-side. The browser holds a random token; the database holds
its SHA-256 (a leaked table signs no one in). A session ends when it is revoked (sign out,
password reset), when it goes unused for ``idle`` seconds, or ``lifetime`` after it began."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import console_sessions, users, workspace_memberships, workspaces
from rex.ids import new_id
from rex.users.service import Role
from rex.workspaces.service import Workspace

# "last seen" (and so the idle deadline) is written at most this often per session.
_TOUCH_EVERY = timedelta(seconds=60)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SessionPolicy:
    idle: timedelta
    lifetime: timedelta


@dataclass(frozen=True)
class ActiveSession:
    """A valid session, its user, and the workspace it looks at (with the user's role there);
    ``workspace`` is None when the user belongs to no workspace any more."""

    id: str
    user_id: str
    email: str
    csrf_token: str
    workspace: Workspace | None
    role: Role | None
    last_seen_at: datetime
    expires_at: datetime


async def start(
    conn: AsyncConnection,
    *,
    user_id: str,
    workspace_id: str | None,
    policy: SessionPolicy,
    now: datetime,
    ip: str | None,
    user_agent: str | None,
) -> str:
    """A new session; returns its token (for the cookie; never stored). The user's sessions
    that ended over a day ago are deleted on the way."""
    cutoff = now - timedelta(days=1)
    await conn.execute(
        sa.delete(console_sessions).where(
            console_sessions.c.user_id == user_id,
            sa.or_(console_sessions.c.expires_at < cutoff, console_sessions.c.revoked_at < cutoff),
        )
    )
    token = secrets.token_urlsafe(32)
    await conn.execute(
        sa.insert(console_sessions).values(
            id=new_id("sess"),
            token_hash=_hash(token),
            user_id=user_id,
            workspace_id=workspace_id,
            csrf_secret=secrets.token_urlsafe(32),
            ip=ip,
            user_agent=(user_agent or "")[:300] or None,
            created_at=now,
            last_seen_at=now,
            expires_at=min(now + policy.idle, now + policy.lifetime),
        )
    )
    return token


async def resolve(conn: AsyncConnection, token: str, now: datetime) -> ActiveSession | None:
    """The session a cookie's token stands for, if it is still valid."""
    member = workspace_memberships
    query = (
        sa.select(
            console_sessions,
            users.c.email,
            member.c.role,
            workspaces.c.id.label("ws_id"),
            workspaces.c.slug.label("ws_slug"),
            workspaces.c.name.label("ws_name"),
            workspaces.c.allowed_origins.label("ws_allowed_origins"),
            workspaces.c.redirect_url.label("ws_redirect_url"),
            workspaces.c.capture_rate_limit.label("ws_capture_rate_limit"),
            workspaces.c.created_at.label("ws_created_at"),
        )
        .join(users, users.c.id == console_sessions.c.user_id)
        .outerjoin(
            member,
            (member.c.user_id == console_sessions.c.user_id)
            & (member.c.workspace_id == console_sessions.c.workspace_id),
        )
        .outerjoin(workspaces, workspaces.c.id == member.c.workspace_id)
        .where(
            console_sessions.c.token_hash == _hash(token),
            console_sessions.c.revoked_at.is_(None),
            console_sessions.c.expires_at > now,
        )
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return _active(row)


def _active(row: sa.Row[Any]) -> ActiveSession:
    workspace = None
    if row.ws_id is not None:
        workspace = Workspace(
            id=row.ws_id,
            slug=row.ws_slug,
            name=row.ws_name,
            allowed_origins=list(row.ws_allowed_origins or []),
            redirect_url=row.ws_redirect_url,
            capture_rate_limit=row.ws_capture_rate_limit,
            created_at=row.ws_created_at,
        )
    return ActiveSession(
        id=row.id,
        user_id=row.user_id,
        email=row.email,
        csrf_token=row.csrf_secret,
        workspace=workspace,
        role=Role(row.role) if workspace is not None and row.role else None,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )


def needs_touch(session: ActiveSession, now: datetime) -> bool:
    return now - session.last_seen_at >= _TOUCH_EVERY


async def touch(
    conn: AsyncConnection, session_id: str, policy: SessionPolicy, now: datetime
) -> None:
    """Mark the session used now: its idle deadline moves, never past its lifetime."""
    created = (
        await conn.execute(
            sa.select(console_sessions.c.created_at).where(console_sessions.c.id == session_id)
        )
    ).scalar()
    if created is None:
        return
    await conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.id == session_id, console_sessions.c.revoked_at.is_(None))
        .values(last_seen_at=now, expires_at=min(now + policy.idle, created + policy.lifetime))
    )


async def revoke(conn: AsyncConnection, session_id: str, now: datetime) -> None:
    await conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.id == session_id, console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def switch_workspace(
    conn: AsyncConnection, session_id: str, user_id: str, workspace_id: str
) -> bool:
    """Point the session at another workspace of its user; False when the user is not a
    member of it (then nothing changes)."""
    member = (
        await conn.execute(
            sa.select(workspace_memberships.c.role).where(
                workspace_memberships.c.user_id == user_id,
                workspace_memberships.c.workspace_id == workspace_id,
            )
        )
    ).first()
    if member is None:
        return False
    await conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.id == session_id)
        .values(workspace_id=workspace_id)
    )
    return True
