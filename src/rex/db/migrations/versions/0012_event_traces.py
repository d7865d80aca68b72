"""event_traces: the trace context each event was recorded in (OpenTelemetry, optional)

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-06 18:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_traces",
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("traceparent", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )


def downgrade() -> None:
    op.drop_table("event_traces")
