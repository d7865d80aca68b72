"""listen sessions: `rex listen` endpoints resumable by API key and local URL

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rex.db.types

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "listen_sessions",
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("forward_to", sa.String(length=2048), nullable=False),
        sa.Column("connection_id", sa.String(length=64), nullable=True),
        sa.Column("last_seen_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_listen_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_listen_sessions_endpoint_id_endpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_listen_sessions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("endpoint_id", name=op.f("pk_listen_sessions")),
        sa.UniqueConstraint(
            "api_key_id", "forward_to", name=op.f("uq_listen_sessions_api_key_id_forward_to")
        ),
    )
    with op.batch_alter_table("listen_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_listen_sessions_last_seen_at"), ["last_seen_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_listen_sessions_workspace_id_endpoint_id"),
            ["workspace_id", "endpoint_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("listen_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_listen_sessions_workspace_id_endpoint_id"))
        batch_op.drop_index(batch_op.f("ix_listen_sessions_last_seen_at"))
    op.drop_table("listen_sessions")
