"""A 503 for an unavailable database keeps the client's keep-alive connection open.

Regression test for what tests/faults/test_postgres_restart.py found: the 503 came from the
app-wide ``Exception`` handler, run by Starlette's ServerErrorMiddleware, which re-raises
after answering; uvicorn then closed the connection and a client's next request on it was
reset. Served by real uvicorn on 127.0.0.1, as Rex is."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from rex.api.errors import DatabaseErrorsMiddleware, install_error_handlers
from tests.support import free_port


def outage_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(DatabaseErrorsMiddleware)

    @app.get("/locked")
    async def locked() -> None:
        raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def served() -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(outage_app(), host="127.0.0.1", port=port, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_503_keeps_the_connection_open(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        answers = [client.get("/locked") for _ in range(3)]
        ports = {local_port(r) for r in answers}
    for response in answers:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["type"] == "service_unavailable"
    assert len(ports) == 1, "the connection was not kept"


def test_a_bug_is_still_a_500_with_the_envelope(served: str) -> None:
    with httpx.Client(base_url=served) as client:
        response = client.get("/bug")
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
