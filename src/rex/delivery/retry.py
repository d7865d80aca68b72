"""When to try a delivery again."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from rex.db.outbox import DeliveryStatus
from rex.settings import Settings


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


def next_state(
    settings: Settings,
    attempts_made: int,
    at: datetime,
    status_code: int | None,
    retry_after: float | None,
) -> tuple[DeliveryStatus, datetime | None]:
    """What a delivery becomes after its ``attempts_made``-th attempt: delivered on a 2xx,
    else pending again on the schedule (``retry_after`` is used for 429/503 only), else failed.
    Shared by the worker and ``rex listen`` sessions."""
    if status_code is not None and 200 <= status_code < 300:
        return DeliveryStatus.DELIVERED, None
    delay = next_delay(
        attempts_made,
        settings.retry_schedule,
        jitter=settings.retry_jitter,
        retry_after=retry_after if status_code in (429, 503) else None,
    )
    if delay is None:
        return DeliveryStatus.FAILED, None
    return DeliveryStatus.PENDING, at + timedelta(seconds=delay)
