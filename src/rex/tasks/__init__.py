"""Tasks: follow-ups on contacts and deals."""
