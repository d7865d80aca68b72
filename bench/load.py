"""The load generator: leads POSTed to /capture, open loop at a rate or closed loop."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

MAX_REQUESTS = 2_000_000
"""Every loop stops after this many requests, whatever the duration."""


@dataclass
class LoadResult:
    sent: dict[str, float] = field(default_factory=dict)  # email -> send time (accepted only)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    ended: float = 0.0
    timeline: list[float] = field(default_factory=list)  # completion times of accepted requests

    @property
    def accepted(self) -> int:
        return len(self.sent)

    @property
    def rate(self) -> float:
        return self.accepted / max(self.ended - self.started, 1e-9)


async def generate_load(
    url: str, *, duration: float, rate: float | None, connections: int
) -> LoadResult:
    """POST leads to ``url`` for ``duration`` seconds: open loop at ``rate``/s (at most
    ``connections`` x 4 outstanding), or closed loop with ``connections`` clients."""
    result = LoadResult()
    run_id = uuid.uuid4().hex[:8]
    counter = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal counter
            counter += 1
            email = f"b{run_id}-{counter}@example.com"
            body = {
                "email": email,
                "first_name": "Bench",
                "source": "bench",
                "metadata": {"utm_source": "bench", "landing_page": "/pricing"},
            }
            sent_at = time.time()
            try:
                async with session.post(url, json=body) as response:
                    await response.read()
                    result.statuses[response.status] = result.statuses.get(response.status, 0) + 1
                    if 200 <= response.status < 300:
                        result.sent[email] = sent_at
                        result.timeline.append(time.time())
                    else:
                        result.errors += 1
            except (aiohttp.ClientError, OSError):
                result.errors += 1

        result.started = time.time()
        deadline = time.monotonic() + duration
        if rate:
            interval = 1 / rate
            tasks: set[asyncio.Task[None]] = set()
            next_at = time.monotonic()
            while time.monotonic() < deadline and counter < MAX_REQUESTS:
                if len(tasks) < connections * 4:
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks, timeout=30)
        else:

            async def loop() -> None:
                while time.monotonic() < deadline and counter < MAX_REQUESTS:
                    await one()

            await asyncio.gather(*(loop() for _ in range(connections)))
        result.ended = time.time()
    return result


async def raw_aiohttp_posts(url: str, *, duration: float, connections: int) -> float:
    """Ceiling for delivery: JSON posts/s from aiohttp to the same receiver."""
    body = json.dumps({"id": "evt_x", "event": "contact.created", "data": {"email": None}})
    done = 0
    deadline = time.monotonic() + duration
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline and done < MAX_REQUESTS:
                async with session.post(url, data=body) as response:
                    await response.read()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        return done / (time.monotonic() - started)
