"""The real ``rex`` command in tests: one-shot client commands and a long-running
``rex listen`` or ``rex serve`` whose output is read line by line as it comes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support import free_port, stop_process, wait_until

REX = str(Path(sys.executable).with_name("rex"))

# Fast retries and polling for `rex serve` subprocesses (as tests.support.FAST does in-thread).
FAST_ENV = {
    "REX_RETRY_SCHEDULE": "0.2,0.2,0.2",
    "REX_RETRY_JITTER": "0",
    "REX_DELIVERY_POLL_INTERVAL": "0.2",
    "REX_DELIVERY_TIMEOUT": "30",  # as in tests.support.FAST: never reached on 127.0.0.1
    "REX_DELIVERY_LEASE": "60",  # longer than the timeout, or an attempt in flight is sent twice
    "REX_ALLOW_PRIVATE_DESTINATIONS": "1",
}

SECRET_LINE = re.compile(r"Your webhook signing secret is (?:now )?(whsec_\S+)")


def client_env(url: str, key: str, **extra: str) -> dict[str, str]:
    """The environment a user has after `export REX_URL=... REX_API_KEY=...`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    return {**env, "REX_URL": url, "REX_API_KEY": key, **extra}


def run_rex(
    *args: str, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REX, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def run_json(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> Any:
    result = run_rex(*args, "--json", env=env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A CLI failure: non-zero exit, one line on stderr, no traceback, nothing on stdout."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rex: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""


class RexProcess:
    """A long-running ``rex`` subprocess; its stdout and stderr lines are collected."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path | None = None):
        self.args = args
        self.process = subprocess.Popen(
            [REX, *args],
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(
                target=self._read, args=(self.process.stdout, self.stdout), daemon=True
            ),
            threading.Thread(
                target=self._read, args=(self.process.stderr, self.stderr), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            with self._lock:
                into.append(line.rstrip("\n"))

    def lines(self, stream: str = "stdout") -> list[str]:
        with self._lock:
            return list(self.stdout if stream == "stdout" else self.stderr)

    def output(self) -> str:
        return (
            "stdout:\n" + "\n".join(self.lines()) + "\nstderr:\n" + "\n".join(self.lines("stderr"))
        )

    def wait_for_line(
        self, pattern: str, *, stream: str = "stdout", count: int = 1, timeout: float = 30
    ) -> list[re.Match[str]]:
        """The first ``count`` lines matching ``pattern`` (waiting for them)."""
        regex = re.compile(pattern)

        def found() -> list[re.Match[str]] | None:
            matches = [m for m in (regex.search(line) for line in self.lines(stream)) if m]
            if len(matches) >= count:
                return matches[:count]
            if self.process.poll() is not None:
                raise AssertionError(
                    f"rex {' '.join(self.args)} exited with {self.process.returncode} before "
                    f"printing {pattern!r}:\n{self.output()}"
                )
            return None

        try:
            return wait_until(found, timeout=timeout, interval=0.05)  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code


class Listen(RexProcess):
    """``rex listen --forward-to URL`` once it is ready."""

    @property
    def secret(self) -> str:
        return self.secrets()[-1]

    def secrets(self) -> list[str]:
        return [m.group(1) for m in (SECRET_LINE.search(line) for line in self.lines()) if m]

    def delivery_lines(self, event_id: str) -> list[str]:
        return [line for line in self.lines() if event_id in line and "-->" in line]


@contextmanager
def listening(
    env: Mapping[str, str], forward_to: str, *extra: str, cwd: Path | None = None
) -> Iterator[Listen]:
    process = Listen(["listen", "--forward-to", forward_to, *extra], env, cwd)
    try:
        process.wait_for_line(r"^Ready!")
        process.wait_for_line(SECRET_LINE.pattern)
        yield process
    finally:
        process.stop()


@contextmanager
def rex_serve(
    database_url: str,
    tmp_path: Path,
    *extra: str,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """``rex serve`` as a subprocess (fast retries); yields its URL once healthy."""
    port = port or free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REX_")},
        **FAST_ENV,
        "REX_DATABASE_URL": database_url,
        **(env or {}),
    }
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [REX, "serve", "--port", str(port), *extra],
            env=full_env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout=30, interval=0.1)
        yield url
    finally:
        stop_process(process)
