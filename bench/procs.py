"""Processes the harness starts (Rex as a user runs it, the receiver), and their memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REX = str(Path(sys.executable).with_name("rex"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def _status_mib(pid: int, field_name: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mib(pid: int) -> float | None:
    """The most memory the process has held (VmHWM)."""
    return _status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float | None:
    """The memory the process holds now (VmRSS)."""
    return _status_mib(pid, "VmRSS")


def find_children(pid: int, expected: int, timeout: float = 60) -> dict[str, int]:
    """The child processes of ``pid`` (`rex serve`'s worker and API processes), by role,
    once ``expected`` of them are running."""
    deadline = time.monotonic() + timeout
    found: dict[str, int] = {}
    while expected and time.monotonic() < deadline:
        try:
            pids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            pids = []
        found = {}
        for child in pids:
            try:
                args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            role = "worker" if b"worker" in args[:4] else f"api{len(found) + 2}"
            found[role] = int(child)
        if len(found) >= expected:
            return found
        time.sleep(0.1)
    if expected:
        raise RuntimeError(f"rex serve started {len(found)} of {expected} child processes")
    return found


class Processes:
    """Everything the harness started, stopped (SIGTERM, then SIGKILL) by pid at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Setup:
    """A database, a receiver and Rex's processes for one benchmark."""

    backend: str
    postgres_url: str
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rex-bench-")))
    procs: Processes = field(default_factory=Processes)
    env: dict[str, str] = field(default_factory=dict)
    pg_name: str | None = None
    receiver_url: str = ""
    rex_url: str = ""
    key: str = ""
    rex: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    children: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
            "REX_CAPTURE_RATE_LIMIT": "off",
            "REX_CAPTURE_WORKSPACE_RATE_LIMIT": "off",
            "REX_LOG_LEVEL": "warning",
        }
        if self.backend == "sqlite":
            self.env["REX_DATABASE_URL"] = f"sqlite:///{self.work}/bench.db"
        else:
            self.pg_name, self.env["REX_DATABASE_URL"] = create_postgres_database(self.postgres_url)

    def start_receiver(self) -> None:
        port = free_port()
        receiver = self.procs.start(
            [sys.executable, "-m", "bench.receiver", str(port)], self.env, self.work / "recv.log"
        )
        wait_for_port(port, receiver)
        self.receiver_url = f"http://127.0.0.1:{port}"

    def create_key(self) -> None:
        # `rex keys create` never creates a database: migrate it first.
        subprocess.run([REX, "migrate"], env=self.env, check=True, capture_output=True)
        result = subprocess.run(
            [REX, "keys", "create", "--name", "bench"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = result.stdout.strip().splitlines()[-1]

    def start_rex(self, *, workers: int, worker_mode: str, api_processes: int = 1) -> None:
        """``rex serve --worker worker_mode --workers api_processes`` (its child processes
        found and watched too), then ``workers`` ``rex worker`` processes."""
        port = free_port()
        serve = [REX, "serve", "--port", str(port), "--worker", worker_mode]
        if api_processes > 1:
            serve += ["--workers", str(api_processes)]
        self.rex["serve"] = self.procs.start(serve, self.env, self.work / "serve.log")
        wait_for_port(port, self.rex["serve"])
        expected = (api_processes - 1) + (worker_mode == "process")
        self.children = find_children(self.rex["serve"].pid, expected)
        self.rex_url = f"http://127.0.0.1:{port}"
        for index in range(workers):
            self.rex[f"worker{index + 1}"] = self.procs.start(
                [REX, "worker"], self.env, self.work / f"worker{index + 1}.log"
            )

    def pids(self) -> dict[str, int]:
        """Every Rex process: those the harness started and the children of `rex serve`."""
        return {
            **{name: process.pid for name, process in self.rex.items()},
            **{f"serve.{name}": pid for name, pid in self.children.items()},
        }

    async def subscribe(
        self, count: int, *, max_concurrency: int | None = None, enabled: bool = True
    ) -> list[str]:
        """``count`` endpoints on the receiver, subscribed to ``contact.created`` (with
        Rex's default per-endpoint concurrency unless ``max_concurrency`` is given)."""
        ids = []
        async with aiohttp.ClientSession(headers={"X-Api-Key": self.key}) as session:
            for _ in range(count):
                body: dict[str, object] = {
                    "url": f"{self.receiver_url}/hook",
                    "events": ["contact.created"],
                }
                if max_concurrency is not None:
                    body["max_concurrency"] = max_concurrency
                async with session.post(f"{self.rex_url}/webhooks", json=body) as response:
                    assert response.status == 201, await response.text()
                    endpoint = (await response.json())["data"]
                ids.append(endpoint["id"])
                if not enabled:
                    url = f"{self.rex_url}/webhooks/{endpoint['id']}"
                    async with session.patch(url, json={"enabled": False}) as response:
                        assert response.status == 200, await response.text()
        return ids

    async def warm_up(self, workers: int, fanout: int, timeout: float = 60.0) -> int:
        """Wait until Rex is ready to deliver: every ``rex worker`` listening (PostgreSQL),
        then one capture delivered to every endpoint. Returns the receiver's count after it,
        which the measured run subtracts."""
        deadline = time.monotonic() + timeout
        if workers:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'LISTEN%'"
            )
            while time.monotonic() < deadline:
                listening = subprocess.run(
                    ["psql", self.env["REX_DATABASE_URL"], "-Atc", query],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                if int(listening or 0) >= workers:
                    break
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as session:
            body = {"email": f"warm-up-{uuid.uuid4().hex[:8]}@example.com"}
            async with session.post(f"{self.rex_url}/capture", json=body) as response:
                assert response.status == 201, await response.text()
            count = 0
            while time.monotonic() < deadline:
                async with session.get(f"{self.receiver_url}/count") as response:
                    count = (await response.json(content_type=None))["count"]
                if count >= fanout:
                    return int(count)
                await asyncio.sleep(0.05)
        raise RuntimeError("Rex did not deliver the warm-up capture in time")

    def describe(self, kind: str, **figures: Any) -> dict[str, Any]:
        """The head of a report: what ran, where."""
        return {
            "kind": kind,
            "backend": self.backend,
            **figures,
            "machine": os.uname().nodename,
            "cores": os.cpu_count(),
        }

    def peak_rss(self) -> dict[str, float]:
        """The most memory each Rex process has held, in MiB."""
        return {name: round(peak_rss_mib(pid) or 0, 1) for name, pid in self.pids().items()}

    def close(self) -> None:
        self.procs.stop_all()
        if self.pg_name:
            drop_postgres_database(self.postgres_url, self.pg_name)


def create_postgres_database(admin_url: str) -> tuple[str, str]:
    import sqlalchemy as sa

    name = f"rex_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", admin_url, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return name, sa.make_url(admin_url).set(database=name).render_as_string(False)


def drop_postgres_database(admin_url: str, name: str) -> None:
    subprocess.run(
        ["psql", admin_url, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=False
    )
