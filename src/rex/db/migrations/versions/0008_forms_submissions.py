"""forms and submissions: capture forms with mappings, and every post to a capture URL

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-06 15:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import rex.db.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("field_map", _JSON, nullable=False),
        sa.Column("redirect_url", sa.Text(), nullable=True),
        sa.Column("honeypot_fields", _JSON, nullable=False),
        sa.Column("captcha", _JSON, nullable=True),
        sa.Column("notify_emails", _JSON, nullable=False),
        sa.Column("success_message", sa.Text(), nullable=True),
        sa.Column("notify_endpoint_id", sa.String(length=40), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["notify_endpoint_id"],
            ["endpoints.id"],
            name=op.f("fk_forms_notify_endpoint_id_endpoints"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_forms_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
    )
    op.create_index(op.f("ix_forms_workspace_id_id"), "forms", ["workspace_id", "id"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("form_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("shape", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("fields", _JSON, nullable=True),
        sa.Column("raw_body", sa.Text(), nullable=True),
        sa.Column("raw_truncated", sa.Boolean(), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_submissions_contact_id_contacts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["form_id"],
            ["forms.id"],
            name=op.f("fk_submissions_form_id_forms"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_submissions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_submissions")),
    )
    op.create_index(op.f("ix_submissions_workspace_id_id"), "submissions", ["workspace_id", "id"])
    op.create_index(
        op.f("ix_submissions_workspace_id_status_id"),
        "submissions",
        ["workspace_id", "status", "id"],
    )
    op.create_index(
        op.f("ix_submissions_workspace_id_form_id_id"),
        "submissions",
        ["workspace_id", "form_id", "id"],
    )
    op.create_index(op.f("ix_submissions_created_at"), "submissions", ["created_at"])


def downgrade() -> None:
    op.drop_table("submissions")
    op.drop_table("forms")
