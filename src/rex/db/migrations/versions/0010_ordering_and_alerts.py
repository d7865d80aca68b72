"""ordered delivery and operational alerts: per-endpoint ordering, alert state, hidden
system endpoints, the workspace's alert destinations

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_PENDING_ORDERED = "status = 'pending' AND ordering_key IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("endpoints") as batch:
        batch.add_column(
            sa.Column("ordering", sa.String(length=16), nullable=False, server_default="none")
        )
        batch.add_column(
            sa.Column("last_sequence", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("system_role", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("alert_state", sa.String(length=16), nullable=True))
        batch.add_column(
            sa.Column("failure_alerted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Forms' new-lead endpoints (mailto:) were made before system endpoints were marked:
    # they are Rex's own, hidden from /webhooks.
    op.execute(
        "UPDATE endpoints SET system_role = 'form_notify', kind = 'system' "
        "WHERE kind IN ('webhook', 'system') AND url LIKE 'mailto:%'"
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("ordering_key", sa.String(length=255), nullable=True))
    op.create_index(
        "ix_deliveries_ordering",
        "deliveries",
        ["endpoint_id", "ordering_key", "sequence"],
        postgresql_where=sa.text(_PENDING_ORDERED),
        sqlite_where=sa.text(_PENDING_ORDERED),
    )
    with op.batch_alter_table("workspaces") as batch:
        batch.add_column(sa.Column("notify_emails", _JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("notify_slack_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("notify_slack_url")
        batch.drop_column("notify_emails")
    op.drop_index("ix_deliveries_ordering", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("ordering_key")
        batch.drop_column("sequence")
    op.execute("DELETE FROM endpoints WHERE system_role IN ('alert_email', 'alert_slack')")
    with op.batch_alter_table("endpoints") as batch:
        batch.drop_column("failure_alerted")
        batch.drop_column("alert_state")
        batch.drop_column("system_role")
        batch.drop_column("last_sequence")
        batch.drop_column("ordering")
