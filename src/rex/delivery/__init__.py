"""Outbound webhook delivery: the HTTP transport and its destination policy."""
