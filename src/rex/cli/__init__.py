"""The ``rex`` command.

Server side (``rex.cli.server``): ``serve``, ``worker``, ``migrate``, ``keys``,
``workspaces``, ``users``, on the database. Client side, on the HTTP API with ``REX_URL`` and
``REX_API_KEY``: ``listen`` and ``trigger`` (developer tools) and the operator commands
``webhooks``, ``deliveries``, ``events``, ``contacts``.
"""

from rex.cli import operator, ops, server
from rex.cli.listen import listen
from rex.cli.secrets import secrets_app
from rex.cli.server import app, main
from rex.cli.trigger import trigger
from rex.cli.users import users_app

app.command()(listen)
app.command()(trigger)
app.add_typer(operator.webhooks_app, name="webhooks")
app.add_typer(operator.deliveries_app, name="deliveries")
app.add_typer(operator.events_app, name="events")
app.add_typer(operator.contacts_app, name="contacts")
app.add_typer(secrets_app, name="secrets")
# Operations (rex.cli.ops): global options, status, backup, keys list/revoke, more clients.
app.callback()(ops.global_options)
app.command()(ops.status)
app.command()(ops.backup)
server.keys_app.command("list")(ops.keys_list)
server.keys_app.command("revoke")(ops.keys_revoke)
operator.webhooks_app.command("get")(ops.webhooks_get)
operator.webhooks_app.command("rotate-secret")(ops.webhooks_rotate_secret)
app.add_typer(ops.workspace_app, name="workspace")
app.add_typer(users_app, name="users")

__all__ = ["app", "main"]
