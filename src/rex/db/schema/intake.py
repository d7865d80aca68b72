"""What arrives: idempotency keys of API writes, capture forms, and submissions."""

from __future__ import annotations

import sqlalchemy as sa

from rex.db.schema.base import id_column, metadata, timestamp_columns, workspace_column
from rex.db.types import JSONType, UTCDateTime

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    workspace_column(),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("response_status", sa.Integer(), nullable=False),
    sa.Column("response_body", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("workspace_id", "key"),
    # Expired keys (older than 24 h) are purged per workspace by range.
    sa.Index(None, "workspace_id", "created_at"),
)

# A capture form: its own capture URL (POST /capture/{id}), how its fields map to a contact,
# its honeypots, CAPTCHA and who hears about new leads. Plain /capture is the workspace's
# default form (no row).
forms = sa.Table(
    "forms",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("field_map", JSONType, nullable=False, default=dict),
    sa.Column("redirect_url", sa.Text()),
    sa.Column("honeypot_fields", JSONType, nullable=False, default=list),
    # {"provider", "secret", "min_score"}; the secret is never shown back.
    sa.Column("captcha", JSONType),
    sa.Column("notify_emails", JSONType, nullable=False, default=list),
    sa.Column("success_message", sa.Text()),
    # The endpoint (a mailto: URL) whose deliveries are this form's lead notifications.
    sa.Column(
        "notify_endpoint_id", sa.String(40), sa.ForeignKey("endpoints.id", ondelete="SET NULL")
    ),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
)

# Everything posted to a capture URL that passed the abuse limits: accepted, spam or rejected.
submissions = sa.Table(
    "submissions",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("form_id", sa.String(40), sa.ForeignKey("forms.id", ondelete="SET NULL")),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text()),
    sa.Column("shape", sa.String(64)),
    sa.Column("content_type", sa.String(200)),
    # The fields as received (form fields, or the JSON body's object), and the raw body.
    sa.Column("fields", JSONType),
    sa.Column("raw_body", sa.Text()),
    sa.Column("raw_truncated", sa.Boolean(), nullable=False, default=False),
    sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    sa.Index(None, "workspace_id", "form_id", "id"),
    sa.Index(None, "created_at"),
)
