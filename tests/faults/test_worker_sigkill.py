"""PostgreSQL: the one ``rex worker`` is SIGKILLed several times during one run while leads
keep coming, and restarted each time. Its leases expire and are taken over; every event is
delivered, and the only duplicates are deliveries it had in flight when it died."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    CaptureLoad,
    assert_clean_errors,
    assert_lead_promise,
    fast_env,
    report,
    rex_serve,
    rex_worker,
    running,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver, Respond
from tests.support import api_key, sql, truncate_all, wait_until


def leased_by(database_url: str, pid: int) -> int:
    """Pending deliveries under a lease of the worker with this pid (id: host:pid:...)."""
    rows = sql(
        database_url,
        "SELECT count(*) AS n FROM deliveries WHERE status = 'pending' AND leased_by LIKE :p",
        p=f"%:{pid}:%",
    )
    return int(rows[0].n)


def worker_sigkill_scenario(postgres_url: str, tmp_path: Path, *, total: int, kills: int) -> None:
    truncate_all(postgres_url)
    env = fast_env(postgres_url)
    key = api_key(postgres_url)
    api = rex_serve(env, tmp_path / "api.log", "--no-worker")
    worker = rex_worker(env, tmp_path / "worker.log", concurrency=16)
    with Receiver() as receiver, running(api, worker):
        assert api.url is not None
        receiver.set_default(Respond(200, delay=0.05))  # keep deliveries in flight
        subscribe(api.url, key, receiver.url(), max_concurrency=16)
        load = CaptureLoad(api.url, total=total, clients=3, max_seconds=60 + 15 * kills)
        load.start()
        in_flight_at_kills = []
        takeover = []
        try:
            for n in range(kills):
                wait_until(
                    lambda n=n: len(receiver.requests) >= total * (n + 1) // (kills + 2),
                    timeout=60,
                )
                victim = worker.pid
                worker.kill()
                in_flight_at_kills.append(leased_by(postgres_url, victim))
                killed = time.monotonic()
                worker.start()
                # Its leases expire (REX_DELIVERY_LEASE=3s) and the new process takes them.
                wait_until(lambda victim=victim: leased_by(postgres_url, victim) == 0, 30, 0.1)
                takeover.append(round(time.monotonic() - killed, 2))
        finally:
            load.join()
        wait_all_delivered(postgres_url, timeout=90)
        requests = receiver.requests

    assert_clean_errors(load, allowed=set())
    # The scenario happened: a kill left deliveries leased to the dead worker, which the
    # next one had to take over (else "loses no event" was never put to the test).
    assert sum(in_flight_at_kills) > 0, in_flight_at_kills
    figures = assert_lead_promise(postgres_url, load, requests)
    assert figures["acknowledged"] == total
    assert figures["duplicates"] <= sum(in_flight_at_kills), in_flight_at_kills
    report(
        f"worker SIGKILL x{kills}",
        **figures,
        in_flight_at_kills=in_flight_at_kills,
        lease_takeover_s=takeover,
    )


@pytest.mark.postgres
def test_worker_sigkilled_three_times_loses_no_event(postgres_url: str, tmp_path: Path) -> None:
    worker_sigkill_scenario(postgres_url, tmp_path, total=400, kills=3)


@pytest.mark.postgres
@pytest.mark.long
def test_worker_sigkilled_ten_times_over_a_long_run(postgres_url: str, tmp_path: Path) -> None:
    worker_sigkill_scenario(postgres_url, tmp_path, total=3000, kills=10)
