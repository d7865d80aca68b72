"""When to try a delivery again."""

from __future__ import annotations

import random
from collections.abc import Sequence


def next_delay(
    attempts_made: int,
    schedule: Sequence[float],
    *,
    jitter: float = 0.2,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts, or ``None`` when the
    schedule is exhausted (the delivery has failed).

    ``schedule[i]`` is the pause after attempt ``i + 1``, spread by +/-``jitter`` so that a
    burst of failures does not come back as a burst. A receiver's ``Retry-After`` is honoured:
    we never come back sooner than it asks, but never later than the longest pause in the
    schedule (a bound, so a hostile header cannot park deliveries forever).
    """
    if attempts_made < 1 or attempts_made > len(schedule):
        return None
    base = schedule[attempts_made - 1]
    spread = (rng or random).uniform(1 - jitter, 1 + jitter) if jitter else 1.0
    delay = base * spread
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(schedule))
    return max(delay, 0.0)
