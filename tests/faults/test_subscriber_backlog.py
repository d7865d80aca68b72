"""Load: a subscriber is down for an hour of simulated time (the default retry schedule,
compressed) while leads keep coming. Thousands of deliveries back up for it; another
endpoint keeps getting its events meanwhile; when the subscriber returns, its backlog
drains on the retry schedule and every event arrives."""

from __future__ import annotations

import collections
import math
import random
import statistics
import threading
import time
from pathlib import Path

import pytest

from rex.settings import DEFAULT_RETRY_SCHEDULE
from tests.faults.harness import (
    CaptureLoad,
    assert_clean_errors,
    fast_env,
    report,
    rex_serve,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Behaviour, ReceivedRequest, Receiver, Reset
from tests.support import api_key, sql


class Outage:
    """Down (a 503 or a reset at random) until ``restore``; then 200, counting per email
    the events it accepted."""

    def __init__(self) -> None:
        self.down = True
        self.random = random.Random(8)
        self.lock = threading.Lock()
        self.accepted: collections.Counter[str] = collections.Counter()

    def __call__(self, request: ReceivedRequest) -> Behaviour:
        with self.lock:
            if not self.down:
                self.accepted[request.json()["data"]["email"]] += 1
                return 200
            return self.random.choice((503, Reset()))

    def restore(self) -> None:
        with self.lock:
            self.down = False


def lags(load: CaptureLoad, receiver: Receiver, clock_offset: float) -> list[float]:
    """Seconds from each capture's acknowledgement to its delivery at ``receiver``."""
    acked = {o.email: o.done + clock_offset for o in load.outcomes if o.status == 201}
    return [
        r.received_at - acked[email]
        for r in receiver.requests
        if (email := r.json()["data"]["email"]) in acked
    ]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), 2),
        "p95_s": round(ordered[math.ceil(len(ordered) * 0.95) - 1], 2),
        "max_s": round(ordered[-1], 2),
    }


def pending_for(database_url: str, endpoint_id: str) -> int:
    rows = sql(
        database_url,
        "SELECT count(*) AS n FROM deliveries WHERE endpoint_id = :e AND status = 'pending'",
        e=endpoint_id,
    )
    return int(rows[0].n)


def backlog_scenario(database_url: str, tmp_path: Path, *, events: int, hour: float) -> None:
    """``hour``: real seconds standing for one hour of the default retry schedule."""
    scale = hour / 3600
    # Leads paced over the first half of the outage (and at that pace while it drains): a
    # steady stream, as a site's leads are, that the worker can keep up with; a flood is
    # another scenario (test_capture_flood).
    pace = events / (hour / 2)
    schedule = ",".join(f"{delay * scale:.3f}" for delay in DEFAULT_RETRY_SCHEDULE)
    env = fast_env(
        database_url,
        REX_RETRY_SCHEDULE=schedule,
        REX_RETRY_JITTER="0.2",
        REX_DELIVERY_POLL_INTERVAL="0.5",
    )
    key = api_key(database_url)
    api = rex_serve(env, tmp_path / "api.log")
    outage = Outage()
    clock_offset = time.time() - time.monotonic()
    with Receiver(default=outage) as down, Receiver() as healthy, running(api):
        assert api.url is not None
        down_id = subscribe(api.url, key, down.url())
        subscribe(api.url, key, healthy.url())
        went_down = time.monotonic()
        first = CaptureLoad(
            api.url,
            total=events,
            clients=4,
            max_seconds=300,
            prefix="down",
            rate=pace,
        )
        first.start()
        first.join()
        # The healthy endpoint gets everything while the other one is still down.
        healthy.wait_for(events, timeout=120)
        healthy_done = time.monotonic()
        # The rest of the hour (if capturing took longer, the outage lasted that long).
        time.sleep(max(0.0, went_down + hour - time.monotonic()))
        backlog = pending_for(database_url, down_id)
        attempts_while_down = len(down.requests)
        outage.restore()
        returned = time.monotonic()

        # While the backlog drains, new leads keep reaching the healthy endpoint.
        second = CaptureLoad(
            api.url,
            total=max(events // 10, 50),
            clients=2,
            max_seconds=120,
            prefix="drain",
            rate=pace,
        )
        second.start()
        second.join()
        healthy.wait_for(events + second.total, timeout=120)

        # Drained: on the schedule, the next attempts come up to about twice the outage later.
        drained_timeout = 3 * hour + sum(DEFAULT_RETRY_SCHEDULE[:5]) * scale * 1.2 + 60
        wait_all_delivered(database_url, timeout=drained_timeout)
        drained = time.monotonic()
        down_requests = down.requests

    assert_clean_errors(first, allowed=set())
    assert_clean_errors(second, allowed=set())
    total = events + second.total
    assert len(first.acknowledged()) + len(second.acknowledged()) == total
    assert backlog > events * 0.9, f"only {backlog} deliveries backed up: was it down?"
    assert set(outage.accepted) == first.acknowledged() | second.acknowledged()
    healthy_lag_down = lags(first, healthy, clock_offset)
    healthy_lag_drain = lags(second, healthy, clock_offset)
    returned_lag = lags(first, down, clock_offset)
    report(
        f"subscriber down 1 h simulated ({database_url.split(':')[0]})",
        events=total,
        hour_real_s=hour,
        down_simulated_min=round((returned - went_down) / scale / 60),
        schedule_s=schedule,
        backlog_at_return=backlog,
        attempts_while_down=attempts_while_down,
        requests_to_down_endpoint=len(down_requests),
        healthy_all_delivered_after_s=round(healthy_done - went_down, 1),
        healthy_lag_while_down=summary(healthy_lag_down),
        healthy_lag_while_draining=summary(healthy_lag_drain),
        drain_real_s=round(drained - returned, 1),
        duplicates_at_returned_endpoint=sum(n - 1 for n in outage.accepted.values()),
        drain_simulated_min=round((drained - returned) / scale / 60),
        down_endpoint_lag_simulated_min=round(max(returned_lag) / scale / 60),
    )


def test_subscriber_down_for_an_hour_drains_its_backlog(tmp_path: Path) -> None:
    backlog_scenario(f"sqlite:///{tmp_path}/rex.db", tmp_path, events=600, hour=10)


@pytest.mark.long
def test_subscriber_down_for_an_hour_with_thousands_of_deliveries(
    database_url: str, tmp_path: Path
) -> None:
    backlog_scenario(database_url, tmp_path, events=3000, hour=90)
