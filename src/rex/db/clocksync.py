"""The database's clock as every process's clock, and a warning when the machine's is off.

Leases, due times (``next_attempt_at``), idempotency keys, listen sessions and API key
expiry are decided by several processes, possibly on several machines: each compares a time
stored by one process with "now" read by another. So every process reads "now" from one
clock, the database's: on PostgreSQL ``ClockWatch`` measures the offset between this
machine's clock and ``clock_timestamp()`` (the midpoint of a round trip, kept only when the
round trip is short), at start and then every ``INTERVAL`` seconds, and sets it in
``rex.clock``. An offset under ``APPLY_ABOVE`` is ignored (measurement noise).

Signatures carry that corrected time too. A machine clock more than the signature
tolerance (``SKEW_WARN``, 300 s) away from the database's is still worth a warning: it is
logged once when found (and once when it is back), and shown in ``/readyz`` (still
ready: Rex works on the database's time), since anything else on that machine that reads the
clock (TLS, logs, other software) is wrong too, and a receiver would refuse signatures made
with it. On SQLite the database's clock is the machine's: nothing is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from rex._signing import DEFAULT_TOLERANCE
from rex.clock import set_database_offset

if TYPE_CHECKING:
    from rex.db.engine import Database

log = structlog.get_logger("rex.clock")

INTERVAL = 30.0
"""Seconds between two measurements."""
APPLY_ABOVE = 1.0
"""An offset smaller than this (seconds) is not applied."""
SKEW_WARN = float(DEFAULT_TOLERANCE)
"""An offset larger than this (seconds) is warned about: receivers refuse signatures made
with a clock that far off."""
_MAX_ROUND_TRIP = 1.0


class ClockWatch:
    """This process's offset to the database's clock (seconds; positive: the database's is
    ahead), when it was measured, and whether it is past ``SKEW_WARN``."""

    def __init__(self) -> None:
        self.offset: float | None = None
        self.measured_at = 0.0  # time.monotonic()
        self.skewed = False

    def due(self) -> bool:
        return self.offset is None or time.monotonic() - self.measured_at >= INTERVAL

    async def measure(self, conn: AsyncConnection) -> float | None:
        """Measure on ``conn`` (PostgreSQL); the offset, or None if the round trip was too
        slow to tell."""
        before = time.time()
        database_now = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        after = time.time()
        if after - before > _MAX_ROUND_TRIP:
            return None
        local = datetime.fromtimestamp((before + after) / 2, UTC)
        offset: float = (database_now - local).total_seconds()
        self.record(offset)
        return offset

    def record(self, offset: float) -> None:
        self.offset, self.measured_at = offset, time.monotonic()
        applied = offset if abs(offset) >= APPLY_ABOVE else 0.0
        set_database_offset(timedelta(seconds=applied))
        skewed = abs(offset) > SKEW_WARN
        if skewed and not self.skewed:
            log.warning(
                "clock_skew",
                offset_s=round(offset, 1),
                tolerance_s=SKEW_WARN,
                note=(
                    "this machine's clock differs from the database's by more than the "
                    "signature tolerance; Rex uses the database's time, but fix the "
                    "machine's clock (NTP)"
                ),
            )
        elif self.skewed and not skewed:
            log.warning("clock_skew_resolved", offset_s=round(offset, 1))
        self.skewed = skewed

    def check(self, db: Database) -> str:
        """``/readyz``'s ``clock`` check: ``ok`` or a warning (which leaves Rex ready)."""
        if db.is_sqlite:
            return "ok"
        if self.skewed and self.offset is not None:
            return (
                f"warning: this machine's clock is {abs(self.offset):.0f}s "
                f"{'behind' if self.offset > 0 else 'ahead of'} the database's (more than "
                f"the {SKEW_WARN:.0f}s signature tolerance); Rex uses the database's time"
            )
        return "ok"

    async def ensure(self, db: Database) -> None:
        """Measure now if due (PostgreSQL); a failure is left for the next call."""
        if db.is_sqlite or not self.due():
            return
        with contextlib.suppress(Exception):
            async with db.read() as conn:
                await self.measure(conn)

    async def run(self, db: Database, stop: asyncio.Event) -> None:
        """Measure every ``INTERVAL`` seconds until ``stop`` (PostgreSQL; on SQLite nothing)."""
        if db.is_sqlite:
            return
        while not stop.is_set():
            await self.ensure(db)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0 if self.offset is None else INTERVAL)


CLOCK = ClockWatch()
