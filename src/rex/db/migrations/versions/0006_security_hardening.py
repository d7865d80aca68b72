"""security hardening: consent history, an index per list filter, encrypted endpoint secrets

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 15:45:00.000000

Secrets become Text (a Fernet token is longer than the secret); the plain-text secrets
already stored are encrypted by Rex at start-up (``rex.secretbox.encrypt_stored_secrets``),
which has the key (a migration does not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import rex.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INDEXES: dict[str, list[tuple[str, ...]]] = {
    "contacts": [("workspace_id", "stage", "id")],
    "deals": [
        ("workspace_id", "stage", "id"),
        ("workspace_id", "status", "id"),
        ("workspace_id", "contact_id", "id"),
        ("workspace_id", "pipeline_id", "id"),
    ],
    "tasks": [
        ("workspace_id", "status", "id"),
        ("workspace_id", "contact_id", "id"),
        ("workspace_id", "deal_id", "id"),
        ("workspace_id", "due_at"),
    ],
    "events": [("workspace_id", "type", "id"), ("workspace_id", "created_at")],
    "deliveries": [("workspace_id", "status", "id")],
}


def _name(table: str, columns: tuple[str, ...]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("created_at", rex.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_consent_records_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_consent_records_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_records")),
    )
    op.create_index(
        "ix_consent_records_contact_id_id", "consent_records", ["contact_id", "id"], unique=False
    )
    for table, indexes in _INDEXES.items():
        for columns in indexes:
            op.create_index(_name(table, columns), table, list(columns), unique=False)
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column("secret", existing_type=sa.String(length=200), type_=sa.Text())
        batch_op.alter_column(
            "previous_secret", existing_type=sa.String(length=200), type_=sa.Text()
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.alter_column("previous_secret", existing_type=sa.Text(), type_=sa.String(200))
        batch_op.alter_column("secret", existing_type=sa.Text(), type_=sa.String(200))
    for table, indexes in _INDEXES.items():
        for columns in indexes:
            op.drop_index(_name(table, columns), table_name=table)
    op.drop_index("ix_consent_records_contact_id_id", table_name="consent_records")
    op.drop_table("consent_records")
