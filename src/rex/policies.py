"""Typed policies built once from ``Settings`` at start-up (``Settings.retry_policy``,
``Settings.delivery``, ``Settings.listen``): the code that sends and retries deliveries takes
the policy it needs, never the whole ``Settings``. Standard library only."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try a delivery again (procrastinate's ``RetryStrategy`` is the model).

    ``schedule[i]`` is the pause after attempt ``i + 1``, spread by +/-``jitter`` so that a
    burst of failures does not come back as a burst; after the last one the delivery fails.
    """

    schedule: tuple[float, ...]
    jitter: float = 0.2
    longest: float = field(init=False)
    """The longest pause of the schedule: the bound on a receiver's ``Retry-After``."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "longest", max(self.schedule, default=0.0))

    def delay_after(
        self,
        attempts_made: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` attempts, or ``None`` when
        the schedule is exhausted (the delivery has failed).

        A receiver's ``Retry-After`` is honoured: we never come back sooner than it asks,
        but never later than the longest pause in the schedule (a bound, so a hostile header
        cannot park deliveries forever).
        """
        if attempts_made < 1 or attempts_made > len(self.schedule):
            return None
        base = self.schedule[attempts_made - 1]
        jitter = self.jitter
        spread = (rng or random).uniform(1 - jitter, 1 + jitter) if jitter else 1.0
        delay = base * spread
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.longest)
        return max(delay, 0.0)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """What the delivery worker needs (``REX_DELIVERY_*``, ``REX_RETRY_*`` and the rest)."""

    retry: RetryPolicy
    timeout: float
    """Seconds one attempt may take in total."""
    lease: float
    """Seconds a claimed delivery stays leased to its worker."""
    poll_interval: float
    """The longest an idle worker waits before looking for due deliveries again."""
    concurrency: int
    """Attempts in flight at once per worker."""
    disable_after: float | None
    """Seconds without a success after which a failing endpoint is disabled (None: never)."""
    retention_days: int
    """Finished events older than this are pruned (<= 0: kept forever)."""
    retention_interval: float = 3600.0
    """Seconds between two retention runs (the first runs when the worker starts)."""
    failing_after: float | None = None
    """Seconds without a success after which a failing endpoint is announced with
    ``endpoint.failing`` (None: never)."""


@dataclass(frozen=True, slots=True)
class ListenConfig:
    """What ``rex listen`` sessions need (``REX_LISTEN_*``, and the delivery timings they
    share with the worker)."""

    retry: RetryPolicy
    grace_period: float
    """Seconds a disconnected session keeps its secret and queues its events."""
    heartbeat: float
    """Seconds between heartbeats of a connected stream (well inside the grace period)."""
    timeout: float
    """The per-attempt timeout the CLI applies (the worker's)."""
    lease: float
    poll_interval: float
    max_sessions_per_workspace: int = 10
    """Open sessions one workspace may have (``REX_MAX_LISTEN_SESSIONS_PER_WORKSPACE``)."""
