"""The full-disk watch (one warning when it starts, one when it ends, however it flaps) and
the clock offset to the database (applied past 1 s, warned about past the signature
tolerance). The fault tests (tests/faults/test_full_disk.py, test_fast_clock.py) run them
for real; these pin the rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import structlog.testing

from rex.clock import SYSTEM_CLOCK, database_offset, set_database_offset
from rex.db import clocksync, outage
from rex.ids import utcnow


@pytest.fixture
def no_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "QUIET", 0.0)


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def test_a_full_disk_is_one_warning_when_it_starts_and_one_when_it_ends() -> None:
    watch = outage.StorageWatch()
    full = OSError(28, "No space left on device")
    with structlog.testing.capture_logs() as logs:
        assert not watch.full
        for _ in range(5):
            watch.refused(full)
        assert watch.full and watch.refused_now == 5
        watch.wrote()  # a small write fits: not over yet (the disk flaps)
        watch.refused(full)
        assert watch.full
    assert len(events(logs, "storage_full")) == 1
    assert events(logs, "storage_available") == []
    assert watch.refused_total == 6


def test_it_ends_with_the_count_at_a_write_after_the_quiet_period(no_quiet: None) -> None:
    watch = outage.StorageWatch()
    with structlog.testing.capture_logs() as logs:
        watch.refused(OSError(28, "No space left on device"))
        watch.refused(OSError(28, "No space left on device"))
        watch.wrote()
        assert not watch.full
        watch.wrote()
    (ended,) = events(logs, "storage_available")
    assert ended["refused"] == 2 and ended["log_level"] == "warning"
    assert watch.refused_now == 0 and watch.refused_total == 2


@pytest.fixture
def clock_watch() -> Iterator[clocksync.ClockWatch]:
    try:
        yield clocksync.ClockWatch()
    finally:
        set_database_offset(timedelta(0))


def test_a_fast_machine_clock_is_corrected_and_warned_about(
    clock_watch: clocksync.ClockWatch,
) -> None:
    postgres = SimpleNamespace(is_sqlite=False)
    with structlog.testing.capture_logs() as logs:
        clock_watch.record(-600.0)  # this machine is 10 minutes ahead of the database
        clock_watch.record(-600.2)
    assert database_offset() == timedelta(seconds=-600.2)
    machine = datetime.now(UTC)
    assert abs((utcnow() - machine).total_seconds() + 600.2) < 5
    assert abs((SYSTEM_CLOCK.now() - machine).total_seconds() + 600.2) < 5
    (warning,) = events(logs, "clock_skew")
    assert warning["offset_s"] == -600.0
    assert clock_watch.check(postgres).startswith("warning")  # type: ignore[arg-type]


def test_a_small_offset_is_not_applied_and_ends_the_warning(
    clock_watch: clocksync.ClockWatch,
) -> None:
    with structlog.testing.capture_logs() as logs:
        clock_watch.record(400.0)
        clock_watch.record(0.3)
    assert database_offset() == timedelta(0)
    assert [e["event"] for e in logs] == ["clock_skew", "clock_skew_resolved"]
    assert clock_watch.check(SimpleNamespace(is_sqlite=False)) == "ok"  # type: ignore[arg-type]
