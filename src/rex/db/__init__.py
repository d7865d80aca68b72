"""Storage: the async engine, the schema, SQLite group commit and its driver, the idempotency
store and the migrations (the outbox and queue SQL is ``rex.outbox``)."""
