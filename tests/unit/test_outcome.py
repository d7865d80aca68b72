"""``outcome_for``: the one rule that turns an answer into what a delivery becomes, used by
the delivery worker and by ``rex listen`` reports alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rex.listen.schemas import AttemptReport
from rex.listen.service import attempt_outcome
from rex.outbox.records import DeliveryStatus
from rex.policies import ListenConfig, RetryPolicy
from rex.worker.retry import GONE_REASON, Answer, outcome_for

POLICY = RetryPolicy((10.0, 20.0), jitter=0)  # two retries, then failed
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

DELIVERED = DeliveryStatus.DELIVERED
PENDING = DeliveryStatus.PENDING
FAILED = DeliveryStatus.FAILED


@pytest.mark.parametrize(
    ("attempt", "status_code", "error", "retry_after", "status", "delay", "disabled"),
    [
        # 2xx: delivered, whatever the attempt.
        (1, 200, None, None, DELIVERED, None, False),
        (1, 204, None, None, DELIVERED, None, False),
        (3, 299, None, None, DELIVERED, None, False),
        # Anything else is retried on the schedule...
        (1, 300, None, None, PENDING, 10.0, False),
        (1, 301, None, None, PENDING, 10.0, False),
        (1, 400, None, None, PENDING, 10.0, False),
        (2, 404, None, None, PENDING, 20.0, False),
        (1, 500, None, None, PENDING, 10.0, False),
        (1, None, "timeout after 15s", None, PENDING, 10.0, False),
        (2, None, "connection refused", None, PENDING, 20.0, False),
        # ...until the schedule is exhausted.
        (3, 500, None, None, FAILED, None, False),
        (3, None, "timeout after 15s", None, FAILED, None, False),
        # Retry-After on 429/503: honoured when longer, bounded by the longest pause.
        (1, 429, None, 15.0, PENDING, 15.0, False),
        (1, 503, None, 1000.0, PENDING, 20.0, False),
        (1, 503, None, 1.0, PENDING, 10.0, False),
        # ...and ignored on any other status.
        (1, 500, None, 15.0, PENDING, 10.0, False),
        (1, 302, None, 15.0, PENDING, 10.0, False),
        # 410 Gone: failed at once, and the endpoint is disabled (first or last attempt).
        (1, 410, None, None, FAILED, None, True),
        (3, 410, None, None, FAILED, None, True),
        (1, 410, None, 15.0, FAILED, None, True),
    ],
)
def test_outcome_for(
    attempt: int,
    status_code: int | None,
    error: str | None,
    retry_after: float | None,
    status: DeliveryStatus,
    delay: float | None,
    disabled: bool,
) -> None:
    answer = Answer(
        attempt=attempt,
        at=AT,
        status_code=status_code,
        error=error,
        latency_ms=7,
        excerpt="body",
        retry_after=retry_after,
    )
    outcome = outcome_for(POLICY, answer)
    assert outcome.status is status
    assert outcome.next_attempt_at == (None if delay is None else AT + timedelta(seconds=delay))
    assert outcome.disable_endpoint == (GONE_REASON if disabled else None)
    assert outcome.succeeded is (status is DELIVERED)
    # The attempt itself is recorded as it happened.
    assert (outcome.at, outcome.status_code, outcome.error) == (AT, status_code, error)
    assert (outcome.latency_ms, outcome.response_excerpt) == (7, "body")


@pytest.mark.parametrize("status_code", [200, 410, 429, 500, 503])
def test_a_listen_report_gets_the_workers_outcome(status_code: int) -> None:
    """What ``rex listen`` reports is judged by the worker's rule: same status, same next
    attempt, and the same endpoint disabling on 410 (it used to be retried there)."""
    config = ListenConfig(
        retry=POLICY, grace_period=600, heartbeat=15, timeout=15, lease=30, poll_interval=1
    )
    report = AttemptReport(
        delivery_id="dlv_x",
        lease="listen:x",
        status_code=status_code,
        latency_ms=7,
        response_excerpt="body",
        retry_after=15.0,
    )
    from_listen = attempt_outcome(config, 1, AT, report)
    from_worker = outcome_for(
        POLICY,
        Answer(
            attempt=1,
            at=AT,
            status_code=status_code,
            error=None,
            latency_ms=7,
            excerpt="body",
            retry_after=15.0,
        ),
    )
    assert from_listen == from_worker
    if status_code == 410:
        assert from_listen.status is FAILED and from_listen.disable_endpoint == GONE_REASON
