"""Consent as an append-only history: captures may add a grant, only API keys may revoke."""
