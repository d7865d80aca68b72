"""Group commit for SQLite: the write transactions of one process, committed together.

SQLite has one writer at a time and every commit waits for the disk (``synchronous=FULL``).
Committing each request on its own spends most of its time in that wait while the other
requests queue behind the write lock. Here the requests that queue up while one transaction
runs share the next one instead:

- a ``Committer`` task owns the write connection and opens a transaction (``BEGIN
  IMMEDIATE``) when the first unit of work arrives;
- it runs each waiting unit in turn inside a ``SAVEPOINT``, so a unit that fails (a 4xx, a
  constraint) rolls back only its own work;
- when no unit is left waiting (or ``max_batch`` have run), it commits once and only then
  tells every unit of the batch that its work is durable.

Two kinds of unit: ``run(work)`` hands the committer a function, which it calls on its own
task (the fast path: no hand-over between tasks per unit); ``unit()`` lends the connection
to the caller's ``async with`` block, which suits code that is not a single function.

What a caller sees does not change: it gets its answer once its work is committed, or an
exception, in which case none of it is. A failed commit fails every unit of its batch (none
of them has answered its client yet), so a 2xx still means committed. A lone request commits
at once: batching only happens under load, when those requests would have waited for the
lock anyway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine.interfaces import PoolProxiedConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rex.db.outage import database_unavailable, storage_full

log = structlog.get_logger("rex.db")

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(eq=False)
class _Unit:
    """One unit of work: either ``work`` to call, or a caller's block to lend the
    connection to (``granted``, then ``finished``: True to keep its work)."""

    committed: asyncio.Future[Any]  # the work's result, set once its batch has committed
    urgent: bool = False
    work: Work | None = None
    granted: asyncio.Future[AsyncConnection] | None = None
    finished: asyncio.Future[bool] | None = None
    savepoint: _Savepoint | None = None  # a lent block's, handed over with the connection
    result: Any = None

    def abandoned(self) -> bool:
        if self.granted is not None:
            return self.granted.cancelled()
        return self.committed.cancelled()

    def refuse(self, exc: BaseException) -> None:
        """Tell the unit its work will not run (the transaction could not start)."""
        _fail_future(self.granted if self.granted is not None else self.committed, exc)


class Committer:
    """Runs the units of work of one process's writers in shared transactions."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        after_commit: Callable[[AsyncConnection, bool], None],
        max_batch: int = 32,
    ) -> None:
        self._engine = engine
        self._after_commit = after_commit
        # A batch is committed only once its last unit is done, so its size bounds how long
        # its first unit waits for the commit (and a delivery worker for its next claim).
        self._max_batch = max_batch
        self._queue: collections.deque[_Unit] = collections.deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0

    async def run(self, work: Callable[[AsyncConnection], Awaitable[T]], *, urgent: bool) -> T:
        """Call ``work(conn)`` inside a shared transaction; return its result once committed.

        ``work`` runs on the committer's task, in a savepoint: if it raises, only its own
        changes are undone and the exception is raised here at once.
        """
        loop = asyncio.get_running_loop()
        unit = _Unit(committed=loop.create_future(), urgent=urgent, work=work)
        self._enqueue(loop, unit)
        # Shielded: a caller that goes away does not undo work that is already in a batch.
        result: T = await asyncio.shield(unit.committed)
        return result

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[AsyncConnection]:
        """A block of the caller's inside a shared transaction; exits once committed."""
        loop = asyncio.get_running_loop()
        unit = _Unit(
            committed=loop.create_future(),
            granted=loop.create_future(),
            finished=loop.create_future(),
        )
        assert unit.granted is not None and unit.finished is not None
        self._enqueue(loop, unit)
        try:
            conn = await unit.granted
        except asyncio.CancelledError:
            # Cancelled while waiting for its turn: give the turn back untouched.
            if unit.granted.done() and not unit.granted.cancelled():
                unit.finished.set_result(False)
            else:
                unit.granted.cancel()
            raise
        savepoint = unit.savepoint
        assert savepoint is not None
        try:
            savepoint.open()
        except BaseException as exc:
            _fail_future(unit.finished, _as_error(exc))
            raise
        try:
            yield conn
        except BaseException:
            try:
                savepoint.rollback()
            except BaseException as exc:  # the connection broke: the whole batch is lost
                _fail_future(unit.finished, _as_error(exc))
            else:
                unit.finished.set_result(False)
            raise
        try:
            savepoint.release()
        except BaseException as exc:
            _fail_future(unit.finished, _as_error(exc))
            raise
        unit.finished.set_result(True)
        await asyncio.shield(unit.committed)

    def _enqueue(self, loop: asyncio.AbstractEventLoop, unit: _Unit) -> None:
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._queue = collections.deque()
            self._arrived = asyncio.Event()
            self._idle = asyncio.Event()
            self._task = loop.create_task(self._serve(), name="rex-group-commit")
        if unit.urgent:
            self._queue.appendleft(unit)
        else:
            self._queue.append(unit)
        self._idle.clear()
        self._arrived.set()

    async def close(self, *, timeout: float = 30.0) -> None:
        """Stop once the work already queued is committed (so none of it is reported failed
        while its commit is on its way to the disk), waiting at most ``timeout``."""
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._idle.wait()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        for unit in self._queue:
            unit.refuse(ConnectionError("the database is closed"))
        self._queue.clear()

    async def _serve(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                self._idle.set()
                await self._arrived.wait()
                continue
            first = self._queue.popleft()
            if first.abandoned():
                continue
            try:
                await self._batch(first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every unit has been told; keep serving the next ones
                if storage_full(exc):
                    continue  # each refused unit is counted, and logged once (rex.db.outage)
                if database_unavailable(exc):
                    # Locked past the busy timeout, an I/O error: no traceback per batch.
                    log.warning("group_commit_failed", error=str(exc).splitlines()[0][:200])
                    continue
                log.exception("group_commit_failed")

    async def _batch(self, first: _Unit) -> None:
        try:
            conn = await self._engine.connect()
        except Exception as exc:
            first.refuse(exc)
            raise
        kept: list[_Unit] = []
        current: _Unit | None = first
        try:
            try:
                conn = await conn.execution_options(rex_immediate=True)
                await conn.begin()
                # One per batch: the statements go straight to sqlite3 (see _Savepoint).
                savepoint = _Savepoint(await conn.get_raw_connection())
            except Exception as exc:
                first.refuse(exc)
                raise
            taken = 0
            while current is not None:
                if not current.abandoned():
                    taken += 1
                    if await self._run_unit(conn, current, savepoint):
                        kept.append(current)
                # An urgent unit is committed at once, and one waiting cuts the batch short
                # so that it starts the next one: it waits for at most one batch.
                urgent = current.urgent
                current = None
                if (
                    taken < self._max_batch
                    and self._queue
                    and not urgent
                    and not self._queue[0].urgent
                ):
                    current = self._queue.popleft()
            await conn.commit()
            self._after_commit(conn, True)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else ConnectionError("database closing")
            if current is not None and current not in kept:
                current.refuse(failure)
                _fail_future(current.committed, failure)
            await self._fail(conn, kept, failure)
            raise
        finally:
            await asyncio.shield(conn.close())
        self.batches += 1
        self.units += taken
        for unit in kept:
            if not unit.committed.done():
                unit.committed.set_result(unit.result)

    async def _run_unit(self, conn: AsyncConnection, unit: _Unit, savepoint: _Savepoint) -> bool:
        """Run one unit in a savepoint; True if its work is kept. Raises only when the
        transaction itself is no longer usable."""
        if unit.work is None:
            assert unit.granted is not None and unit.finished is not None
            unit.savepoint = savepoint
            unit.granted.set_result(conn)
            return await unit.finished
        savepoint.open()
        try:
            unit.result = await unit.work(conn)
        except Exception as exc:
            savepoint.rollback()
            _fail_future(unit.committed, exc)  # nothing of it will be committed: answer now
            return False
        savepoint.release()
        return True

    async def _fail(self, conn: AsyncConnection, kept: list[_Unit], exc: Exception) -> None:
        with contextlib.suppress(Exception):
            await conn.rollback()
        self._after_commit(conn, False)
        for unit in kept:
            _fail_future(unit.committed, exc)


class _Savepoint:
    """The savepoint around each unit of a batch. Issued straight on the ``sqlite3``
    connection: units run one after another, so one constant name will do, and SQLAlchemy's
    ``begin_nested`` names each savepoint anew, which made it compile three statements per
    unit (about 5% of the server's time in a capture load's profile). A unit may still nest
    its own."""

    _NAME = "rex_unit"

    def __init__(self, raw: PoolProxiedConnection) -> None:
        self._execute = raw.driver_connection.execute_inline  # type: ignore[union-attr]

    def open(self) -> None:
        self._execute(f"SAVEPOINT {self._NAME}")

    def release(self) -> None:
        self._execute(f"RELEASE SAVEPOINT {self._NAME}")

    def rollback(self) -> None:
        # ROLLBACK TO keeps the savepoint open; RELEASE then drops it (its work undone).
        self._execute(f"ROLLBACK TO SAVEPOINT {self._NAME}")
        self._execute(f"RELEASE SAVEPOINT {self._NAME}")


def _fail_future(future: asyncio.Future[Any], exc: BaseException) -> None:
    """Settle ``future`` with ``exc``, without a "never retrieved" warning when its caller
    has already gone (a cancelled request, a block that raised its own error)."""
    if not future.done():
        future.set_exception(exc)
        future.exception()  # marks it retrieved; an awaiting caller still gets ``exc``


def _as_error(exc: BaseException) -> Exception:
    """What the committer is told when a lent block ends abnormally: a cancellation of the
    caller's task must not look like a cancellation of the committer's."""
    if isinstance(exc, Exception):
        return exc
    return RuntimeError(f"a unit of work was interrupted ({type(exc).__name__})")
