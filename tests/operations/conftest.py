"""Real ``rex serve`` / ``rex worker`` processes for the operations tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli import FAST_ENV, REX
from tests.support import first_key_from_log, free_port, wait_until


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout)


def rex_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REX_")}
    return {**env, **FAST_ENV, "REX_DATABASE_URL": database_url, **extra}


def start(args: list[str], env: dict[str, str], log: Path, ready_url: str) -> Proc:
    """Start ``rex ARGS`` (stdout and stderr into ``log``, separately kept apart by nothing:
    both go to the same file) and wait until ``ready_url`` answers 200."""
    with log.open("ab") as out:
        process = subprocess.Popen([REX, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(process, log, ready_url.rsplit("/", 1)[0])

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return httpx.get(ready_url, timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=40, interval=0.1)
    except BaseException:
        # Not ready in time: never leave it running for the rest of the session.
        process.kill()
        process.wait(10)
        raise
    return proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; whatever is still running at the end is stopped."""
    started: list[Proc] = []
    yield started
    for proc in started:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(10)


def serve(procs: list[Proc], database_url: str, tmp_path: Path, *extra: str, **env: str) -> Proc:
    port = free_port()
    proc = start(
        ["serve", "--port", str(port), *extra],
        rex_env(database_url, **env),
        tmp_path / f"serve-{port}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    procs.append(proc)
    return proc


def first_key(proc: Proc) -> str:
    """The first key `rex serve` made: not a terminal, so it is in the 0600 file its log
    names (JSON logs name it in a `first_api_key_file` line)."""
    text = proc.text()
    for line in text.splitlines():
        if '"first_api_key_file"' in line:
            path = Path(json.loads(line)["path"])
            assert path.stat().st_mode & 0o777 == 0o600
            [key] = re.findall(r"REX_API_KEY=(rex_sk_[A-Za-z0-9_\-]+)", path.read_text())
            assert key not in text
            return key
    return first_key_from_log(text)


def scrape(url: str, **headers: str) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``."""
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    series: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def wait_for_series(url: str, name: str, at_least: float, timeout: float = 20, **h: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scrape(url, **h).get(name, 0) >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} never reached {at_least}: {scrape(url, **h)}")
