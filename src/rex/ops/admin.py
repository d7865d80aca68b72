"""What the admin commands share: find the database without ever creating one."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from rex.db.engine import Database

HOW_TO_POINT = (
    "point REX_DATABASE_URL (or .env) at the database `rex serve` uses: it prints it when it "
    "starts (`serving database=...`); or create one here with `rex migrate`"
)


class NoDatabase(Exception):
    """The database the settings name does not exist or holds no Rex schema."""


def describe_database(url: str) -> str:
    """``url`` for people: a SQLite file as an absolute path, a password hidden."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ":memory:"
        if database == ":memory:":
            return "sqlite (in memory)"
        return f"sqlite:///{Path(database).resolve()}"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


async def require_database(url: str) -> None:
    """Raise ``NoDatabase`` unless ``url`` names an existing database that Rex created."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise NoDatabase(
            f"no Rex database at {describe_database(url)} (this command never creates one); "
            + HOW_TO_POINT
        )
    db = Database(url, pool_size=1)
    try:
        async with db.read() as conn:
            await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
    except Exception as exc:
        raise NoDatabase(
            f"{describe_database(url)} is not a Rex database or does not answer "
            f"({type(exc).__name__}); " + HOW_TO_POINT
        ) from None
    finally:
        await db.close()
