"""``rex serve``: the API under uvicorn, and the processes it starts beside itself (a delivery
worker, more API processes; see ``rex.cli.children``)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog
import typer

from rex.cli._errors import CliError
from rex.db.engine import Database
from rex.settings import Settings
from rex.workspaces import service as workspaces

if TYPE_CHECKING:
    from rex.cli.children import Children

log = structlog.get_logger("rex.serve")


class WorkerMode(StrEnum):
    """``rex serve --worker``: where the delivery worker runs."""

    INLINE = "inline"
    PROCESS = "process"
    NONE = "none"


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    mode: WorkerMode,
    workers: int,
    lifeline_fd: int | None,
) -> None:
    """Serve the API (``workers`` processes of it), with the delivery worker as ``mode``
    says. ``lifeline_fd``: this is a child of another ``rex serve`` (see rex.cli.children)."""
    from rex.app import create_app
    from rex.cli.children import Child, Children, reuse_port_socket
    from rex.cli.uvicorn_server import RexServer, uvicorn_config

    start_tracing(settings, process="api")
    child = lifeline_fd is not None
    children: Children | None = None
    worker_id: str | None = None
    if not child:
        log.info(
            "serving",
            database=_describe(settings.database_url),
            host=host,
            port=port,
            worker=mode.value,
            api_processes=workers,
        )
        first_key = asyncio.run(_bootstrap(settings))
        if first_key:
            _show_first_key(first_key, settings, host, port)
        api_worker = "inline" if mode.value == "inline" else "none"
        serve_args = ["serve", "--host", host, "--port", str(port), "--worker", api_worker]
        planned = [Child(f"api{index}", serve_args) for index in range(2, workers + 1)]
        if mode.value == "process":
            # One id for the worker process across restarts: /readyz and `rex status` follow
            # its heartbeat, and the API writes the first one (as the inline worker did).
            worker_id = f"{socket.gethostname()}:{os.getpid()}:serve-worker"
            args = ["worker", "--worker-id", worker_id]
            planned.append(Child("worker", args, wakes=settings.is_sqlite))
        if planned:
            children = Children(planned, on_give_up=lambda _reason: None)
    application = create_app(
        settings,
        run_worker=mode.value == "inline",
        on_deliveries_queued=children.wake if children and children.has_worker else None,
        worker_process_id=worker_id,
    )
    server = RexServer(uvicorn_config(application, settings, host, port), children, lifeline_fd)
    sockets = [reuse_port_socket(host, port)] if workers > 1 or child else None
    server.run(sockets=sockets)
    if children is not None and children.failed:
        raise CliError(children.failed)
    if not server.started:
        raise CliError(f"the server could not start on {host}:{port} (see the log above)")


def _describe(url: str) -> str:
    from rex.ops.admin import describe_database

    return describe_database(url)


async def _bootstrap(settings: Settings) -> str | None:
    """Migrate, make sure the default workspace exists; on first start, make its first key."""
    db = Database(settings.database_url, timeout=settings.database_timeout)
    try:
        await db.migrate()
        async with db.transaction() as conn:
            workspace, created = await workspaces.ensure_default_workspace(conn)
            if not created:
                return None
            _, key = await workspaces.create_api_key(conn, workspace.id, "first key")
            return key
    finally:
        await db.close()


def _show_first_key(key: str, settings: Settings, host: str, port: int) -> None:
    """The first API key goes to a terminal, or to a file only its owner can read: never
    into a log (stdout and stderr of a service end up in one)."""
    from pathlib import Path

    from rex.secretbox import default_key_file

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    exports = f"  export REX_URL=http://{shown_host}:{port}\n  export REX_API_KEY={key}\n"
    if sys.stdout.isatty():
        typer.echo(
            "\nRex created its database, the workspace 'default' and its first API key.\n"
            "The key is shown only now; `rex keys create` makes another at any time.\n\n" + exports
        )
        return
    folder = default_key_file(settings.database_url).parent
    path = Path(os.environ.get("REX_FIRST_KEY_FILE") or folder / "rex-first-key.txt")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(exports)
    if settings.log_json:  # every line on stderr stays one JSON object
        line = {"event": "first_api_key_file", "level": "warning", "path": str(path)}
        typer.echo(json.dumps(line), err=True)
        return
    typer.echo(
        "\nRex created its database, the workspace 'default' and its first API key.\n"
        f"Not a terminal, so the key is not printed: it is in {path} (mode 0600).\n"
        f"  . {path}   # sets REX_URL and REX_API_KEY; then delete the file\n",
        err=True,
    )


def start_tracing(settings: Settings, *, process: str) -> None:
    """OpenTelemetry spans when REX_TRACING asks for them (flushed at exit)."""
    if settings.tracing == "off":
        return
    import atexit

    from rex import tracing

    try:
        tracing.configure(settings.tracing, process=process)
    except tracing.TracingUnavailable as exc:
        raise CliError(str(exc)) from None
    atexit.register(tracing.shutdown)
    structlog.get_logger("rex.tracing").info("tracing", exporter=settings.tracing)
