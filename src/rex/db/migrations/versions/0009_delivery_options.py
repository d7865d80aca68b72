"""delivery options: per-endpoint headers, rate limit and filter; custom event types

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 18:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rex.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        # Extra headers sent with every delivery: a JSON object, encrypted like the secret.
        batch.add_column(sa.Column("headers", sa.Text(), nullable=True))
        # Deliveries per second (NULL: no limit), and the shared state of that limit: the
        # time before which no claim may take another slot (rex.outbox.queue).
        batch.add_column(sa.Column("rate_limit", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("rate_limited_until", rex.db.types.UTCDateTime(timezone=True), nullable=True)
        )
        # Equality conditions on the event's dotted paths (rex.outbox.filters).
        batch.add_column(sa.Column("filter", _JSON, nullable=True))
    op.create_table(
        "event_types",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("schema", _JSON, nullable=True),
        sa.Column("archived_at", rex.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_types_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_types")),
        sa.UniqueConstraint("workspace_id", "name", name=op.f("uq_event_types_workspace_id_name")),
    )


def downgrade() -> None:
    op.drop_table("event_types")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("filter")
        batch.drop_column("rate_limited_until")
        batch.drop_column("rate_limit")
        batch.drop_column("headers")
