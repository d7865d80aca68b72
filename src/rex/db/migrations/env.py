"""Alembic environment: runs on the connection Rex hands it (see ``Database.migrate``)."""

from __future__ import annotations

from alembic import context

from rex.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - Rex always passes its own connection
    raise RuntimeError("run migrations with `rex migrate`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
