"""A subscriber that fails 30% of requests at random: a 500, a connection reset, or an
answer slower than Rex's per-attempt timeout (it did the work, but Rex gave up waiting).
Every event is delivered; the duplicates a receiver sees (the event id is its dedup key)
are counted and come only from the slow answers; every request is recorded as an attempt."""

from __future__ import annotations

import collections
import random
import threading
from pathlib import Path

import pytest

from tests.faults.harness import (
    CaptureLoad,
    assert_clean_errors,
    assert_lead_promise,
    fast_env,
    report,
    rex_serve,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Behaviour, ReceivedRequest, Receiver, Reset, Slow
from tests.support import api_key, sql

# REX_DELIVERY_TIMEOUT for this scenario: far above what an immediate answer takes on a
# loaded machine (the receiver runs in this test process, next to the capture load), so
# that the only timeouts are the injected ones, which answer long after it.
TIMEOUT = 5.0
SLOW = TIMEOUT + 5.0


class FlakySubscriber:
    """Answers 200, or with probability ``p`` one of: 500, reset, too slow (then 200).
    Remembers, per event id, how many times it processed the event (answered 200, even
    too late)."""

    def __init__(self, p: float, seed: int) -> None:
        self.p = p
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: collections.Counter[str] = collections.Counter()
        self.processed: collections.Counter[str] = collections.Counter()

    def __call__(self, request: ReceivedRequest) -> Behaviour:
        event_id = request.headers["X-Rex-Event-Id"]
        with self.lock:
            roll = self.random.random()
            if roll >= self.p:
                self.processed[event_id] += 1
                return 200
            failure = ("500", "reset", "timeout")[int(roll / self.p * 3)]
            self.injected[failure] += 1
            if failure == "500":
                return 500
            if failure == "reset":
                return Reset()
            self.processed[event_id] += 1  # done, but answered after Rex stopped waiting
            return Slow(SLOW, then=200)


def flaky_receiver_scenario(database_url: str, tmp_path: Path, *, events: int) -> None:
    env = fast_env(
        database_url,
        REX_DELIVERY_TIMEOUT=str(TIMEOUT),
        # Above the slow answers: an attempt in flight is never claimed a second time.
        REX_DELIVERY_LEASE=str(SLOW + 10),
        REX_WORKER_CONCURRENCY="64",
    )
    key = api_key(database_url)
    api = rex_serve(env, tmp_path / "api.log")
    subscriber = FlakySubscriber(0.3, seed=events)
    with Receiver(default=subscriber) as receiver, running(api):
        assert api.url is not None
        subscribe(api.url, key, receiver.url(), max_concurrency=32)
        load = CaptureLoad(api.url, total=events, clients=4, max_seconds=120)
        load.start()
        load.join()
        wait_all_delivered(database_url, timeout=120 + events / 20)
        requests = receiver.requests

    assert_clean_errors(load, allowed=set())
    figures = assert_lead_promise(database_url, load, requests)
    assert figures["acknowledged"] == events
    attempts = int(sql(database_url, "SELECT count(*) AS n FROM attempts")[0].n)
    assert attempts == len(requests), "every request the subscriber saw is a recorded attempt"
    processed = subscriber.processed
    assert len(processed) == events, "every event was processed at least once"
    duplicates = sum(n - 1 for n in processed.values())
    assert duplicates <= subscriber.injected["timeout"]
    retries = collections.Counter(
        int(row.n) for row in sql(database_url, "SELECT attempt_count AS n FROM deliveries")
    )
    report(
        f"flaky receiver 30% ({database_url.split(':')[0]})",
        events=events,
        requests=len(requests),
        injected=dict(subscriber.injected),
        processed_duplicates=duplicates,
        attempts_per_delivery=dict(sorted(retries.items())),
        max_attempts=max(retries),
        **{k: v for k, v in figures.items() if k != "duplicates"},
    )


def test_subscriber_failing_30_percent_gets_every_event(database_url: str, tmp_path: Path) -> None:
    flaky_receiver_scenario(database_url, tmp_path, events=200)


@pytest.mark.long
def test_subscriber_failing_30_percent_over_2000_events(database_url: str, tmp_path: Path) -> None:
    flaky_receiver_scenario(database_url, tmp_path, events=2000)
