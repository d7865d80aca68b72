"""Users and their workspace memberships. Callers own the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import console_sessions, users, workspace_memberships, workspaces
from rex.errors import Conflict, Invalid, NotFound
from rex.ids import new_id, utcnow
from rex.users.passwords import hash_password


class Role(StrEnum):
    """``owner``: everything. ``member``: everything but users, keys and workspace settings."""

    OWNER = "owner"
    MEMBER = "member"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    created_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> User:
        return cls(
            id=row.id,
            email=row.email,
            created_at=row.created_at,
            last_sign_in_at=row.last_sign_in_at,
        )


@dataclass(frozen=True)
class Membership:
    """One workspace a user belongs to, and the user's role there."""

    workspace_id: str
    slug: str
    name: str
    role: Role


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or email.startswith("@") or email.endswith("@"):
        raise Invalid("email", f"{email!r} is not an email address.")
    return email


async def find_by_email(conn: AsyncConnection, email: str) -> sa.Row[Any] | None:
    query = sa.select(users).where(users.c.email == email.strip().lower())
    return (await conn.execute(query)).first()


async def get(conn: AsyncConnection, user_id: str) -> User:
    row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
    if row is None:
        raise NotFound("user", user_id)
    return User.from_row(row)


async def create(conn: AsyncConnection, email: str, password: str) -> User:
    """A new user; ``Conflict`` when the email is taken."""
    email = normalize_email(email)
    if await find_by_email(conn, email) is not None:
        raise Conflict(f"A user with email {email!r} already exists.", field="email")
    now = utcnow()
    user_id = new_id("usr")
    values: dict[str, Any] = {
        "id": user_id,
        "email": email,
        "password_hash": hash_password(password),
        "password_changed_at": now,
        "last_sign_in_at": None,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(sa.insert(users).values(values))
    return User(id=user_id, email=email, created_at=now, last_sign_in_at=None)


async def set_password(conn: AsyncConnection, user_id: str, password: str) -> None:
    """Replace the user's password and revoke every session of theirs."""
    now = utcnow()
    await conn.execute(
        sa.update(users)
        .where(users.c.id == user_id)
        .values(password_hash=hash_password(password), password_changed_at=now, updated_at=now)
    )
    await conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.user_id == user_id, console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def add_membership(
    conn: AsyncConnection, user_id: str, workspace_id: str, role: Role
) -> bool:
    """Make the user a member of the workspace with ``role``: returns True when added, False
    when the user was already there (the role is then set to ``role``)."""
    key = (workspace_memberships.c.user_id == user_id) & (
        workspace_memberships.c.workspace_id == workspace_id
    )
    existing = (await conn.execute(sa.select(workspace_memberships.c.role).where(key))).first()
    if existing is not None:
        if existing.role != role:
            await conn.execute(sa.update(workspace_memberships).where(key).values(role=role))
        return False
    await conn.execute(
        sa.insert(workspace_memberships).values(
            user_id=user_id, workspace_id=workspace_id, role=role, created_at=utcnow()
        )
    )
    return True


async def memberships(conn: AsyncConnection, user_id: str) -> list[Membership]:
    """The workspaces the user belongs to, by slug."""
    query = (
        sa.select(
            workspaces.c.id, workspaces.c.slug, workspaces.c.name, workspace_memberships.c.role
        )
        .join(workspaces, workspaces.c.id == workspace_memberships.c.workspace_id)
        .where(workspace_memberships.c.user_id == user_id)
        .order_by(workspaces.c.slug)
    )
    return [
        Membership(workspace_id=row.id, slug=row.slug, name=row.name, role=Role(row.role))
        for row in await conn.execute(query)
    ]


async def list_all(conn: AsyncConnection) -> list[tuple[User, list[Membership]]]:
    """Every user (by email) with their workspaces: what `rex users list` prints."""
    rows = (await conn.execute(sa.select(users).order_by(users.c.email))).all()
    return [(User.from_row(row), await memberships(conn, row.id)) for row in rows]


async def workspace_users(conn: AsyncConnection, workspace_id: str) -> list[tuple[User, Role]]:
    """The users of one workspace, by email, with their role there."""
    query = (
        sa.select(users, workspace_memberships.c.role)
        .join(workspace_memberships, workspace_memberships.c.user_id == users.c.id)
        .where(workspace_memberships.c.workspace_id == workspace_id)
        .order_by(users.c.email)
    )
    return [(User.from_row(row), Role(row.role)) for row in await conn.execute(query)]


async def workspace_users_page(
    conn: AsyncConnection, workspace_id: str, *, cursor: str | None, limit: int
) -> tuple[list[tuple[User, Role]], str | None]:
    """One page of a workspace's users, newest account first from ``cursor``, and the next
    page's cursor (``None`` on the last)."""
    query = (
        sa.select(users, workspace_memberships.c.role)
        .join(workspace_memberships, workspace_memberships.c.user_id == users.c.id)
        .where(workspace_memberships.c.workspace_id == workspace_id)
    )
    rows, next_cursor = await fetch_page(conn, query, users.c.id, limit=limit, cursor=cursor)
    return [(User.from_row(row), Role(row.role)) for row in rows], next_cursor


async def _owners_locked(conn: AsyncConnection, workspace_id: str) -> set[str]:
    """The workspace's owners, their rows locked until the transaction ends (PostgreSQL; a
    SQLite transaction writes alone): two owners demoting each other at once cannot leave
    the workspace with none."""
    query = (
        sa.select(workspace_memberships.c.user_id)
        .where(
            workspace_memberships.c.workspace_id == workspace_id,
            workspace_memberships.c.role == Role.OWNER,
        )
        .with_for_update()
    )
    return {row.user_id for row in await conn.execute(query)}


async def _membership_role(conn: AsyncConnection, user_id: str, workspace_id: str) -> Role:
    query = sa.select(workspace_memberships.c.role).where(
        workspace_memberships.c.user_id == user_id,
        workspace_memberships.c.workspace_id == workspace_id,
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("user", user_id, message=f"No user {user_id!r} in this workspace.")
    return Role(row.role)


LAST_OWNER = (
    "{email} is this workspace's last owner: make another user owner first (a workspace "
    "without an owner could not manage its users, keys or settings)."
)


async def set_role(conn: AsyncConnection, user_id: str, workspace_id: str, role: Role) -> bool:
    """Make the user ``role`` in the workspace; True when it changed. ``NotFound`` when they
    are not in it; ``Conflict`` when that would leave the workspace without an owner."""
    owners = await _owners_locked(conn, workspace_id)
    current = await _membership_role(conn, user_id, workspace_id)
    if current == role:
        return False
    if current is Role.OWNER and owners <= {user_id}:
        raise Conflict(LAST_OWNER.format(email=(await get(conn, user_id)).email), field="role")
    await conn.execute(
        sa.update(workspace_memberships)
        .where(
            workspace_memberships.c.user_id == user_id,
            workspace_memberships.c.workspace_id == workspace_id,
        )
        .values(role=role)
    )
    return True


async def remove_membership(conn: AsyncConnection, user_id: str, workspace_id: str) -> None:
    """Take the user out of the workspace (their account and other workspaces stay; their
    sessions on this workspace lose it at their next request). ``NotFound`` when they are not
    in it; ``Conflict`` when they are its last owner."""
    owners = await _owners_locked(conn, workspace_id)
    current = await _membership_role(conn, user_id, workspace_id)
    if current is Role.OWNER and owners <= {user_id}:
        raise Conflict(LAST_OWNER.format(email=(await get(conn, user_id)).email), field="user")
    await conn.execute(
        sa.delete(workspace_memberships).where(
            workspace_memberships.c.user_id == user_id,
            workspace_memberships.c.workspace_id == workspace_id,
        )
    )


async def record_sign_in(conn: AsyncConnection, user_id: str, now: datetime) -> None:
    await conn.execute(sa.update(users).where(users.c.id == user_id).values(last_sign_in_at=now))
