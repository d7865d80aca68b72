"""indexes for the per-endpoint claim (concurrency limit and fair share)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_endpoint_due",
            ["endpoint_id", "next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_deliveries_endpoint_leased",
            ["endpoint_id", "lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("leased_by IS NOT NULL"),
            sqlite_where=sa.text("leased_by IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deliveries_endpoint_leased",
            postgresql_where=sa.text("leased_by IS NOT NULL"),
            sqlite_where=sa.text("leased_by IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_deliveries_endpoint_due",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
