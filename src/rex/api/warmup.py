"""Build every route before the app serves, not on the event loop at its first request.

FastAPI (0.16x) builds the routes of an included router lazily: the first request that
reaches the router creates a pydantic validator for every parameter and body of every route
in it. For Rex's routers that is about 0.5 s of CPU on a quiet machine and several seconds on
a loaded one, spent on the event loop while it holds the GIL: every delivery in flight at the
time has its timeout stretched by as much (a test suite saw a 2 s timeout fire after 4 s).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Scope

# A path no route has: matching it walks (and so builds) every route of every router.
_NO_ROUTE: Scope = {
    "type": "http",
    "method": "GET",
    "path": "/.rex-warm-up/",
    "root_path": "",
    "headers": [],
    "query_string": b"",
}


def build_routes(app: Starlette) -> None:
    """Match every route once against a path none of them has."""
    for route in app.router.routes:
        route.matches(dict(_NO_ROUTE))
