"""uvicorn for ``rex serve``: its configuration, and a server that stops Rex's way (imported
only by ``rex serve``: other commands never load uvicorn)."""

from __future__ import annotations

import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
import uvicorn

from rex.settings import Settings

if TYPE_CHECKING:
    from rex.cli.children import Children

log = structlog.get_logger("rex.serve")


def uvicorn_config(application: Any, settings: Settings, host: str, port: int) -> uvicorn.Config:
    from rex.http_protocol import make_protocol

    return uvicorn.Config(
        application,
        host=host,
        port=port,
        # Client IPs come from the socket unless REX_TRUSTED_PROXIES says otherwise; uvicorn's
        # own X-Forwarded-For trust (127.0.0.1 by default) would let anyone spoof them.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        log_level=settings.log_level,
        # Rex's logging (rex.logging) renders uvicorn's lines; Rex logs one line a request.
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.delivery_timeout) + 5,
        # Bounded for the open internet (docs/security.md): connections at once (503 past
        # them), a deadline for each request to arrive, and idle keep-alive.
        http=make_protocol(settings.request_read_timeout),
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout,
    )


class RexServer(uvicorn.Server):
    """uvicorn's server, with Rex's stop: `rex listen` streams end as shutdown begins, a
    second signal exits at once, the children stop with the API, and a child's lifeline
    (end of file: its parent is gone) stops it like SIGTERM."""

    def __init__(
        self, config: uvicorn.Config, children: Children | None, lifeline_fd: int | None
    ) -> None:
        super().__init__(config)
        self.children = children
        self.lifeline_fd = lifeline_fd
        self.grace = float(config.timeout_graceful_shutdown or 30) + 10

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.children is not None:
            self.children.on_give_up = lambda _reason: self._stop()
            self.children.start()
        if self.lifeline_fd is not None:
            from rex.cli.children import follow_lifeline

            follow_lifeline(self.lifeline_fd, on_gone=self._stop)
        try:
            await super().serve(sockets)
        finally:  # a start that failed (no shutdown): the children stop all the same
            if self.children is not None:
                await self.children.stop(self.grace)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """The API's shutdown, then its children's, while a second signal still exits at
        once (uvicorn restores the default handlers after ``shutdown``)."""
        await super().shutdown(sockets)
        if self.children is not None:
            await self.children.stop(self.grace)

    def _stop(self) -> None:
        self.handle_exit(signal.SIGTERM, None)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        from rex.ops import lifecycle
        from rex.runtime import runtime_of

        if self.should_exit:  # the second SIGTERM or SIGINT: exit at once
            if self.children is not None:
                self.children.signal(sig)
            lifecycle.exit_now(sig)
        log.info("shutting_down", signal=signal.Signals(sig).name)
        if self.children is not None:
            self.children.terminate()  # they stop beside the API, not after it
        # `rex listen` streams never end by themselves: end them as shutdown begins.
        runtime_of(self.config.app).listen_hub.close_threadsafe()
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once shut down (exit -15); a clean stop exits 0.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()
