"""Per-request observability: the ``X-Request-Id``, one access-log line, HTTP metrics.

``RequestContextMiddleware`` is the outermost middleware: it accepts the client's
``X-Request-Id`` when it is a sane token (else makes one), binds it to the log context of
everything the request logs, echoes it on the response, and, once the answer is sent, logs
one ``request`` line and counts it in ``rex_http_requests_total`` under the route template
(``/contacts/{contact_id}``, never the raw path: bounded label values).
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rex import tracing
from rex.client_ip import ProxyTrust
from rex.ops import metrics
from rex.request_id import request_id_from, request_id_var

access_log = structlog.get_logger("rex.access")

UNMATCHED_ROUTE = "unmatched"


_FIXED_PATHS = frozenset({"/openapi.json"})  # served without a route in the scope


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope.get("path") in _FIXED_PATHS else UNMATCHED_ROUTE


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, proxy_trust: ProxyTrust | None = None) -> None:
        self.app = app
        self.proxy_trust = proxy_trust

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from(incoming)
        header = request_id.encode()
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        span = tracing.start_request(scope) if tracing.ENABLED else None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", header))
                message = {**message, "headers": headers}
            await send(message)

        started_response = False

        async def send_tracking(message: Message) -> None:
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        failed = False
        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            # A bug below: answer the 500 here, so that it carries the request id; Starlette's
            # outer handler still logs it (with this id: the context is kept) and re-raises.
            failed = True
            if not started_response:
                from rex.api.errors import error_response

                response = error_response(
                    500, "Internal error; nothing was written.", type="internal_error"
                )
                await response(scope, receive, send_tracking)
            raise
        finally:
            duration = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
            metrics.HTTP_DURATION.labels(route).observe(duration)
            if method == "POST" and route.startswith("/capture"):
                metrics.CAPTURES.labels(metrics.capture_outcome(status)).inc()
            access_log.info(
                "request",
                method=method,
                route=route,
                path=scope.get("path", ""),
                status=status,
                duration_ms=round(duration * 1000, 2),
                client=self._client(scope),
            )
            if span is not None:
                tracing.finish_request(span, route=route, status=status, request_id=request_id)
            if not failed:  # (a failed request's id stays for the lines logging the error)
                structlog.contextvars.unbind_contextvars("request_id")
                request_id_var.reset(token)

    def _client(self, scope: Scope) -> str | None:
        """The client's address: the socket's peer, or what trusted proxies vouch for."""
        peer = scope.get("client")
        address = peer[0] if peer else None
        if self.proxy_trust is None or not self.proxy_trust.networks:
            return address
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
        ]
        found = self.proxy_trust.client_address(address, forwarded)
        return str(found) if found is not None else address
