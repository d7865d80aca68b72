"""Workspaces and their keys, the workers' heartbeats, and the CRM: contacts, consent
records, pipelines, deals, tasks."""

from __future__ import annotations

import sqlalchemy as sa

from rex.db.schema.base import id_column, metadata, timestamp_columns, workspace_column
from rex.db.types import JSONType, UTCDateTime

workspaces = sa.Table(
    "workspaces",
    metadata,
    id_column(),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("allowed_origins", JSONType, nullable=False, default=list),
    sa.Column("redirect_url", sa.Text()),
    sa.Column("capture_rate_limit", sa.String(32)),
    # Operational alerts (endpoint.failing, .disabled, .recovered, delivery.failed) also go
    # to these, through the workspace's hidden alert endpoints (rex.outbox.alerts).
    sa.Column("notify_emails", JSONType, nullable=False, default=list),
    sa.Column("notify_slack_url", sa.Text()),
    *timestamp_columns(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("name", sa.String(200), nullable=False),
    # The first characters of the key's random part: found by index, then the full hash is
    # compared in constant time. The key itself is never stored.
    sa.Column("lookup", sa.String(16), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Column("expires_at", UTCDateTime()),
)

# One row per delivery worker (embedded in `rex serve` or `rex worker`), refreshed while it
# runs: `/readyz` and `rex status` read it.
worker_heartbeats = sa.Table(
    "worker_heartbeats",
    metadata,
    sa.Column("worker_id", sa.String(200), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("stopped_at", UTCDateTime()),
)

contacts = sa.Table(
    "contacts",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("first_name", sa.String(200)),
    sa.Column("last_name", sa.String(200)),
    sa.Column("phone", sa.String(64)),
    sa.Column("company", sa.String(200)),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("source", sa.String(200)),
    sa.Column("first_touch", JSONType),
    sa.Column("last_touch", JSONType),
    sa.Column("consent", JSONType),
    sa.Column("metadata", JSONType, nullable=False, default=dict),
    *timestamp_columns(),
    sa.UniqueConstraint("workspace_id", "email"),
    sa.Index(None, "workspace_id", "id"),
    # Every list filter has an index that also serves the newest-first order (0006).
    sa.Index(None, "workspace_id", "stage", "id"),
    # The console's Leads page lists a workspace's sources (its source filter) (0011).
    sa.Index(None, "workspace_id", "source"),
)

# Every consent a contact gave or withdrew, oldest first, never updated or deleted (but with
# its contact). ``contacts.consent`` holds the latest record. ``via``: "capture" (anonymous,
# grants and first answers only) or "api" (an API key; the only way to revoke).
consent_records = sa.Table(
    "consent_records",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    workspace_column(),
    sa.Column(
        "contact_id",
        sa.String(40),
        sa.ForeignKey("contacts.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("granted", sa.Boolean(), nullable=False),
    sa.Column("text", sa.Text()),
    sa.Column("ip", sa.String(64)),
    sa.Column("via", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "contact_id", "id"),
)

pipelines = sa.Table(
    "pipelines",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_default", sa.Boolean(), nullable=False, default=False),
    # [{"name": "qualified", "status": "open"}, ...] in board order.
    sa.Column("stages", JSONType, nullable=False),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
    # At most one default pipeline per workspace: concurrent "create the default pipeline if
    # missing" (several API processes) insert with ON CONFLICT DO NOTHING against this index.
    sa.Index(
        "uq_pipelines_default",
        "workspace_id",
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    ),
)

deals = sa.Table(
    "deals",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("amount", sa.BigInteger()),
    sa.Column("currency", sa.String(3)),
    sa.Column("pipeline_id", sa.String(40), sa.ForeignKey("pipelines.id"), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("expected_close_date", sa.Date()),
    sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    sa.Column("metadata", JSONType, nullable=False, default=dict),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "stage", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    sa.Index(None, "workspace_id", "contact_id", "id"),
    sa.Index(None, "workspace_id", "pipeline_id", "id"),
    # The deals board: a column's newest cards in index order, and its count and sum per
    # currency read from the index alone.
    sa.Index(None, "workspace_id", "pipeline_id", "stage", "id", "currency", "amount"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.Text()),
    sa.Column("due_at", UTCDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    sa.Column("deal_id", sa.String(40), sa.ForeignKey("deals.id", ondelete="SET NULL")),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    sa.Index(None, "workspace_id", "contact_id", "id"),
    sa.Index(None, "workspace_id", "deal_id", "id"),
    # Open tasks by due date, then id: the console's Tasks page, a keyset on both.
    sa.Index(None, "workspace_id", "due_at", "id"),
)
