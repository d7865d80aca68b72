"""The outbox's tables: events and their traces, endpoints (webhooks, ``rex listen``
sessions, Rex's own), a workspace's own event types, deliveries and their attempts."""

from __future__ import annotations

import sqlalchemy as sa

from rex.db.schema.base import id_column, metadata, timestamp_columns, workspace_column
from rex.db.types import JSONType, UTCDateTime
from rex.secretbox import EncryptedSecret

events = sa.Table(
    "events",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(40)),
    # The exact envelope bytes every delivery of this event sends (decoded as UTF-8 text).
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index(None, "workspace_id", "id"),
    # An object's events newest first (a contact's timeline, ?object_id=), in index order.
    sa.Index(None, "workspace_id", "object_id", "id"),
    sa.Index(None, "created_at"),
    sa.Index(None, "workspace_id", "type", "id"),
    sa.Index(None, "workspace_id", "created_at"),
)

# The trace context an event was recorded in (W3C `traceparent`), written only when tracing
# is on (rex.tracing): a delivery attempt's span links to it, across processes.
event_traces = sa.Table(
    "event_traces",
    metadata,
    sa.Column(
        "event_id",
        sa.String(40),
        sa.ForeignKey("events.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("traceparent", sa.String(64), nullable=False),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("events", JSONType, nullable=False),
    sa.Column("description", sa.Text()),
    # Encrypted at rest (rex.secretbox: "fernet:" + token); plain text from before 0006 is
    # still read, and re-encrypted at start-up.
    sa.Column("secret", EncryptedSecret(), nullable=False),
    sa.Column("previous_secret", EncryptedSecret()),
    sa.Column("previous_secret_expires_at", UTCDateTime()),
    sa.Column("enabled", sa.Boolean(), nullable=False, default=True),
    sa.Column("disabled_reason", sa.Text()),
    sa.Column("max_concurrency", sa.Integer(), nullable=False, default=10),
    # "webhook" for subscriptions made through /webhooks, "listen" for `rex listen` sessions.
    sa.Column("kind", sa.String(16), nullable=False, default="webhook"),
    sa.Column("last_success_at", UTCDateTime()),
    sa.Column("failing_since", UTCDateTime()),
    # "none", "endpoint" or "object" (rex.outbox.ordering); last_sequence numbers the
    # deliveries queued for an ordered endpoint, in commit order (the row is locked to take one).
    sa.Column("ordering", sa.String(16), nullable=False, default="none"),
    sa.Column("last_sequence", sa.BigInteger(), nullable=False, default=0),
    # Set on Rex's own endpoints, hidden from /webhooks: "form_notify" (a form's new-lead
    # emails), "alert_email" and "alert_slack" (the workspace's operational alerts).
    sa.Column("system_role", sa.String(16)),
    # The health state last announced (NULL, "failing", "disabled"), so that each change is
    # announced once whatever the number of workers; failure_alerted: a delivery.failed alert
    # went out since the endpoint last recovered.
    sa.Column("alert_state", sa.String(16)),
    sa.Column("failure_alerted", sa.Boolean(), nullable=False, default=False),
    # Extra headers sent with every delivery ({"Authorization": "Bearer ..."}): a JSON object,
    # encrypted at rest like the secret (they are credentials), never shown back in full.
    sa.Column("headers", EncryptedSecret()),
    # Deliveries per second across every worker (NULL: no limit), and its shared state: no
    # claim takes another slot before this time (rex.outbox.queue, the rate limit).
    sa.Column("rate_limit", sa.Integer()),
    sa.Column("rate_limited_until", UTCDateTime()),
    # {"data.source": "organic", "data.stage": ["won", "lost"]}: all must hold for an event
    # to be queued for this endpoint (rex.outbox.filters). NULL: every subscribed event.
    sa.Column("filter", JSONType),
    *timestamp_columns(),
    sa.Index(None, "workspace_id", "id"),
)

# A workspace's own event types (POST /events publishes them); the built-in ones are in
# rex.outbox.catalogue. Deleting one archives it: its events and subscriptions stay.
event_types = sa.Table(
    "event_types",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text()),
    # A JSON Schema the published events' `data` must satisfy (NULL: any object).
    sa.Column("schema", JSONType),
    sa.Column("archived_at", UTCDateTime()),
    *timestamp_columns(),
    sa.UniqueConstraint("workspace_id", "name"),
)

# A `rex listen` session: an endpoint of kind "listen" whose deliveries are not sent by the
# workers but streamed to the CLI that opened it (see rex.listen). One per API key and local URL,
# so a restarted `rex listen` resumes it, with the same secret, within the grace period.
listen_sessions = sa.Table(
    "listen_sessions",
    metadata,
    sa.Column(
        "endpoint_id",
        sa.String(40),
        sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    workspace_column(),
    sa.Column(
        "api_key_id",
        sa.String(40),
        sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("forward_to", sa.String(2048), nullable=False),
    # The stream serving the session now (NULL while disconnected). A reconnect replaces it;
    # the replaced stream notices at its next heartbeat and ends.
    sa.Column("connection_id", sa.String(64)),
    # Refreshed by the serving stream's heartbeats; the session expires a grace period after.
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("api_key_id", "forward_to"),
    sa.Index(None, "workspace_id", "endpoint_id"),
    sa.Index(None, "last_seen_at"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    id_column(),
    workspace_column(),
    sa.Column(
        "endpoint_id",
        sa.String(40),
        sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "event_id", sa.String(40), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt_count", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("leased_by", sa.String(64)),
    sa.Column("last_attempt_at", UTCDateTime()),
    # Ordered endpoints only (NULL otherwise): the group it is ordered in (the endpoint, or
    # its event's object) and its place in the endpoint's queue. See rex.outbox.ordering.
    sa.Column("sequence", sa.BigInteger()),
    sa.Column("ordering_key", sa.String(255)),
    *timestamp_columns(),
    sa.Index(None, "endpoint_id", "id"),
    sa.Index(None, "event_id"),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    # The claim query's index: only pending rows, in due order.
    sa.Index(
        "ix_deliveries_due",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    # The per-endpoint claim (see rex.outbox.queue.claim_due_deliveries): an endpoint's
    # pending rows in due order, and its leased rows (how many attempts it has in flight).
    sa.Index(
        "ix_deliveries_endpoint_due",
        "endpoint_id",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_deliveries_endpoint_leased",
        "endpoint_id",
        "lease_expires_at",
        postgresql_where=sa.text("leased_by IS NOT NULL"),
        sqlite_where=sa.text("leased_by IS NOT NULL"),
    ),
    # An ordered group's pending rows in queue order: its head, and what waits behind it.
    sa.Index(
        "ix_deliveries_ordering",
        "endpoint_id",
        "ordering_key",
        "sequence",
        postgresql_where=sa.text("status = 'pending' AND ordering_key IS NOT NULL"),
        sqlite_where=sa.text("status = 'pending' AND ordering_key IS NOT NULL"),
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    id_column(),
    sa.Column(
        "delivery_id",
        sa.String(40),
        sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer()),
    sa.Column("error", sa.Text()),
    sa.Column("latency_ms", sa.Integer(), nullable=False),
    sa.Column("response_excerpt", sa.Text()),
    sa.Index(None, "delivery_id", "at"),
)
