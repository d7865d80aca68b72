"""Operations: Prometheus metrics, request ids and the access log, health and readiness,
worker heartbeats, API key management, backups and status."""
