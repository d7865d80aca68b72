"""The machine's own ceilings, measured in the same run as Rex and under the same load.

``python -m bench.ceilings starlette|fastapi PORT`` serves ``POST /capture`` that parses the
JSON body and echoes it: the most any ASGI app on this machine can do. The other ceilings
are measured in the harness's process: raw aiohttp posts to the receiver, plain ``sqlite3``
commits, asyncpg transactions.
"""
# No `from __future__ import annotations`: FastAPI must see the real `Lead` class below.

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn

from bench.load import MAX_REQUESTS, generate_load, raw_aiohttp_posts
from bench.procs import Setup, free_port, wait_for_port


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"data": await request.json()}, status_code=201)

    return Starlette(routes=[Route("/capture", echo, methods=["POST"])])


def fastapi_app() -> Any:
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Lead(BaseModel):
        email: str
        first_name: str | None = None
        source: str | None = None

    app = FastAPI()

    @app.post("/capture", status_code=201)
    async def capture(lead: Lead) -> dict[str, Any]:
        return {"data": lead.model_dump()}

    return app


async def measure_ceilings(setup: Setup, *, seconds: float, connections: int) -> dict[str, float]:
    """Every ceiling that applies to ``setup``'s backend, each for ``seconds``."""
    ceilings: dict[str, float] = {}
    for kind in ("starlette", "fastapi"):
        port = free_port()
        process = setup.procs.start(
            [sys.executable, "-m", "bench.ceilings", kind, str(port)],
            setup.env,
            setup.work / f"{kind}.log",
        )
        wait_for_port(port, process)
        load = await generate_load(
            f"http://127.0.0.1:{port}/capture", duration=seconds, rate=None, connections=connections
        )
        ceilings[f"bare_{kind}_req_per_s"] = round(load.rate, 1)
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    posts = await raw_aiohttp_posts(
        f"{setup.receiver_url}/hook", duration=seconds, connections=connections
    )
    ceilings["raw_aiohttp_posts_per_s"] = round(posts, 1)
    if setup.backend == "sqlite":
        commits = sqlite3_commits(setup.work / "ceiling.db", duration=min(seconds, 5.0))
        ceilings["sqlite3_two_row_commits_per_s"] = round(commits, 1)
    else:
        transactions = await asyncpg_transactions(setup.postgres_url, duration=min(seconds, 5.0))
        ceilings["asyncpg_two_statement_txn_per_s"] = round(transactions, 1)
    return ceilings


def sqlite3_commits(path: Path, *, duration: float) -> float:
    """Two-row transactions/s from one thread with plain ``sqlite3``, in WAL mode with
    ``synchronous=FULL`` (Rex's settings)."""
    import sqlite3

    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
    done = 0
    started = time.monotonic()
    while time.monotonic() - started < duration and done < MAX_REQUESTS:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t (body) VALUES (?)", ("x" * 200,))
        connection.execute("INSERT INTO t (body) VALUES (?)", ("y" * 200,))
        connection.execute("COMMIT")
        done += 1
    rate = done / (time.monotonic() - started)
    connection.close()
    return rate


async def asyncpg_transactions(admin_url: str, *, duration: float, pool: int = 16) -> float:
    """Two-statement transactions/s over ``pool`` asyncpg connections (into a temporary
    table, so nothing is left behind)."""
    import asyncpg
    import sqlalchemy as sa

    dsn = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(False)
    done = 0
    deadline = time.monotonic() + duration

    async def loop() -> None:
        nonlocal done
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("CREATE TEMP TABLE t (id serial PRIMARY KEY, body text)")
            while time.monotonic() < deadline and done < MAX_REQUESTS:
                async with connection.transaction():
                    await connection.execute("INSERT INTO t (body) VALUES ($1)", "x" * 200)
                    await connection.execute("INSERT INTO t (body) VALUES ($1)", "y" * 200)
                done += 1
        finally:
            await connection.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(pool)))
    return done / (time.monotonic() - started)


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    app = starlette_app() if kind == "starlette" else fastapi_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
