"""Storage: the async engine, the schema and the one module that holds the queue SQL."""
