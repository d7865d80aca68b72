"""console_indexes: open tasks by due date, then id (the Tasks page's keyset order), and one
index for the deals board: a column's newest cards in index order, and its sums per currency
read from the index alone; a contact's timeline (its events, newest first) in index order

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 22:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replaces (workspace_id, due_at): the same prefix, plus the id that breaks ties.
    op.create_index("ix_tasks_workspace_id_due_at_id", "tasks", ["workspace_id", "due_at", "id"])
    op.drop_index("ix_tasks_workspace_id_due_at", table_name="tasks")
    # Replaces (workspace_id, object_id): newest first without a sort, and chosen even when
    # most events name the same object (SQLite's statistics then say the old one is poor).
    op.create_index(
        "ix_events_workspace_id_object_id_id", "events", ["workspace_id", "object_id", "id"]
    )
    op.drop_index("ix_events_workspace_id_object_id", table_name="events")
    op.create_index(
        "ix_deals_workspace_id_pipeline_id_stage_id_currency_amount",
        "deals",
        ["workspace_id", "pipeline_id", "stage", "id", "currency", "amount"],
    )


def downgrade() -> None:
    op.create_index("ix_events_workspace_id_object_id", "events", ["workspace_id", "object_id"])
    op.drop_index("ix_events_workspace_id_object_id_id", table_name="events")
    op.drop_index("ix_deals_workspace_id_pipeline_id_stage_id_currency_amount", table_name="deals")
    op.create_index("ix_tasks_workspace_id_due_at", "tasks", ["workspace_id", "due_at"])
    op.drop_index("ix_tasks_workspace_id_due_at_id", table_name="tasks")
