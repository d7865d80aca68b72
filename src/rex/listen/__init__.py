"""`rex listen` sessions: forward a workspace's events to a local URL without a tunnel."""
