"""The console's people: users, their workspace memberships, sessions and failed
sign-ins."""

from __future__ import annotations

import sqlalchemy as sa

from rex.db.schema.base import id_column, metadata, timestamp_columns, workspace_column
from rex.db.types import UTCDateTime

# People who sign in to the console (rex.users). A user may belong to several workspaces.
users = sa.Table(
    "users",
    metadata,
    id_column(),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    # argon2id, in the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    sa.Column("password_hash", sa.Text(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.Column("last_sign_in_at", UTCDateTime()),
    *timestamp_columns(),
)

workspace_memberships = sa.Table(
    "workspace_memberships",
    metadata,
    sa.Column(
        "user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    workspace_column(),
    # "owner" (everything) or "member" (everything but users, keys and workspace settings).
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("user_id", "workspace_id"),
    sa.Index(None, "workspace_id", "user_id"),
)

# Console sessions, server-side: the cookie holds a random token, only its SHA-256 is here.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    id_column(),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    # The workspace the session is looking at (the switcher changes it).
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="SET NULL")),
    # The synchronizer token of the session's forms (and X-CSRF-Token of its scripts).
    sa.Column("csrf_secret", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(300)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Index(None, "user_id"),
    sa.Index(None, "expires_at"),
)

# Failed sign-ins per account ("account:<email>") and per client address ("address:<ip>"),
# in the database so that every API process counts the same failures.
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("scope", sa.String(400), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("window_started_at", UTCDateTime(), nullable=False),
    sa.Column("locked_until", UTCDateTime()),
)
