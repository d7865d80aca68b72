"""Bare servers the harness measures Rex against, under the same load generator.

``python -m bench.ceilings starlette|fastapi PORT`` serves ``POST /capture`` that parses the
JSON body and echoes it: the most any ASGI app on this machine can do.
"""
# No `from __future__ import annotations`: FastAPI must see the real `Lead` class below.

import sys
from typing import Any

import uvicorn


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


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    app = starlette_app() if kind == "starlette" else fastapi_app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
