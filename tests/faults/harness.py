"""What the fault and load scenarios share: Rex started as real processes, a private
PostgreSQL cluster that a test may stop and start, a bounded capture load, and the checks
that an acknowledged lead is stored and delivered.

Every loop here is bounded in count and in time, and every process is stopped by its pid.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.receiver import ReceivedRequest
from tests.support import free_port, missing, rex_process, sql, wait_for_http, wait_until

ACKNOWLEDGED = (200, 201)


# -- Rex as processes --------------------------------------------------------------------


@dataclass
class RexProcess:
    """One ``rex serve`` or ``rex worker`` process, restartable with the same arguments."""

    args: list[str]
    env: dict[str, str]
    log: Path
    url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    prefix: list[str] = field(default_factory=list)  # e.g. faketime -f +10m

    def start(self) -> RexProcess:
        self.starts += 1
        with self.log.open("a") as out:
            out.write(f"\n--- start {self.starts} ---\n")
        self.process = rex_process(self.args, self.env, self.log, self.prefix)
        if self.url is not None:
            wait_for_http(f"{self.url}/healthz", self.process, self.log)
        else:
            starts = self.starts
            wait_until(lambda: self.log.read_text().count("worker_started") >= starts, timeout=30)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, whatever was in flight is cut off."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); the exit code, or None if never started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise

    def rss_kib(self) -> int:
        """Resident memory of the process now (KiB), from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def rex_serve(env: dict[str, str], log: Path, *extra: str) -> RexProcess:
    port = free_port()
    return RexProcess(
        ["serve", "--port", str(port), *extra], env, log, url=f"http://127.0.0.1:{port}"
    )


def rex_worker(
    env: dict[str, str],
    log: Path,
    concurrency: int = 16,
    *extra: str,
    prefix: list[str] | None = None,
) -> RexProcess:
    return RexProcess(
        ["worker", "--concurrency", str(concurrency), *extra], env, log, prefix=prefix or []
    )


@contextlib.contextmanager
def running(*processes: RexProcess) -> Iterator[None]:
    """Start the processes in order; stop whichever are still alive afterwards."""
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.stop()


def fast_env(database_url: str, **extra: str) -> dict[str, str]:
    """Settings for a compressed run: fast retries and polling, no capture limit."""
    return {
        "REX_DATABASE_URL": database_url,
        "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
        "REX_RETRY_SCHEDULE": ",".join(["0.2"] * 3 + ["0.5"] * 12),
        "REX_RETRY_JITTER": "0",
        "REX_DELIVERY_POLL_INTERVAL": "0.2",
        "REX_DELIVERY_TIMEOUT": "2",
        "REX_DELIVERY_LEASE": "3",
        "REX_CAPTURE_RATE_LIMIT": "off",
        "REX_LOG_LEVEL": "info",
        **extra,
    }


def subscribe(url: str, key: str, target: str, **body: Any) -> str:
    response = httpx.post(
        f"{url}/webhooks",
        headers={"X-Api-Key": key},
        json={"url": target, "events": ["contact.created"], **body},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["data"]["id"])


# -- faults that need root: a small disk, a dropped network path, a clock --------------------


def require_root_tools(*tools: str) -> None:
    """Skip (fail under REX_TEST_REQUIRE_ALL=1, as in CI, which runs as root) unless this is
    root and every tool is installed."""
    if os.geteuid() != 0:
        missing(f"needs root for {', '.join(tools)} (CI runs as root)")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    if absent:
        missing(f"{', '.join(absent)} not installed (Debian packages; .ci/run installs them)")


@contextlib.contextmanager
def small_disk(size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB mounted on a fresh directory; always unmounted after."""
    mountpoint = Path(tempfile.mkdtemp(prefix="rex-tmpfs-"))
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(mountpoint)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield mountpoint
    finally:
        result = subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30)
        if result.returncode != 0:  # still open somewhere: detach it now, freed when closed
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def fill_disk(path: Path) -> Path:
    """Write ``path`` until its filesystem is full (ENOSPC); returns the file to delete."""
    with path.open("wb", buffering=0) as out:
        for size in (1024 * 1024, 4096, 1):  # then the last few bytes
            for _ in range(100_000):  # bounded
                try:
                    out.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != 28:
                        raise
                    break
    return path


class Partition:
    """A silent network partition between Rex and a TCP port on loopback: iptables DROPs
    every packet to or from ``port`` on ``lo`` (no RST, no FIN), in INPUT and OUTPUT. The
    rules carry a comment unique to this test process and are the only ones touched;
    ``heal`` (always called on exit) deletes exactly them."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.comment = f"rex-test-{os.getpid()}"
        self._rules: list[list[str]] = []
        for chain, interface in (("INPUT", "-i"), ("OUTPUT", "-o")):
            for direction in ("--dport", "--sport"):
                self._rules.append(
                    [chain, interface, "lo", "-p", "tcp", direction, str(port),
                     "-m", "comment", "--comment", self.comment, "-j", "DROP"]
                )  # fmt: skip
        self._inserted: list[list[str]] = []

    def cut(self) -> None:
        for rule in self._rules:
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True, timeout=30)
            self._inserted.append(rule)

    def heal(self) -> None:
        while self._inserted:
            rule = self._inserted.pop()
            subprocess.run(["iptables", "-D", *rule], check=True, capture_output=True, timeout=30)

    def __enter__(self) -> Partition:
        return self

    def __exit__(self, *_: object) -> None:
        self.heal()


# -- a private PostgreSQL cluster ----------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A throwaway cluster in a temporary directory, on its own port, trust auth, run as
    the ``postgres`` user (PostgreSQL refuses root). The test may stop it (an immediate
    shutdown, as a crash would) and start it again; ``cleanup`` removes everything."""

    def __init__(self) -> None:
        bindir = _postgres_bin()
        assert bindir is not None
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="rex-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    @staticmethod
    def available() -> bool:
        if _postgres_bin() is None:
            return False
        if os.geteuid() == 0:
            return shutil.which("runuser") is not None
        return True

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c max_connections=100"
        )
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l",
                  str(self.logfile), "-o", options)  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend is killed, no checkpoint; recovery replays the WAL."""
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data))

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# -- a bounded capture load ----------------------------------------------------------------


@dataclass
class Outcome:
    email: str
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    error: str | None = None
    retry_after: str | None = None
    body: Any = None
    at: float = 0.0  # time.monotonic() when the request was sent
    done: float = 0.0  # ... and when its answer (or error) came


@dataclass
class CaptureLoad:
    """``clients`` threads POST /capture with ``total`` fresh emails (or fewer if
    ``max_seconds`` pass first). A capture answered 503 is retried after its
    ``Retry-After`` (as a well-behaved client would), up to ``retries`` times; a capture
    without an answer is abandoned (it may or may not have been committed)."""

    url: str
    total: int
    clients: int = 4
    max_seconds: float = 90.0
    retries: int = 15
    prefix: str = "lead"
    timeout: float = 30.0
    rate: float | None = None  # leads started per second (None: as fast as answered)
    headers: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _finish: threading.Event = field(default_factory=threading.Event)

    def start(self) -> CaptureLoad:
        self._started = time.monotonic()
        self._deadline = self._started + self.max_seconds
        for n in range(self.clients):
            thread = threading.Thread(target=self._client, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def finish(self) -> None:
        """Take no new email, but let the clients finish (and retry) the ones they hold."""
        self._finish.set()
        self.join()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(self.max_seconds + self.timeout + 5)
        assert not any(t.is_alive() for t in self._threads), "a load client did not stop"

    def _take(self) -> str | None:
        with self._lock:
            if self._stop.is_set() or self._finish.is_set():
                return None
            if time.monotonic() > self._deadline:
                return None
            if self._next >= self.total:
                return None
            self._next += 1
            n = self._next
        if self.rate is not None:  # paced: lead n starts (n - 1) / rate after the start
            time.sleep(max(0.0, self._started + (n - 1) / self.rate - time.monotonic()))
        return f"{self.prefix}{n}@example.com"

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _client(self) -> None:
        with httpx.Client(timeout=self.timeout, headers=self.headers) as client:
            while (email := self._take()) is not None:
                for _ in range(self.retries + 1):
                    outcome = self._post(client, email)
                    self._record(outcome)
                    if outcome.status is None:
                        time.sleep(0.2)  # the server is down: do not spin through emails
                    if outcome.status != 503 or self._stop.is_set():
                        break
                    delay = min(float(outcome.retry_after or 1), 5.0)
                    if time.monotonic() + delay > self._deadline:
                        break
                    time.sleep(delay)

    def _post(self, client: httpx.Client, email: str) -> Outcome:
        at = time.monotonic()
        try:
            response = client.post(f"{self.url}/capture", json={"email": email})
        except httpx.HTTPError as exc:
            return Outcome(email, None, error=type(exc).__name__, at=at, done=time.monotonic())
        try:
            body = response.json()
        except ValueError:
            body = response.text[:200]
        return Outcome(
            email,
            response.status_code,
            retry_after=response.headers.get("Retry-After"),
            body=body,
            at=at,
            done=time.monotonic(),
        )

    # -- results

    def acknowledged(self) -> set[str]:
        return {o.email for o in self.outcomes if o.status in ACKNOWLEDGED}

    def statuses(self) -> collections.Counter[int | str]:
        return collections.Counter(o.status or f"no answer ({o.error})" for o in self.outcomes)

    def attempted(self) -> set[str]:
        return {o.email for o in self.outcomes}


def assert_clean_errors(load: CaptureLoad, allowed: set[int]) -> None:
    """Every answer is an acknowledgement or one of ``allowed``; a 503/429 carries
    ``Retry-After`` and the error envelope; never a 500."""
    unexpected = [
        o
        for o in load.outcomes
        if o.status is not None and o.status not in {*ACKNOWLEDGED, *allowed}
    ]
    assert not unexpected, f"unexpected answers {load.statuses()}: {unexpected[:3]}"
    for o in load.outcomes:
        if o.status in (429, 503):
            assert o.retry_after is not None and int(o.retry_after) >= 1, o
            assert isinstance(o.body, dict) and set(o.body["error"]) >= {"type", "message"}, o


def stored_emails(database_url: str) -> collections.Counter[str]:
    return collections.Counter(row.email for row in sql(database_url, "SELECT email FROM contacts"))


def delivered_emails(requests: list[ReceivedRequest]) -> collections.Counter[str]:
    """How many times each contact's ``contact.created`` reached the receiver."""
    return collections.Counter(r.json()["data"]["email"] for r in requests)


def delivery_counts(database_url: str) -> dict[str, int]:
    rows = sql(database_url, "SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    return {row.status: int(row.n) for row in rows}


def wait_all_delivered(database_url: str, timeout: float) -> dict[str, int]:
    """Until every delivery row is delivered (and there is at least one)."""

    def done() -> dict[str, int] | None:
        counts = delivery_counts(database_url)
        return counts if counts and set(counts) == {"delivered"} else None

    return wait_until(done, timeout=timeout, interval=0.25)  # type: ignore[no-any-return]


def assert_lead_promise(
    database_url: str, load: CaptureLoad, requests: list[ReceivedRequest]
) -> dict[str, int]:
    """An acknowledged lead is stored once and its subscriber heard about it; every stored
    contact has its event delivered. Returns the figures for the report."""
    acknowledged = load.acknowledged()
    every_contact = stored_emails(database_url)
    assert not [e for e, n in every_contact.items() if n > 1], "duplicate contacts"
    events = int(sql(database_url, "SELECT count(*) AS n FROM events")[0].n)
    assert events == len(every_contact), (events, len(every_contact))
    received = delivered_emails(requests)
    undelivered = set(every_contact) - set(received)
    assert not undelivered, f"{len(undelivered)} stored contacts never delivered"
    # The figures: this load's leads (a test may add a contact or two of its own).
    stored = {e: n for e, n in every_contact.items() if e.startswith(load.prefix)}
    received = collections.Counter({e: n for e, n in received.items() if e in stored})
    missing = acknowledged - set(stored)
    assert not missing, (
        f"{len(missing)} acknowledged captures are not stored: {sorted(missing)[:5]}"
    )
    return {
        "sent": len(load.attempted()),
        "acknowledged": len(acknowledged),
        "stored": len(stored),
        # Stored without an acknowledgement: cut off after the commit, before the answer.
        "stored_unacknowledged": len(set(stored) - acknowledged),
        # Answered 503, yet committed: the retry found the contact (200, not 201). A COMMIT
        # cut off by the outage has an unknown outcome; the 503 message says so.
        "committed_behind_503": len(
            {o.email for o in load.outcomes if o.status == 503}
            & {o.email for o in load.outcomes if o.status == 200}
        ),
        "delivered": len(received),
        "duplicates": sum(n - 1 for n in received.values()),
    }


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a process's log (REX_LOG_JSON=1), parsed."""
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def report(title: str, **figures: Any) -> None:
    """Print one scenario's figures (visible with ``pytest -s``; docs/reliability.md)."""
    print(f"\n[{title}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))
