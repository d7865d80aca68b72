"""``rex users``: the people who sign in to the console (on the database, like ``rex keys``).

Passwords are shown once: ``create`` and ``reset-password`` print a one-time password alone
on the last line of stdout (or ``create --password-stdin`` reads one)."""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.cli._errors import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_USAGE, CliError
from rex.cli.ops import admin_settings, require
from rex.cli.output import JsonOption, print_json, print_table, time_field
from rex.db.engine import Database
from rex.errors import Conflict, Invalid, NotFound
from rex.ids import rfc3339
from rex.json_types import JsonObject
from rex.users import service as users
from rex.users.passwords import WeakPassword, check_strength, one_time_password
from rex.users.service import Role
from rex.workspaces import service as workspaces
from rex.workspaces.service import Workspace

users_app = typer.Typer(no_args_is_help=True, help="Console users (who signs in to /console).")


class RoleName(StrEnum):
    owner = "owner"
    member = "member"


async def _workspace(conn: AsyncConnection, slug: str) -> Workspace:
    if slug == workspaces.DEFAULT_SLUG:
        found, _ = await workspaces.ensure_default_workspace(conn)
        return found
    maybe = await workspaces.get_by_slug(conn, slug)
    if maybe is None:
        raise CliError(f"no workspace {slug!r} (create it: rex workspaces create {slug})")
    return maybe


def _read_password() -> str:
    line = sys.stdin.readline()
    password = line.rstrip("\r\n")
    try:
        check_strength(password)
    except WeakPassword as exc:
        raise CliError(f"--password-stdin: {exc}", EXIT_USAGE) from None
    return password


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="The user's email: what they sign in with.")],
    workspace: Annotated[
        str, typer.Option(help="Workspace slug the user joins.")
    ] = workspaces.DEFAULT_SLUG,
    role: Annotated[
        RoleName | None,
        typer.Option(
            help=(
                "owner (everything) or member (all but users, keys and workspace settings). "
                "Default: owner for a workspace's first user, member after."
            )
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from stdin instead of making one."
        ),
    ] = False,
) -> None:
    """Create a console user in a workspace, or add an existing user to another workspace.

    A new user's one-time password is printed alone on the last line (unless
    --password-stdin gives one)."""
    settings = admin_settings()
    require(settings)
    password = _read_password() if password_stdin else one_time_password()

    async def run() -> tuple[str, bool, bool, Role]:
        db = Database(settings.database_url, pool_size=1)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                found = await _workspace(conn, workspace)
                existing = await users.find_by_email(conn, email)
                if existing is None:
                    user_id, created = (await users.create(conn, email, password)).id, True
                else:
                    user_id, created = existing.id, False
                if role is not None:
                    chosen = Role(role.value)
                else:
                    owners = [r for _, r in await users.workspace_users(conn, found.id)]
                    chosen = Role.MEMBER if Role.OWNER in owners else Role.OWNER
                added = await users.add_membership(conn, user_id, found.id, chosen)
                return user_id, created, added, chosen
        except (Invalid, Conflict) as exc:
            raise CliError(exc.message, EXIT_USAGE) from None
        finally:
            await db.close()

    user_id, created, added, chosen = asyncio.run(run())
    shown = email.strip().lower()
    if not created:
        what = "added to" if added else "already in"
        typer.echo(
            f"User {shown} ({user_id}) exists: {what} workspace {workspace!r} as {chosen}. "
            "Their password is unchanged (rex users reset-password makes a new one)."
        )
        return
    typer.echo(f"Created user {shown} ({user_id}) in workspace {workspace!r} as {chosen}.")
    if password_stdin:
        typer.echo("The password is the one read from stdin.")
        return
    typer.echo("Their one-time password is shown only now (sign in at /console/login):")
    typer.echo(password)


USER_COLUMNS = [
    ("ID", lambda u: u["id"]),
    ("EMAIL", lambda u: u["email"]),
    ("WORKSPACES", lambda u: ", ".join(f"{m['slug']} ({m['role']})" for m in u["workspaces"])),
    ("CREATED", time_field("created_at")),
    ("LAST SIGN-IN", time_field("last_sign_in_at")),
]


@users_app.command("list")
def users_list(
    workspace: Annotated[str | None, typer.Option(help="Only this workspace's users.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List console users and their workspaces (never their passwords)."""
    settings = admin_settings()
    require(settings)

    async def run() -> list[JsonObject]:
        db = Database(settings.database_url, pool_size=1)
        try:
            await db.migrate()
            async with db.read() as conn:
                listed = await users.list_all(conn)
        finally:
            await db.close()
        return [
            {
                "id": user.id,
                "email": user.email,
                "workspaces": [{"slug": m.slug, "role": m.role.value} for m in members],
                "created_at": rfc3339(user.created_at),
                "last_sign_in_at": rfc3339(user.last_sign_in_at),
            }
            for user, members in listed
            if workspace is None or any(m.slug == workspace for m in members)
        ]

    found = asyncio.run(run())
    if as_json:
        print_json(found)
        return
    print_table(found, USER_COLUMNS, empty="No console users (rex users create EMAIL makes one).")


@users_app.command("reset-password")
def users_reset_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
) -> None:
    """Give a user a new one-time password (printed alone on the last line) and sign them out
    everywhere."""
    settings = admin_settings()
    require(settings)
    password = one_time_password()

    async def run() -> str:
        db = Database(settings.database_url, pool_size=1)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                row = await users.find_by_email(conn, email)
                if row is None:
                    raise CliError(f"no user with email {email.strip().lower()!r}", EXIT_NOT_FOUND)
                await users.set_password(conn, row.id, password)
                return str(row.id)
        finally:
            await db.close()

    user_id = asyncio.run(run())
    typer.echo(
        f"New password for {email.strip().lower()} ({user_id}); their sessions are signed out. "
        "It is shown only now:"
    )
    typer.echo(password)


async def _member_of(conn: AsyncConnection, email: str, slug: str) -> tuple[str, Workspace]:
    row = await users.find_by_email(conn, email)
    if row is None:
        raise CliError(f"no user with email {email.strip().lower()!r}", EXIT_NOT_FOUND)
    maybe = await workspaces.get_by_slug(conn, slug)
    if maybe is None:
        raise CliError(f"no workspace {slug!r}", EXIT_NOT_FOUND)
    return str(row.id), maybe


def _change_membership(email: str, workspace: str, role: Role | None) -> bool:
    """Set the user's role in the workspace (``role``) or remove them from it (``None``)."""
    settings = admin_settings()
    require(settings)

    async def run() -> bool:
        db = Database(settings.database_url, pool_size=1)
        try:
            await db.migrate()
            async with db.transaction() as conn:
                user_id, found = await _member_of(conn, email, workspace)
                if role is None:
                    await users.remove_membership(conn, user_id, found.id)
                    return True
                return await users.set_role(conn, user_id, found.id, role)
        except NotFound:
            raise CliError(
                f"{email.strip().lower()} is not in workspace {workspace!r}", EXIT_NOT_FOUND
            ) from None
        except Conflict as exc:
            raise CliError(exc.message, EXIT_ERROR) from None
        finally:
            await db.close()

    return asyncio.run(run())


@users_app.command("set-role")
def users_set_role(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    role: Annotated[RoleName, typer.Option(help="owner or member.")],
    workspace: Annotated[
        str, typer.Option(help="Workspace slug the user is in.")
    ] = workspaces.DEFAULT_SLUG,
) -> None:
    """Make a user owner or member of a workspace (never demotes its last owner)."""
    changed = _change_membership(email, workspace, Role(role.value))
    shown = email.strip().lower()
    what = "is now" if changed else "was already"
    typer.echo(f"{shown} {what} {role.value} of workspace {workspace!r}.")


@users_app.command("remove")
def users_remove(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    workspace: Annotated[
        str, typer.Option(help="Workspace slug to remove the user from.")
    ] = workspaces.DEFAULT_SLUG,
) -> None:
    """Remove a user from a workspace (never its last owner). Their account and other
    workspaces stay; their console sessions lose this workspace at their next request."""
    _change_membership(email, workspace, None)
    typer.echo(f"{email.strip().lower()} removed from workspace {workspace!r}.")
