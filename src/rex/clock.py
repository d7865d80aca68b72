"""Where Rex reads the time for every decision about a duration.

The app (``create_app(clock=...)``) and the worker (``DeliveryWorker(clock=...)``) take a
``Clock``; each defaults to ``SystemClock``. What they decide with it: when a rotated
secret stops signing, when an idempotency key expires or goes stale, which events are old
enough to prune, how long an endpoint has been failing, and when a lease ends.

One clock for what several processes decide together: on PostgreSQL every process measures
how far its machine's clock is from the database's (``rex.db.clocksync``, at start and
every 30 s) and ``SystemClock`` (and ``rex.ids.utcnow``) add that offset when it is 1 s or
more. So a worker on a machine whose clock runs minutes fast still reads the database's
time for leases, due times and expiries: it neither steals a live lease nor sends early.
On SQLite the database's clock is the machine's: there is nothing to correct.

Tests pass a ``ShiftedClock`` to move Rex's idea of "now" forward without rewriting stored
timestamps: the time still flows (timeouts and sleeps are real), only shifted. A
``FixedClock`` stands still, for boundaries that must be hit to the second.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


_database_offset = timedelta(0)


def set_database_offset(offset: timedelta) -> None:
    """How far the database's clock is ahead of this machine's (``rex.db.clocksync``)."""
    global _database_offset
    _database_offset = offset


def database_offset() -> timedelta:
    return _database_offset


class SystemClock:
    """The machine's clock, corrected to the database's when they differ (see above)."""

    def now(self) -> datetime:
        return datetime.now(UTC) + _database_offset


class ShiftedClock:
    """The machine's clock plus an offset that can be changed at any time (from any thread):
    ``clock.advance(timedelta(hours=24))``."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta:
        with self._lock:
            return self._offset

    def set(self, offset: timedelta) -> None:
        with self._lock:
            self._offset = offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class FixedClock:
    """A clock that stands still at a moment until it is set to another (from any thread):
    for a test that must hit a boundary to the second however slow the machine is."""

    def __init__(self, moment: datetime) -> None:
        self._moment = moment
        self._lock = threading.Lock()

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._moment = moment

    def now(self) -> datetime:
        with self._lock:
            return self._moment


SYSTEM_CLOCK = SystemClock()
