"""``rex secrets``: the key that encrypts endpoint signing secrets at rest (rex.secretbox)."""

from __future__ import annotations

import asyncio

import typer
from cryptography.fernet import Fernet

from rex.cli._errors import CliError

secrets_app = typer.Typer(no_args_is_help=True, help="The key that encrypts signing secrets.")


@secrets_app.command("generate-key")
def generate_key() -> None:
    """Print a new Fernet key (for REX_SECRET_KEY), alone on stdout."""
    typer.echo(Fernet.generate_key().decode())


@secrets_app.command("rotate-key")
def rotate_key() -> None:
    """Re-encrypt every stored secret under the first key of REX_SECRET_KEY.

    Rotation: set REX_SECRET_KEY="NEW,OLD" (new first) on every process, run this once, then
    drop OLD. Prints how many secrets were re-encrypted."""
    from rex import secretbox
    from rex.cli._settings import load_settings as _settings
    from rex.db.engine import Database

    settings = _settings()

    async def run() -> int:
        db = Database(settings.database_url, timeout=settings.database_timeout)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                return await secretbox.encrypt_stored_secrets(conn, rotate=True)
        finally:
            await db.close()

    try:
        count = asyncio.run(run())
    except secretbox.SecretKeyError as exc:
        raise CliError(str(exc)) from None
    typer.echo(f"re-encrypted {count} secrets under the first key")
