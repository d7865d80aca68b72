"""Clean stops: a worker frees the leases it still holds, and a second signal exits at once."""

from __future__ import annotations

import os
import signal
import sys

import structlog

from rex.db.engine import Database
from rex.outbox import queue

log = structlog.get_logger("rex.lifecycle")


async def release_leases(db: Database, worker_id: str) -> int:
    """Free the leases ``worker_id`` still holds (attempts that did not finish in time), so
    that another worker sends them now rather than after the lease expires."""
    try:
        async with db.transaction() as conn:
            released = await queue.release_worker_leases(conn, worker_id)
    except Exception as exc:  # the leases expire by themselves
        log.warning("release_leases_failed", worker=worker_id, error=str(exc)[:200])
        return 0
    if released:
        log.warning("leases_released", worker=worker_id, deliveries=released)
    return int(released)


def exit_now(signum: int) -> None:
    """The second SIGTERM or SIGINT: exit at once, without waiting for anything."""
    sys.stderr.flush()
    os._exit(128 + signum)


def second_signal_exits(signum: int) -> None:
    """Call when the first signal arrived: the next SIGTERM/SIGINT exits at once."""
    log.info("shutting_down", signal=signal.Signals(signum).name)
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, lambda s, _f: exit_now(s))
