"""Refuse requests with more than one ``Host`` header (400).

``/capture`` picks its workspace from ``Host``; with two of them a proxy and Rex could each
believe a different one. Pure ASGI, so it holds under any server.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from rex.api.errors import error_response


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = sum(1 for name, _ in scope["headers"] if name == b"host")
            if hosts > 1:
                response = error_response(
                    400,
                    f"The request has {hosts} Host headers; send exactly one.",
                    headers={"Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
