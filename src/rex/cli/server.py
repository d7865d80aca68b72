"""The ``rex`` command's server side: run the server and workers, migrate, manage workspaces
and keys (these talk to the database directly). The client commands are registered on the
same ``app`` in ``rex.cli``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Annotated, NoReturn

import structlog
import typer

from rex.cli._errors import CliError
from rex.cli._settings import load_settings as _settings
from rex.db.engine import Database
from rex.secretbox import SecretKeyError
from rex.settings import Settings
from rex.workspaces import service as workspaces

try:  # typer vendors click since 0.2x; older versions use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    help="Rex: lead capture, contacts, deals and tasks, with signed, retried webhooks.",
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
workspaces_app = typer.Typer(no_args_is_help=True, help="Workspaces.")
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")


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
    import os
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not run the delivery worker in-process.")
    ] = False,
) -> None:
    """Run the API server (and, on SQLite, the delivery worker in-process)."""
    import uvicorn

    from rex.app import create_app
    from rex.http_protocol import make_protocol
    from rex.ops import lifecycle
    from rex.ops.admin import describe_database
    from rex.runtime import runtime_of

    settings = _settings()
    _start_tracing(settings, process="api")
    structlog.get_logger("rex.serve").info(
        "serving", database=describe_database(settings.database_url), host=host, port=port
    )
    first_key = asyncio.run(_bootstrap(settings))
    if first_key:
        _show_first_key(first_key, settings, host, port)
    run_worker = not no_worker
    application = create_app(settings, run_worker=run_worker)
    config = uvicorn.Config(
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

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:  # the second SIGTERM or SIGINT: exit at once
                lifecycle.exit_now(sig)
            structlog.get_logger("rex.serve").info("shutting_down", signal=signal.Signals(sig).name)
            # `rex listen` streams never end by themselves: end them as shutdown begins.
            runtime_of(application).listen_hub.close_threadsafe()
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal once shut down (exit -15); a clean stop exits 0.
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    server = Server(config)
    server.run()
    if not server.started:
        raise CliError(f"the server could not start on {host}:{port} (see the log above)")


def _start_tracing(settings: Settings, *, process: str) -> None:
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


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Deliveries in flight at once (default 64).")
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics, /healthz and /readyz on this port."),
    ] = None,
    http_host: Annotated[str, typer.Option(help="Interface for --http-port.")] = "127.0.0.1",
) -> None:
    """Run a standalone delivery worker (PostgreSQL; run as many as you like)."""
    from rex.mail.mailer import Mailer
    from rex.mail.transport import MailTransport, RoutingTransport
    from rex.ops import lifecycle, worker_http
    from rex.ops.health import Heartbeat
    from rex.runtime import destination_policy
    from rex.worker.loop import DeliveryWorker
    from rex.worker.transport import AiohttpTransport

    settings = _settings()
    _start_tracing(settings, process="worker")

    async def run() -> None:
        db = Database(settings.database_url, timeout=settings.database_timeout)
        await db.migrate()
        transport = RoutingTransport(
            AiohttpTransport(destination_policy(settings), proxy=settings.proxy_url),
            MailTransport(Mailer(settings.smtp_url, settings.mail_from)),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def first_signal(signum: int) -> None:
            stop.set()
            for other in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(other)
            lifecycle.second_signal_exits(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, first_signal, signum)
        delivery_worker = DeliveryWorker(db, settings.delivery, transport, concurrency=concurrency)
        heartbeat = Heartbeat(db, delivery_worker.worker_id, kind="worker")
        runner = None
        try:
            await heartbeat.beat()
            if http_port is not None:
                runner = await worker_http.start(
                    db, delivery_worker.worker_id, settings.metrics_token, http_host, http_port
                )
            beating = asyncio.create_task(heartbeat.run(stop))
            await delivery_worker.run(stop)
            await lifecycle.release_leases(db, delivery_worker.worker_id)
            await beating
        finally:
            if runner is not None:
                await runner.cleanup()
            await transport.close()
            await db.close()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (as uvicorn does for `rex serve`)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return None
    return uvloop.new_event_loop


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = _settings()

    async def run() -> None:
        db = Database(settings.database_url, timeout=settings.database_timeout)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(run())
    typer.echo("Schema is up to date.")


@keys_app.command("create")
def keys_create(
    workspace: Annotated[str, typer.Option(help="Workspace slug.")] = workspaces.DEFAULT_SLUG,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    expires_in: Annotated[
        str | None, typer.Option(help="Expire the key after this long: 90d, 12h, 30m.")
    ] = None,
) -> None:
    """Create an API key; the key alone is printed on the last line."""
    from rex.cli import ops

    settings = _settings()
    ops.require(settings)
    expires_at = ops.expiry(expires_in)

    async def run() -> tuple[str, str]:
        db = Database(settings.database_url, timeout=settings.database_timeout)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                if workspace == workspaces.DEFAULT_SLUG:
                    found, _ = await workspaces.ensure_default_workspace(conn)
                else:
                    maybe = await workspaces.get_by_slug(conn, workspace)
                    if maybe is None:
                        raise CliError(
                            f"no workspace {workspace!r} (create it: rex workspaces create "
                            f"{workspace})"
                        )
                    found = maybe
                return await workspaces.create_api_key(conn, found.id, name, expires_at=expires_at)
        finally:
            await db.close()

    key_id, key = asyncio.run(run())
    typer.echo(f"Created API key {key_id} for workspace {workspace!r}; it is shown only now:")
    typer.echo(key)


@workspaces_app.command("create")
def workspaces_create(
    slug: Annotated[str, typer.Argument(help="Lower-case letters, digits and '-'.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
) -> None:
    """Create a workspace (then: rex keys create --workspace SLUG)."""
    from rex.cli import ops

    settings = _settings()
    ops.require(settings)

    async def run() -> str:
        db = Database(settings.database_url, timeout=settings.database_timeout)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                return (await workspaces.create_workspace(conn, slug, name)).id
        except workspaces.SlugTaken:
            raise CliError(f"workspace {slug!r} already exists") from None
        except ValueError as exc:
            raise CliError(str(exc)) from None
        finally:
            await db.close()

    workspace_id = asyncio.run(run())
    typer.echo(f"Created workspace {slug!r} ({workspace_id}).")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"rex: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: CLI failures are one line on stderr and a non-zero exit."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `rex webhooks` alone: the help
            exc.show()
            sys.exit(2)
        where = exc.ctx.command_path if exc.ctx else "rex"
        _fail(f"{exc.format_message()} (see `{where} --help`)", exc.exit_code)
    except click_exceptions.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except SecretKeyError as exc:
        _fail(str(exc))
    except CliError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    sys.exit(code if isinstance(code, int) else 0)
