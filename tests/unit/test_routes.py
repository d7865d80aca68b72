"""Authentication is structural: every route that reads the caller's key is mounted under
the one ``REQUIRES_API_KEY`` dependency, and only those routes are."""

from __future__ import annotations

from typing import Any

from rex.api.deps import authenticate
from rex.api.routes import api_operations
from rex.app import create_app
from rex.settings import Settings


def _reads_the_key(dependant: Any) -> bool:
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.call is authenticate:
            return True
        stack.extend(current.dependencies)
    return False


def test_every_route_that_reads_the_key_is_mounted_as_authenticated() -> None:
    app = create_app(Settings(_env_file=None, database_url="sqlite:///:memory:"))  # type: ignore[call-arg]
    operations = list(api_operations(app))
    authenticated = {op.path for op in operations if op.requires_api_key}
    for op in operations:
        # A handler taking AuthDep outside the group would skip idempotency and the
        # isolation test; a route in the group without it would be locked for no reason.
        assert op.requires_api_key == _reads_the_key(op.route.dependant), op.path
    assert "/capture" not in authenticated
    assert "/healthz" not in authenticated
    assert {"/contacts", "/deals/{deal_id}", "/webhooks", "/listen/sessions"} <= authenticated
