"""What an answer makes of a delivery: one rule, used by the delivery worker for its POSTs
and by ``rex listen`` for the attempts its CLI reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rex.outbox.records import AttemptOutcome, DeliveryStatus
from rex.policies import RetryPolicy

GONE_REASON = "the endpoint answered 410 Gone: it asked not to receive webhooks any more"
"""The ``disabled_reason`` of an endpoint that answered 410."""

RETRY_AFTER_STATUSES = frozenset({429, 503})
"""The statuses whose ``Retry-After`` is honoured (bounded by the schedule)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt of a delivery got: a status code, or an error and no status."""

    attempt: int
    """Which attempt this was (1 for the first)."""
    at: datetime
    status_code: int | None
    error: str | None
    latency_ms: int
    excerpt: str | None = None
    retry_after: float | None = None
    """Seconds from the answer's ``Retry-After``, if it had one."""


def outcome_for(policy: RetryPolicy, answer: Answer) -> AttemptOutcome:
    """The attempt to record and what the delivery becomes.

    * 2xx: delivered.
    * 410 Gone: failed at once, and the endpoint is disabled.
    * Anything else (3xx, 4xx, 5xx, timeout, connection error): pending again after the
      policy's next pause (a ``Retry-After`` on 429/503 is honoured, within the schedule's
      longest pause), or failed when the schedule is exhausted.
    """
    status_code = answer.status_code
    disable: str | None = None
    next_at: datetime | None = None
    if status_code is not None and 200 <= status_code < 300:
        status = DeliveryStatus.DELIVERED
    elif status_code == 410:
        status, disable = DeliveryStatus.FAILED, GONE_REASON
    else:
        retry_after = answer.retry_after if status_code in RETRY_AFTER_STATUSES else None
        delay = policy.delay_after(answer.attempt, retry_after=retry_after)
        if delay is None:
            status = DeliveryStatus.FAILED
        else:
            status, next_at = DeliveryStatus.PENDING, answer.at + timedelta(seconds=delay)
    return AttemptOutcome(
        at=answer.at,
        status_code=status_code,
        error=answer.error,
        latency_ms=answer.latency_ms,
        response_excerpt=answer.excerpt,
        status=status,
        next_attempt_at=next_at,
        disable_endpoint=disable,
    )
