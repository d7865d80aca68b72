"""A fast webhook receiver that records when deliveries arrive.

Run as a subprocess by the harness: ``python -m bench.receiver PORT``. ``GET /stats`` returns
``{"count": n, "arrivals": {email: first_arrival_unix_time}, "per_second": {unix_second: n}}``
(``per_second`` counts every delivery, duplicates and fan-out included).
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import orjson
from aiohttp import web


def make_app() -> web.Application:
    arrivals: dict[str, float] = {}
    per_second: Counter[int] = Counter()
    count = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        body = await request.read()
        now = time.time()
        count += 1
        per_second[int(now)] += 1
        try:
            email = orjson.loads(body)["data"].get("email")
        except (ValueError, KeyError, AttributeError, TypeError):
            email = None
        if email and email not in arrivals:
            arrivals[email] = now
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        body = {"count": count, "arrivals": arrivals, "per_second": per_second}
        return web.Response(body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))

    async def count_only(_: web.Request) -> web.Response:
        return web.json_response({"count": count})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/count", count_only)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
