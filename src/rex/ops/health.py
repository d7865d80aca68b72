"""Liveness, readiness and worker heartbeats.

- ``/healthz`` (liveness) answers as long as the process serves HTTP: it touches nothing.
- ``/readyz`` (readiness) checks that the database answers, that its schema is at the
  newest migration this version of Rex knows, that its disk takes writes (``storage``: not
  after a write was refused for a full disk, until one succeeds again), and, in a process
  that runs a delivery worker, that the worker's heartbeat in the database is fresh. Its
  ``clock`` check is informational: a warning when this machine's clock is more than the
  signature tolerance away from the database's, while Rex stays ready (rex.db.clocksync).

Every delivery worker (embedded in ``rex serve`` or ``rex worker``) upserts a row of
``worker_heartbeats`` every ``HEARTBEAT_INTERVAL`` seconds and marks it stopped when it
exits; ``rex status`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.clocksync import CLOCK
from rex.db.engine import MIGRATIONS, Database
from rex.db.outage import STORAGE
from rex.db.schema import worker_heartbeats
from rex.errors import StorageFull
from rex.ids import utcnow
from rex.json_types import JsonObject

log = structlog.get_logger("rex.health")

HEARTBEAT_INTERVAL = 5.0
"""Seconds between two heartbeats of a worker."""
HEARTBEAT_STALE = 30.0
"""A heartbeat older than this is stale: the worker is stuck or gone."""
FORGET_STOPPED_AFTER = timedelta(days=7)


@functools.cache
def head_revision() -> str | None:
    """The newest migration this version of Rex ships."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


async def current_revision(conn: AsyncConnection) -> str | None:
    try:
        result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    except sa.exc.DBAPIError:
        return None
    return result.scalar()


class Heartbeat:
    """Records that ``worker_id`` is alive, every ``interval`` seconds until stopped."""

    def __init__(
        self, db: Database, worker_id: str, *, kind: str, interval: float = HEARTBEAT_INTERVAL
    ) -> None:
        self.db = db
        self.worker_id = worker_id
        self.kind = kind
        self.interval = interval
        self.started_at = utcnow()
        self.last_recorded: datetime | None = None

    async def beat(self, *, stopped: bool = False) -> None:
        now = utcnow()
        values: dict[str, Any] = {"last_seen_at": now, "stopped_at": now if stopped else None}
        async with self.db.transaction() as conn:
            updated = await conn.execute(
                sa.update(worker_heartbeats)
                .where(worker_heartbeats.c.worker_id == self.worker_id)
                .values(**values)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    sa.insert(worker_heartbeats).values(
                        worker_id=self.worker_id,
                        hostname=socket.gethostname()[:255],
                        pid=os.getpid(),
                        kind=self.kind,
                        started_at=self.started_at,
                        **values,
                    )
                )
                await conn.execute(
                    sa.delete(worker_heartbeats).where(
                        worker_heartbeats.c.stopped_at < now - FORGET_STOPPED_AFTER
                    )
                )
        self.last_recorded = now

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.beat()
            except StorageFull:  # logged once by rex.db.outage, not every interval
                pass
            except Exception as exc:  # the database is down: /readyz says so
                log.warning("heartbeat_failed", worker=self.worker_id, error=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        try:
            await self.beat(stopped=True)
        except Exception as exc:
            log.warning("heartbeat_failed", worker=self.worker_id, error=str(exc)[:200])


@dataclass
class Readiness:
    ready: bool
    checks: JsonObject = field(default_factory=dict)  # the JSON /readyz answers


async def readiness(db: Database | None, worker_id: str | None) -> Readiness:
    """The checks of ``/readyz``; ``worker_id``: this process's delivery worker, if any."""
    checks: JsonObject = {}
    if db is None:
        return Readiness(False, {"database": "not started"})
    try:
        async with db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
            checks["database"] = "ok"
            current, head = await current_revision(conn), head_revision()
            checks["migrations"] = (
                "ok" if current == head else f"schema at {current}, this Rex needs {head}"
            )
            if worker_id is not None:
                seen = (
                    await conn.execute(
                        sa.select(worker_heartbeats.c.last_seen_at).where(
                            worker_heartbeats.c.worker_id == worker_id
                        )
                    )
                ).scalar()
                if seen is None:
                    checks["worker"] = "no heartbeat yet"
                else:
                    age = (utcnow() - seen).total_seconds()
                    checks["worker"] = (
                        "ok" if age <= HEARTBEAT_STALE else f"heartbeat {age:.0f}s old"
                    )
    except Exception as exc:
        checks.setdefault("database", f"unavailable: {type(exc).__name__}")
    # Shown only when they have something to say (a healthy body keeps its three checks).
    # The disk: a process whose writes are refused for a full disk is not ready.
    if STORAGE.full:
        checks["storage"] = storage_check()
    # Informational: a machine clock far from the database's is warned about, but Rex
    # decides on the database's time, so it stays ready (rex.db.clocksync).
    if (clock := CLOCK.check(db)) != "ok":
        checks["clock"] = clock
    ready = all(v == "ok" for name, v in checks.items() if name not in _INFORMATIONAL)
    return Readiness(ready, checks)


_INFORMATIONAL = frozenset({"clock"})


def storage_check() -> str:
    if not STORAGE.full or STORAGE.full_since is None:
        return "ok"
    return (
        f"full since {STORAGE.full_since.isoformat(timespec='seconds')}: "
        f"{STORAGE.refused_now} writes refused; free space on the database's disk"
    )


@dataclass(frozen=True)
class WorkerStatus:
    worker_id: str
    hostname: str
    pid: int
    kind: str
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.stopped_at is not None:
            return "stopped"
        age = (now - self.last_seen_at).total_seconds()
        return "running" if age <= HEARTBEAT_STALE else "stale"


async def list_workers(conn: AsyncConnection) -> list[WorkerStatus]:
    rows = await conn.execute(
        sa.select(worker_heartbeats).order_by(worker_heartbeats.c.last_seen_at.desc())
    )
    return [WorkerStatus(**row._mapping) for row in rows]
