"""The app is built whole before it serves: its first requests build nothing on the loop.

FastAPI builds an included router's routes (a pydantic validator per parameter and body) on
the first request that reaches it, on the event loop. For Rex that was ~0.5 s of CPU (several
seconds on a loaded machine) stalling every delivery in flight: the cause of the 2-4 s loop
stalls that made delivery tests flaky (issue 18). ``create_app`` now builds every route.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from rex.app import create_app
from tests.support import make_settings


def test_first_requests_build_no_validators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(make_settings(f"sqlite:///{tmp_path}/rex.db"), run_worker=False)
    built: list[Any] = []
    original = pydantic.TypeAdapter.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(args[0] if args else kwargs.get("type"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(pydantic.TypeAdapter, "__init__", counting)

    async def first_requests() -> list[int]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
        ):
            # An unknown path walks every route of every router; then one route of each.
            paths = ["/no-such-route", "/healthz", "/contacts", "/webhooks", "/listen/sessions"]
            return [(await c.get(path)).status_code for path in paths]

    statuses = asyncio.run(first_requests())

    assert statuses == [404, 200, 401, 401, 401]
    assert built == [], f"the first requests built {len(built)} validators on the loop"
