"""Operations commands: ``rex status``, ``rex backup``, ``rex keys list|revoke``, the global
options (``--version``, ``--url``, ``--api-key``) and the client commands added with them
(``rex webhooks get|rotate-secret``, ``rex workspace show|set``).

Exit codes (``rex.cli._errors``): 0 success, 1 any other failure, 2 usage error,
3 authentication failed, 4 not found, 5 Rex unreachable.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from rex._version import __version__
from rex.cli._errors import CliError
from rex.cli.api import connect
from rex.cli.output import JsonOption, print_json, print_record, print_table, say, time_field
from rex.db.engine import Database
from rex.ids import rfc3339, utcnow
from rex.json_types import JsonObject
from rex.ops.admin import NoDatabase, describe_database, require_database, sqlite_path
from rex.settings import Settings

# -- global options ----------------------------------------------------------------------


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rex {__version__}")
        raise typer.Exit()


def global_options(
    url: Annotated[
        str | None,
        typer.Option("--url", help="Rex's URL for client commands (default: REX_URL)."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="API key for client commands (default: REX_API_KEY).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Rex: lead capture, contacts, deals and tasks, with signed, retried webhooks."""
    # The client commands read REX_URL and REX_API_KEY; the flags win over the environment.
    if url is not None:
        os.environ["REX_URL"] = url
    if api_key is not None:
        os.environ["REX_API_KEY"] = api_key


# -- admin commands on the database ------------------------------------------------------


def admin_settings() -> Settings:
    from rex.cli._settings import load_settings as _settings

    return _settings()


def require(settings: Settings) -> None:
    """Refuse to go on unless the configured database exists (admin commands never make one)."""
    try:
        asyncio.run(require_database(settings.database_url))
    except NoDatabase as exc:
        raise CliError(str(exc)) from None


def _parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit() and int(text[:-1]) > 0:
        return timedelta(seconds=int(text[:-1]) * units[text[-1]])
    raise CliError(f"--expires-in takes a duration like 90d, 12h or 30m, got {text!r}", 2)


def expiry(expires_in: str | None) -> datetime | None:
    return utcnow() + _parse_duration(expires_in) if expires_in else None


KEY_COLUMNS = [
    ("ID", lambda k: k["id"]),
    ("WORKSPACE", lambda k: k["workspace"]),
    ("NAME", lambda k: k["name"]),
    ("PREFIX", lambda k: k["prefix"]),
    ("CREATED", time_field("created_at")),
    ("LAST USED", time_field("last_used_at")),
    ("EXPIRES", time_field("expires_at")),
]


def keys_list(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's keys.")] = None,
    revoked: Annotated[bool, typer.Option("--revoked", help="Show revoked keys too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List API keys (never the keys themselves: their prefix, use and expiry)."""
    from rex.ops import keys
    from rex.workspaces import service as workspaces

    settings = admin_settings()
    require(settings)

    async def run() -> list[keys.KeyData]:
        db = Database(settings.database_url, pool_size=1, timeout=settings.database_timeout)
        try:
            async with db.read() as conn:
                workspace_id = None
                if workspace is not None:
                    found = await workspaces.get_by_slug(conn, workspace)
                    if found is None:
                        raise CliError(f"no workspace {workspace!r}", 4)
                    workspace_id = found.id
                listed = await keys.list_keys(conn, workspace_id, include_revoked=revoked)
                return [k.as_json() for k in listed]
        finally:
            await db.close()

    found_keys = asyncio.run(run())
    if as_json:
        print_json(found_keys)
        return
    print_table(found_keys, KEY_COLUMNS, empty="No API keys (rex keys create makes one).")


def keys_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id (key_...).")],
) -> None:
    """Revoke an API key: every Rex process refuses it from its next request."""
    from rex.ops import keys

    settings = admin_settings()
    require(settings)

    async def run() -> keys.KeyData | None:
        db = Database(settings.database_url, pool_size=1, timeout=settings.database_timeout)
        try:
            async with db.transaction() as conn:
                revoked = await keys.revoke(conn, key_id)
                return revoked.as_json() if revoked else None
        finally:
            await db.close()

    revoked = asyncio.run(run())
    if revoked is None:
        raise CliError(f"no API key {key_id!r} (see `rex keys list`)", 4)
    say(f"Revoked API key {key_id} ({revoked['name']}, {revoked['prefix']}...).")


# -- status --------------------------------------------------------------------------------


async def _status(settings: Settings) -> JsonObject:
    from rex.ops.health import current_revision, head_revision, list_workers
    from rex.ops.metrics import read_backlog

    db = Database(settings.database_url, pool_size=1, timeout=settings.database_timeout)
    try:
        async with db.read() as conn:
            workers = await list_workers(conn)
            backlog = await read_backlog(conn)
            revision = await current_revision(conn)
    finally:
        await db.close()
    now = utcnow()
    return {
        "database": describe_database(settings.database_url),
        "schema": {"current": revision, "expected": head_revision()},
        "workers": [
            {
                "id": w.worker_id,
                "kind": w.kind,
                "host": w.hostname,
                "pid": w.pid,
                "state": w.state(now),
                "started_at": rfc3339(w.started_at),
                "last_heartbeat_at": rfc3339(w.last_seen_at),
                "last_heartbeat_age_seconds": round((now - w.last_seen_at).total_seconds(), 1),
            }
            for w in workers
        ],
        "deliveries_pending": backlog.pending,
        "oldest_due_delivery_at": rfc3339(backlog.oldest_due_at),
        "oldest_due_delivery_age_seconds": (
            round((now - backlog.oldest_due_at).total_seconds(), 1)
            if backlog.oldest_due_at
            else None
        ),
        "endpoints_disabled": backlog.disabled_endpoints,
    }


def status(as_json: JsonOption = False) -> None:
    """Workers and their last heartbeat, the delivery backlog, disabled endpoints."""
    settings = admin_settings()
    require(settings)
    report = asyncio.run(_status(settings))
    if as_json:
        print_json(report)
        return
    print_record(
        [
            ("database", report["database"]),
            ("schema", f"{report['schema']['current']} (expected {report['schema']['expected']})"),
            ("deliveries pending", report["deliveries_pending"]),
            ("oldest due delivery", report["oldest_due_delivery_at"] or "none due"),
            ("endpoints disabled", report["endpoints_disabled"]),
        ],
        title="Rex status",
    )
    print_table(
        report["workers"],
        [
            ("WORKER", lambda w: w["id"]),
            ("KIND", lambda w: w["kind"]),
            ("STATE", lambda w: w["state"]),
            ("LAST HEARTBEAT", time_field("last_heartbeat_at")),
            ("AGE (S)", lambda w: w["last_heartbeat_age_seconds"]),
        ],
        empty="No delivery worker has run against this database.",
    )


# -- backup --------------------------------------------------------------------------------


def backup(
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="File to write (must not exist).")],
) -> None:
    """Copy the database consistently while Rex serves (SQLite: the online backup API and an
    integrity check of the copy; PostgreSQL: pg_dump)."""
    settings = admin_settings()
    require(settings)
    if dest.exists():
        raise CliError(f"{dest} already exists: give a new file name", 2)
    source = sqlite_path(settings.database_url)
    if source is None:
        _pg_dump(settings.database_url, dest)
        return
    copied = sqlite_backup(source, dest)
    say(f"Backed up {source} to {dest.resolve()} ({copied} bytes, integrity check ok).")
    _backup_key_file(settings.database_url, dest)


def _backup_key_file(database_url: str, dest: Path) -> None:
    """The endpoints' signing secrets are encrypted with a key kept beside the database
    (docs/security.md): without it a restored copy cannot sign. Copy it as ``DEST.key``,
    0600 (the name a database restored as ``DEST`` looks for)."""
    from rex.secretbox import key_file_in_use

    key_file = key_file_in_use(database_url)
    if key_file is None:
        say("Signing secrets are encrypted with REX_SECRET_KEY: keep that key with the backup.")
        return
    if not key_file.exists():
        return
    target = dest.with_name(dest.name + ".key")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_file.read_bytes())
    say(f"Copied the secrets' key {key_file} to {target.resolve()} (0600).")
    say("Restore it beside the database, named as the database plus `.key`.")


def sqlite_backup(source: Path, dest: Path) -> int:
    """SQLite's online backup of ``source`` into ``dest``, then ``PRAGMA integrity_check``
    on the copy; the size of the copy. Writers keep going meanwhile (WAL)."""
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(partial)
        try:
            src.backup(out, pages=1024, sleep=0.005)
            out.execute("PRAGMA journal_mode=DELETE")
            result = out.execute("PRAGMA integrity_check").fetchall()
        finally:
            out.close()
    finally:
        src.close()
    if result != [("ok",)]:
        partial.unlink(missing_ok=True)
        raise CliError(f"the copy failed its integrity check: {result[:5]}")
    partial.rename(dest)
    return dest.stat().st_size


def _pg_dump(url: str, dest: Path) -> None:
    from rex.db.engine import asyncpg_dsn

    tool = shutil.which("pg_dump")
    if tool is None:
        raise CliError(
            "this is a PostgreSQL database: back it up with pg_dump, e.g. "
            f"`pg_dump --format=custom --file {dest} '{describe_database(url)}'` (pg_dump is "
            "not installed here); restore with pg_restore into an empty database"
        )
    result = subprocess.run(
        [tool, "--format=custom", "--file", str(dest), asyncpg_dsn(url)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise CliError(f"pg_dump failed: {result.stderr.strip()[:300]}")
    say(f"Backed up {describe_database(url)} to {dest.resolve()} with pg_dump (custom format).")


# -- client commands ------------------------------------------------------------------------


def webhooks_get(
    endpoint_id: Annotated[str, typer.Argument(metavar="ID", help="The endpoint's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one webhook endpoint."""
    from rex.cli.operator import _endpoint_record

    with connect() as api:
        endpoint = api.get(f"/webhooks/{endpoint_id}")["data"]
    if as_json:
        print_json(endpoint)
        return
    print_record(_endpoint_record(endpoint), title="Webhook endpoint")


def webhooks_rotate_secret(
    endpoint_id: Annotated[str, typer.Argument(metavar="ID", help="The endpoint's id.")],
    as_json: JsonOption = False,
) -> None:
    """Give an endpoint a new signing secret (the old one keeps signing for a while)."""
    from rex.cli.operator import _endpoint_record

    with connect() as api:
        endpoint = api.post(f"/webhooks/{endpoint_id}/rotate-secret", {})["data"]
    if as_json:
        print_json(endpoint)
        return
    print_record(_endpoint_record(endpoint), title="New secret")
    say("The new secret is shown only now.")


workspace_app = typer.Typer(no_args_is_help=True, help="This API key's workspace settings.")


def _workspace_record(workspace: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(k, json.dumps(v) if isinstance(v, list) else v) for k, v in workspace.items()]


@workspace_app.command("show")
def workspace_show(as_json: JsonOption = False) -> None:
    """Show the workspace: allowed origins, redirect URL, capture rate limit."""
    with connect() as api:
        workspace = api.get("/workspace")["data"]
    if as_json:
        print_json(workspace)
        return
    print_record(_workspace_record(workspace), title="Workspace")


@workspace_app.command("set")
def workspace_set(
    allowed_origins: Annotated[
        str | None, typer.Option(help="Comma-separated origins ('' for none).")
    ] = None,
    redirect_url: Annotated[str | None, typer.Option(help="URL ('' to clear).")] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="Capture rate limit, e.g. 600/minute ('' to clear).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change the workspace's capture settings (only the options given)."""
    body: JsonObject = {}
    if allowed_origins is not None:
        body["allowed_origins"] = [o.strip() for o in allowed_origins.split(",") if o.strip()]
    if redirect_url is not None:
        body["redirect_url"] = redirect_url or None
    if rate_limit is not None:
        body["capture_rate_limit"] = rate_limit or None
    if name is not None:
        body["name"] = name
    if not body:
        raise CliError("give at least one of --allowed-origins, --redirect-url, --rate-limit", 2)
    with connect() as api:
        workspace = api.patch("/workspace", body)["data"]
    if as_json:
        print_json(workspace)
        return
    print_record(_workspace_record(workspace), title="Workspace updated")
