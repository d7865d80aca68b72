"""The `/deliveries` API: what was sent where, every attempt, and sending again."""
