"""operations: worker heartbeats, API key expiry

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-06 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rex.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeats",
        sa.Column("worker_id", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", rex.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("worker_id", name=op.f("pk_worker_heartbeats")),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("expires_at", rex.db.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
    op.drop_table("worker_heartbeats")
