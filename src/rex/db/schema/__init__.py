"""The tables, as SQLAlchemy Core metadata. Migrations in ``migrations/versions`` create them.

One module per part of the product, imported here in the order the tables were always
declared (``metadata.tables`` keeps it): ``crm`` (workspaces, keys, contacts, deals, ...),
``delivery`` (events, endpoints, deliveries, attempts), ``intake`` (idempotency keys, forms,
submissions), ``users`` (the console's). Import tables from here.
"""

from __future__ import annotations

from rex.db.schema.base import metadata
from rex.db.schema.crm import (
    api_keys,
    consent_records,
    contacts,
    deals,
    pipelines,
    tasks,
    worker_heartbeats,
    workspaces,
)
from rex.db.schema.delivery import (
    attempts,
    deliveries,
    endpoints,
    event_traces,
    event_types,
    events,
    listen_sessions,
)
from rex.db.schema.intake import forms, idempotency_keys, submissions
from rex.db.schema.users import console_sessions, sign_in_failures, users, workspace_memberships

__all__ = [
    "api_keys",
    "attempts",
    "consent_records",
    "console_sessions",
    "contacts",
    "deals",
    "deliveries",
    "endpoints",
    "event_traces",
    "event_types",
    "events",
    "forms",
    "idempotency_keys",
    "listen_sessions",
    "metadata",
    "pipelines",
    "sign_in_failures",
    "submissions",
    "tasks",
    "users",
    "worker_heartbeats",
    "workspace_memberships",
    "workspaces",
]
