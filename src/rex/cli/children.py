"""The processes ``rex serve`` starts beside its own: a delivery worker (``--worker process``)
and further API processes (``--workers N``, PostgreSQL).

Each child gets the read end of a pipe of its own, its *lifeline*, as a hidden
``--lifeline-fd``:

- the parent writes a byte to the worker's lifeline after every commit that queued
  deliveries, so a worker in another process wakes as fast as the embedded one did;
- when the parent is gone (stopped, crashed, killed with SIGKILL), the pipe's last write end
  closes and the child reads end-of-file: it stops as after SIGTERM. No orphan keeps serving
  or delivering behind a stopped ``rex serve``.

Children run in their own process group, so a Ctrl-C at the terminal reaches the parent
only; the parent sends each child one SIGTERM (and, on a second Ctrl-C, a second one: the
child then exits at once, as the parent does).

A child that exits by itself is restarted after 0.5 s, 1 s, 2 s... (at most 10 s). One that
fails ``MAX_CRASHES`` times within ``CRASH_WINDOW`` seconds is given up on: ``rex serve``
stops and exits with status 1, loudly, for its supervisor (systemd, Docker, Kubernetes) to
restart the whole. Nothing is lost either way: deliveries are rows, and a worker that dies
with leases leaves them to the next one (released at its start on SQLite, expired on
PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger("rex.serve")

MAX_CRASHES = 5
CRASH_WINDOW = 60.0
_MAX_BACKOFF = 10.0


def rex_command() -> list[str]:
    """How to start ``rex`` again: the installed script beside this interpreter, or
    ``python -m rex``."""
    script = Path(sys.executable).with_name("rex")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rex"]


@dataclass
class Child:
    """One child process of ``rex serve``, restarted when it exits by itself."""

    name: str
    args: list[str]
    wakes: bool = False  # the delivery worker: woken through its lifeline
    process: asyncio.subprocess.Process | None = None
    crashes: list[float] = field(default_factory=list)
    # The lifeline: the parent keeps the write end; the child inherits the read end.
    read_fd: int = -1
    write_fd: int = -1

    def open_lifeline(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)

    def close_lifeline(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Children:
    """Starts, watches, restarts and stops ``rex serve``'s children, on its event loop."""

    def __init__(
        self,
        children: list[Child],
        *,
        on_give_up: Callable[[str], None],
        max_crashes: int = MAX_CRASHES,
        crash_window: float = CRASH_WINDOW,
    ) -> None:
        self.children = children
        self.on_give_up = on_give_up
        self.max_crashes = max_crashes
        self.crash_window = crash_window
        self.stopping = False
        self.failed: str | None = None
        self._woken = [child for child in children if child.wakes]
        for child in children:
            child.open_lifeline()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self._terminated: set[int] = set()

    @property
    def has_worker(self) -> bool:
        return bool(self._woken)

    def wake(self) -> None:
        """After a commit that queued deliveries: wake the worker process. A full pipe means
        wake-ups are already pending, so the byte is not needed."""
        for child in self._woken:
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(child.write_fd, b"\0")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._watch(child)) for child in self.children]

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        args = [*rex_command(), *child.args, "--lifeline-fd", str(child.read_fd)]
        process = await asyncio.create_subprocess_exec(
            *args, pass_fds=(child.read_fd,), start_new_session=True
        )
        log.info("child_started", child=child.name, pid=process.pid)
        return process

    async def _watch(self, child: Child) -> None:
        backoff = 0.5
        while not self.stopping:
            started = time.monotonic()
            try:
                child.process = await self._spawn(child)
                code: int | str = await child.process.wait()
            except OSError as exc:  # could not even start it
                child.process, code = None, f"{type(exc).__name__}: {exc}"
            if self.stopping:
                return
            now = time.monotonic()
            child.crashes = [t for t in child.crashes if now - t < self.crash_window] + [now]
            if now - started > self.crash_window:
                backoff = 0.5  # it had been running a while: a fresh failure
            log.error(
                "child_exited",
                child=child.name,
                pid=child.process.pid if child.process else None,
                exit_code=code,
                crashes_in_window=len(child.crashes),
            )
            if len(child.crashes) >= self.max_crashes:
                self.failed = (
                    f"the {child.name} process exited {len(child.crashes)} times within "
                    f"{int(self.crash_window)} s (last exit code {code}); rex serve stops"
                )
                log.critical("child_failed", child=child.name, reason=self.failed)
                self.on_give_up(self.failed)
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            if not self.stopping:
                log.warning("child_restarting", child=child.name)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every child still running (and start no more)."""
        self.stopping = True
        for child in self.children:
            process = child.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)

    def terminate(self) -> None:
        """One SIGTERM to each child still running, never two (a second one makes a child
        exit at once, without finishing its attempts in flight)."""
        self.stopping = True
        for child in self.children:
            process = child.process
            if process is None or process.returncode is not None:
                continue
            if process.pid not in self._terminated:
                self._terminated.add(process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def stop(self, timeout: float) -> None:
        """SIGTERM every child, wait up to ``timeout`` seconds for them, then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        self.terminate()
        running = [
            child.process
            for child in self.children
            if child.process is not None and child.process.returncode is None
        ]
        if running:
            waits = [asyncio.create_task(process.wait()) for process in running]
            _, late = await asyncio.wait(waits, timeout=timeout)
            if late:
                self.signal(signal.SIGKILL)
                await asyncio.wait(late, timeout=10)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for child in self.children:
            child.close_lifeline()


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket with ``SO_REUSEPORT``: each API process of ``--workers N`` binds
    its own, and the kernel spreads new connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def follow_lifeline(
    fd: int, on_gone: Callable[[], None], on_wake: Callable[[], None] | None = None
) -> None:
    """In a child: call ``on_wake`` for each wake-up byte from the parent, and ``on_gone``
    once when the parent is gone (end of file on the lifeline)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(fd)
            log.warning("parent_gone", parent=os.getppid())
            on_gone()
            return
        if on_wake is not None:
            on_wake()

    loop.add_reader(fd, readable)
