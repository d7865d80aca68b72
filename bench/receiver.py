"""A fast webhook receiver that records when each capture's delivery arrived.

Run as a subprocess by the harness: ``python -m bench.receiver PORT``. ``GET /stats`` returns
``{"count": n, "arrivals": {email: first_arrival_unix_time}, "timeline": [...]}``.
"""

from __future__ import annotations

import json
import sys
import time

from aiohttp import web


def make_app() -> web.Application:
    arrivals: dict[str, float] = {}
    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.read()
        now = time.time()
        count += 1
        try:
            email = json.loads(body)["data"].get("email")
        except (ValueError, KeyError, AttributeError):
            email = None
        if email and email not in arrivals:
            arrivals[email] = now
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.json_response({"count": count, "arrivals": arrivals})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
