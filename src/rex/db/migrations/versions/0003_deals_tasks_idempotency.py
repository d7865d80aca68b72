"""deals, tasks and idempotency: one default pipeline per workspace, idempotency key expiry

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:05:00
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from ulid import ULID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copy of the default pipeline at the time of this migration.
_DEFAULT_STAGES = [
    {"name": "lead", "status": "open"},
    {"name": "qualified", "status": "open"},
    {"name": "proposal", "status": "open"},
    {"name": "negotiation", "status": "open"},
    {"name": "won", "status": "won"},
    {"name": "lost", "status": "lost"},
]


def upgrade() -> None:
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.create_index(
            "uq_pipelines_default",
            ["workspace_id"],
            unique=True,
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_workspace_id_created_at"),
            ["workspace_id", "created_at"],
            unique=False,
        )

    # Every existing workspace gets its default pipeline (new ones get it at creation).
    bind = op.get_bind()
    missing = bind.execute(
        sa.text(
            "SELECT id FROM workspaces WHERE id NOT IN "
            "(SELECT workspace_id FROM pipelines WHERE is_default)"
        )
    ).scalars()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":
        stamp: object = now.strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite format
    else:
        stamp = now
    stages = json.dumps(_DEFAULT_STAGES)
    cast = "CAST(:stages AS JSONB)" if bind.dialect.name == "postgresql" else ":stages"
    for workspace_id in list(missing):
        bind.execute(
            sa.text(
                "INSERT INTO pipelines (id, workspace_id, name, is_default, stages, created_at, "
                f"updated_at) VALUES (:id, :ws, 'Sales', :yes, {cast}, :now, :now)"
            ),
            {
                "id": f"pipe_{ULID()}",
                "ws": workspace_id,
                "yes": True,
                "stages": stages,
                "now": stamp,
            },
        )


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_workspace_id_created_at"))
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_pipelines_default",
            postgresql_where=sa.text("is_default"),
            sqlite_where=sa.text("is_default"),
        )
