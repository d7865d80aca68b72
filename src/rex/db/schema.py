"""The tables, as SQLAlchemy Core metadata. Migrations in ``migrations/versions`` create them."""

from __future__ import annotations

import sqlalchemy as sa

from rex.db.types import JSONType, UTCDateTime
from rex.secretbox import EncryptedSecret

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(40), primary_key=True)


def _workspace() -> sa.Column[str]:
    return sa.Column(
        "workspace_id",
        sa.String(40),
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"),
        nullable=False,
    )


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


workspaces = sa.Table(
    "workspaces",
    metadata,
    _id(),
    sa.Column("slug", sa.String(63), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("allowed_origins", JSONType, nullable=False, default=list),
    sa.Column("redirect_url", sa.Text()),
    sa.Column("capture_rate_limit", sa.String(32)),
    # Operational alerts (endpoint.failing, .disabled, .recovered, delivery.failed) also go
    # to these, through the workspace's hidden alert endpoints (rex.outbox.alerts).
    sa.Column("notify_emails", JSONType, nullable=False, default=list),
    sa.Column("notify_slack_url", sa.Text()),
    *_timestamps(),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    _workspace(),
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
    _id(),
    _workspace(),
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
    *_timestamps(),
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
    _workspace(),
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
    _id(),
    _workspace(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_default", sa.Boolean(), nullable=False, default=False),
    # [{"name": "qualified", "status": "open"}, ...] in board order.
    sa.Column("stages", JSONType, nullable=False),
    *_timestamps(),
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
    _id(),
    _workspace(),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("amount", sa.BigInteger()),
    sa.Column("currency", sa.String(3)),
    sa.Column("pipeline_id", sa.String(40), sa.ForeignKey("pipelines.id"), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
    sa.Column("expected_close_date", sa.Date()),
    sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    sa.Column("metadata", JSONType, nullable=False, default=dict),
    *_timestamps(),
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
    _id(),
    _workspace(),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("body", sa.Text()),
    sa.Column("due_at", UTCDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("contact_id", sa.String(40), sa.ForeignKey("contacts.id", ondelete="SET NULL")),
    sa.Column("deal_id", sa.String(40), sa.ForeignKey("deals.id", ondelete="SET NULL")),
    *_timestamps(),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    sa.Index(None, "workspace_id", "contact_id", "id"),
    sa.Index(None, "workspace_id", "deal_id", "id"),
    # Open tasks by due date, then id: the console's Tasks page, a keyset on both.
    sa.Index(None, "workspace_id", "due_at", "id"),
)

events = sa.Table(
    "events",
    metadata,
    _id(),
    _workspace(),
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
    _id(),
    _workspace(),
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
    *_timestamps(),
    sa.Index(None, "workspace_id", "id"),
)

# A workspace's own event types (POST /events publishes them); the built-in ones are in
# rex.outbox.catalogue. Deleting one archives it: its events and subscriptions stay.
event_types = sa.Table(
    "event_types",
    metadata,
    _id(),
    _workspace(),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("description", sa.Text()),
    # A JSON Schema the published events' `data` must satisfy (NULL: any object).
    sa.Column("schema", JSONType),
    sa.Column("archived_at", UTCDateTime()),
    *_timestamps(),
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
    _workspace(),
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
    _id(),
    _workspace(),
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
    *_timestamps(),
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
    _id(),
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

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    _workspace(),
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
    _id(),
    _workspace(),
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
    *_timestamps(),
    sa.Index(None, "workspace_id", "id"),
)

# Everything posted to a capture URL that passed the abuse limits: accepted, spam or rejected.
submissions = sa.Table(
    "submissions",
    metadata,
    _id(),
    _workspace(),
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
    *_timestamps(),
    sa.Index(None, "workspace_id", "id"),
    sa.Index(None, "workspace_id", "status", "id"),
    sa.Index(None, "workspace_id", "form_id", "id"),
    sa.Index(None, "created_at"),
)

# People who sign in to the console (rex.users). A user may belong to several workspaces.
users = sa.Table(
    "users",
    metadata,
    _id(),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    # argon2id, in the PHC string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    sa.Column("password_hash", sa.Text(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.Column("last_sign_in_at", UTCDateTime()),
    *_timestamps(),
)

workspace_memberships = sa.Table(
    "workspace_memberships",
    metadata,
    sa.Column(
        "user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    _workspace(),
    # "owner" (everything) or "member" (everything but users, keys and workspace settings).
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("user_id", "workspace_id"),
    sa.Index(None, "workspace_id", "user_id"),
)

# Console sessions, server-side: the cookie holds a random token, only its SHA-256 is here.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    _id(),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column(
        "user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    # The workspace the session is looking at (the switcher changes it).
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id", ondelete="SET NULL")),
    # The synchronizer token of the session's forms (and X-CSRF-Token of its scripts).
    sa.Column("csrf_secret", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(300)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Index(None, "user_id"),
    sa.Index(None, "expires_at"),
)

# Failed sign-ins per account ("account:<email>") and per client address ("address:<ip>"),
# in the database so that every API process counts the same failures.
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("scope", sa.String(400), primary_key=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("window_started_at", UTCDateTime(), nullable=False),
    sa.Column("locked_until", UTCDateTime()),
)
