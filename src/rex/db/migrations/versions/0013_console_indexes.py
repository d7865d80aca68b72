"""console_indexes: open tasks by due date, then id (the Tasks page's keyset order), and the
deals board's sums per stage and currency read from an index alone

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
    op.create_index(
        "ix_deals_workspace_id_pipeline_id_stage_currency_amount",
        "deals",
        ["workspace_id", "pipeline_id", "stage", "currency", "amount"],
    )


def downgrade() -> None:
    op.drop_index("ix_deals_workspace_id_pipeline_id_stage_currency_amount", table_name="deals")
    op.create_index("ix_tasks_workspace_id_due_at", "tasks", ["workspace_id", "due_at"])
    op.drop_index("ix_tasks_workspace_id_due_at_id", table_name="tasks")
