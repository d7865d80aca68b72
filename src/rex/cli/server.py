"""The ``rex`` command's server side: run the server and workers, migrate, manage workspaces
and keys (these talk to the database directly). The client commands are registered on the
same ``app`` in ``rex.cli``."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Annotated, NoReturn

import typer

from rex.cli._errors import CliError
from rex.db.engine import Database
from rex.logging import configure_logging
from rex.settings import Settings
from rex.workspaces import service as workspaces

try:  # typer vendors click since 0.2x; older versions use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Rex: lead capture, contacts, deals and tasks, with signed, retried webhooks.",
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
workspaces_app = typer.Typer(no_args_is_help=True, help="Workspaces.")
app.add_typer(keys_app, name="keys")
app.add_typer(workspaces_app, name="workspaces")


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:
        raise CliError(f"bad settings: {exc}".replace("\n", " ")) from None
    configure_logging(settings.log_level, json=settings.log_json)
    return settings


async def _bootstrap(settings: Settings) -> str | None:
    """Migrate, make sure the default workspace exists; on first start, make its first key."""
    db = Database(settings.database_url)
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

    settings = _settings()
    first_key = asyncio.run(_bootstrap(settings))
    if first_key:
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        typer.echo(
            "\nRex created its database, the workspace 'default' and its first API key.\n"
            "The key is shown only now; `rex keys create` makes another at any time.\n\n"
            f"  export REX_URL=http://{shown_host}:{port}\n"
            f"  export REX_API_KEY={first_key}\n",
            err=True,
        )
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
        access_log=False,
        timeout_graceful_shutdown=int(settings.delivery_timeout) + 5,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # `rex listen` streams never end by themselves: end them as shutdown begins.
            application.state.listen_hub.close_threadsafe()
            super().handle_exit(sig, frame)

    server = Server(config)
    server.run()
    if not server.started:
        raise CliError(f"the server could not start on {host}:{port} (see the log above)")


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Deliveries in flight at once (default 64).")
    ] = None,
) -> None:
    """Run a standalone delivery worker (PostgreSQL; run as many as you like)."""
    from rex.app import destination_policy
    from rex.delivery.transport import AiohttpTransport
    from rex.delivery.worker import DeliveryWorker
    from rex.mail.mailer import Mailer
    from rex.mail.transport import MailTransport, RoutingTransport

    settings = _settings()

    async def run() -> None:
        db = Database(settings.database_url)
        await db.migrate()
        transport = RoutingTransport(
            AiohttpTransport(destination_policy(settings)),
            MailTransport(Mailer(settings.smtp_url, settings.mail_from)),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await DeliveryWorker(db, settings, transport, concurrency=concurrency).run(stop)
        finally:
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
        db = Database(settings.database_url)
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
) -> None:
    """Create an API key; the key alone is printed on the last line."""
    settings = _settings()

    async def run() -> tuple[str, str]:
        db = Database(settings.database_url)
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
                return await workspaces.create_api_key(conn, found.id, name)
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
    settings = _settings()

    async def run() -> str:
        db = Database(settings.database_url)
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
    except CliError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    sys.exit(code if isinstance(code, int) else 0)
