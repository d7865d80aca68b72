"""The ``rex`` command.

Server side (``rex.cli.server``): ``serve``, ``worker``, ``migrate``, ``keys``,
``workspaces``, on the database. Client side, on the HTTP API with ``REX_URL`` and
``REX_API_KEY``: ``listen`` and ``trigger`` (developer tools) and the operator commands
``webhooks``, ``deliveries``, ``events``, ``contacts``.
"""

from rex.cli import operator
from rex.cli.listen import listen
from rex.cli.secrets import secrets_app
from rex.cli.server import app, main
from rex.cli.trigger import trigger

app.command()(listen)
app.command()(trigger)
app.add_typer(operator.webhooks_app, name="webhooks")
app.add_typer(operator.deliveries_app, name="deliveries")
app.add_typer(operator.events_app, name="events")
app.add_typer(operator.contacts_app, name="contacts")
app.add_typer(secrets_app, name="secrets")

__all__ = ["app", "main"]
