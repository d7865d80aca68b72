"""Load: a bounded flood of ``POST /capture`` from many clients, each far past the per-IP
rate limit. The flood gets 429s with ``Retry-After`` (never a 5xx, never a write past the
limit); meanwhile a well-behaved visitor's captures and an API client's reads all succeed,
and the server's memory stays bounded. Latencies and RSS are printed, not asserted."""

from __future__ import annotations

import collections
import math
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    RexProcess,
    fast_env,
    report,
    rex_serve,
    running,
    stored_emails,
    subscribe,
    wait_all_delivered,
)
from tests.receiver import Receiver
from tests.support import api_key

RATE = 20  # captures per minute per client address (burst of 20, then one every 3 s)


class Flood:
    """``threads`` clients, ``addresses`` source addresses (X-Forwarded-For from the trusted
    127.0.0.1 proxy), ``total`` requests as fast as they go, at most ``max_seconds``."""

    def __init__(self, url: str, *, total: int, addresses: int, threads: int, max_seconds: float):
        self.url, self.total, self.max_seconds = url, total, max_seconds
        self.addresses = [f"10.66.{n // 250}.{n % 250 + 1}" for n in range(addresses)]
        self.threads = threads
        self.lock = threading.Lock()
        self.sent = 0
        self.statuses: collections.Counter[int | str] = collections.Counter()
        self.accepted: collections.Counter[str] = collections.Counter()  # per address
        self.bad_429: list[str] = []
        self.workers: list[threading.Thread] = []

    def start(self) -> Flood:
        self.deadline = time.monotonic() + self.max_seconds
        self.started = time.monotonic()
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self.workers.append(worker)
        return self

    def join(self) -> None:
        for worker in self.workers:
            worker.join(self.max_seconds + 60)
        assert not any(w.is_alive() for w in self.workers)
        self.duration = time.monotonic() - self.started

    def _take(self) -> int | None:
        with self.lock:
            if self.sent >= self.total or time.monotonic() > self.deadline:
                return None
            self.sent += 1
            return self.sent

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while (i := self._take()) is not None:
                address = self.addresses[i % len(self.addresses)]
                try:
                    response = client.post(
                        "/capture",
                        json={"email": f"flood{i}@example.com"},
                        headers={"X-Forwarded-For": address},
                    )
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.statuses[f"no answer ({type(exc).__name__})"] += 1
                    continue
                with self.lock:
                    self.statuses[response.status_code] += 1
                    if response.status_code == 201:
                        self.accepted[address] += 1
                    elif response.status_code == 429 and not (
                        int(response.headers.get("Retry-After", "0")) >= 1
                        and response.json()["error"]["type"] == "rate_limited"
                    ):
                        self.bad_429.append(response.text[:200])


def steady_client(
    stop: threading.Event, call: object, interval: float, limit: int
) -> tuple[list[int], list[float]]:
    """Call ``call()`` every ``interval`` seconds until ``stop`` (at most ``limit`` times);
    its statuses and latencies."""
    statuses: list[int] = []
    latencies: list[float] = []
    assert callable(call)
    while not stop.is_set() and len(statuses) < limit:
        started = time.monotonic()
        statuses.append(call())
        latencies.append(time.monotonic() - started)
        stop.wait(interval)
    return statuses, latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000),
        "p95_ms": round(ordered[math.ceil(len(ordered) * 0.95) - 1] * 1000),
        "max_ms": round(ordered[-1] * 1000),
    }


def sample_rss(api: RexProcess, stop: threading.Event, samples: list[int]) -> None:
    while not stop.wait(0.25) and len(samples) < 10_000:
        samples.append(api.rss_kib())


def capture_flood_scenario(
    tmp_path: Path, *, total: int, addresses: int, max_seconds: float
) -> None:
    database_url = f"sqlite:///{tmp_path}/rex.db"
    env = fast_env(
        database_url,
        REX_CAPTURE_RATE_LIMIT=f"{RATE}/minute",
        REX_TRUSTED_PROXIES="127.0.0.1",
    )
    key = api_key(database_url)
    api = rex_serve(env, tmp_path / "api.log")
    with Receiver() as receiver, running(api):
        assert api.url is not None
        subscribe(api.url, key, receiver.url())
        visitor = httpx.Client(base_url=api.url, timeout=30)
        reader = httpx.Client(base_url=api.url, headers={"X-Api-Key": key}, timeout=30)
        # Warm up (first requests, imports, caches) before the baseline memory figure.
        for _ in range(20):
            reader.get("/contacts?limit=10").raise_for_status()
        baseline_rss = api.rss_kib()

        stop = threading.Event()
        rss: list[int] = []
        visits = iter(range(1_000_000))
        results: dict[str, tuple[list[int], list[float]]] = {}

        def visit() -> int:
            email = f"visitor{next(visits)}@example.com"
            headers = {"X-Forwarded-For": "192.0.2.10"}
            return visitor.post("/capture", json={"email": email}, headers=headers).status_code

        def read() -> int:
            return reader.get("/contacts?limit=10").status_code

        # The visitor stays under its limit: one capture every 3.5 s, 20/minute allowed.
        steady = {
            "visitor": threading.Thread(
                target=lambda: results.__setitem__("visitor", steady_client(stop, visit, 3.5, 1000))
            ),
            "api": threading.Thread(
                target=lambda: results.__setitem__("api", steady_client(stop, read, 0.25, 10_000))
            ),
            "rss": threading.Thread(target=sample_rss, args=(api, stop, rss)),
        }
        for thread in steady.values():
            thread.start()
        flood = Flood(
            api.url, total=total, addresses=addresses, threads=8, max_seconds=max_seconds
        ).start()
        try:
            flood.join()
        finally:
            stop.set()
            for thread in steady.values():
                thread.join(60)
            visitor.close()
            reader.close()
        after_rss = api.rss_kib()
        wait_all_delivered(database_url, timeout=90)
        delivered = len(receiver.requests)

    visitor_statuses, visitor_latencies = results["visitor"]
    api_statuses, api_latencies = results["api"]
    assert not [s for s in flood.statuses if s not in (201, 429)], flood.statuses
    assert flood.statuses[429] > 0 and not flood.bad_429, flood.bad_429[:3]
    # GCRA: at most the burst plus one per interval, per address.
    allowed = RATE + int(flood.duration * RATE / 60) + 1
    assert max(flood.accepted.values()) <= allowed, (max(flood.accepted.values()), allowed)
    assert set(visitor_statuses) == {201}, collections.Counter(visitor_statuses)
    assert set(api_statuses) == {200}, collections.Counter(api_statuses)
    # A refused capture writes nothing: the database holds the accepted ones only.
    stored = stored_emails(database_url)
    assert len(stored) == flood.statuses[201] + len(visitor_statuses)
    assert delivered >= len(stored)
    peak = max(rss)
    # Memory is bounded: the flood does not grow the server by more than a generous margin
    # (the limiter keeps one float per address; nothing is kept per refused request).
    assert peak - baseline_rss < 200 * 1024, (baseline_rss, peak)
    report(
        "capture flood",
        flood_requests=flood.sent,
        flood_addresses=addresses,
        flood_seconds=round(flood.duration, 1),
        flood_rps=round(flood.sent / flood.duration),
        flood_answers=dict(flood.statuses),
        max_accepted_per_address=max(flood.accepted.values()),
        visitor_captures=len(visitor_statuses),
        visitor_latency=percentiles(visitor_latencies),
        api_reads=len(api_statuses),
        api_latency=percentiles(api_latencies),
        rss_mib={
            "baseline": round(baseline_rss / 1024),
            "peak": round(peak / 1024),
            "after": round(after_rss / 1024),
        },
        stored=len(stored),
        delivered=delivered,
    )


def test_capture_flood_is_refused_while_others_are_served(tmp_path: Path) -> None:
    capture_flood_scenario(tmp_path, total=3000, addresses=10, max_seconds=40)


@pytest.mark.long
def test_long_capture_flood_from_many_addresses(tmp_path: Path) -> None:
    capture_flood_scenario(tmp_path, total=30_000, addresses=100, max_seconds=300)
