"""The ``rex`` command's server side: run the server and workers, migrate, manage workspaces
and keys (these talk to the database directly). The client commands are registered on the
same ``app`` in ``rex.cli``."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Annotated, NoReturn

import typer

from rex.cli._errors import CliError
from rex.cli._settings import load_settings as _settings
from rex.cli.serving import WorkerMode, start_tracing
from rex.db.engine import Database
from rex.secretbox import SecretKeyError
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


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    worker: Annotated[
        WorkerMode | None,
        typer.Option(
            help="The delivery worker: 'inline' (on the API's event loop; the default), "
            "'process' (a child process beside the API, on the second core) or 'none' "
            "(run `rex worker` yourself)."
        ),
    ] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Same as --worker none.")] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="API processes sharing the port (SO_REUSEPORT; PostgreSQL only).",
        ),
    ] = 1,
    lifeline_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the API server, and the delivery worker beside it (see --worker)."""
    from rex.cli import serving

    settings = _settings()
    if no_worker:
        worker = WorkerMode.NONE
    # Inline by default on both backends: measured on a quiet machine, the worker process did
    # not deliver faster under a full load (it waits on SQLite's write lock; docs/performance.md),
    # and its counters are not on the API's /metrics.
    mode = worker or WorkerMode.INLINE
    if workers > 1 and settings.is_sqlite:
        raise CliError(
            "--workers N is for PostgreSQL: on SQLite one API process and one worker "
            "process share the database (SQLite has one writer at a time)"
        )
    serving.serve(settings, host=host, port=port, mode=mode, workers=workers,
                  lifeline_fd=lifeline_fd)  # fmt: skip


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
    lifeline_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    worker_id: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run a standalone delivery worker (PostgreSQL; run as many as you like)."""
    from rex.mail.mailer import Mailer
    from rex.mail.transport import MailTransport, RoutingTransport
    from rex.ops import lifecycle, worker_http
    from rex.ops.health import Heartbeat
    from rex.outbox import queue
    from rex.runtime import destination_policy
    from rex.worker.loop import DeliveryWorker
    from rex.worker.transport import AiohttpTransport

    settings = _settings()
    start_tracing(settings, process="worker")

    async def run() -> None:
        db = Database(
            settings.database_url,
            pool_size=settings.pool_size,
            timeout=settings.database_timeout,
        )
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
        delivery_worker = DeliveryWorker(
            db, settings.delivery, transport, concurrency=concurrency, worker_id=worker_id
        )
        if lifeline_fd is not None:  # the worker process of `rex serve` (rex.cli.children)
            from rex.cli.children import follow_lifeline

            if db.is_sqlite:
                # The only worker of this SQLite database: leases left by the one before it
                # (stopped or killed) are stale.
                async with db.transaction() as conn:
                    await queue.release_all_leases(conn)
            follow_lifeline(lifeline_fd, on_gone=stop.set, on_wake=delivery_worker.wake)
        # `rex serve`'s own worker is "embedded" in `rex status`, as it was in-process.
        kind = "worker" if lifeline_fd is None else "embedded"
        heartbeat = Heartbeat(db, delivery_worker.worker_id, kind=kind)
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
