"""The app's HTTP operations as one flat list, whatever FastAPI version builds them.

API-wide behaviour (idempotency, OpenAPI additions, the isolation test) is applied to every
operation that takes an API key: the routes mounted under ``REQUIRES_API_KEY`` (see
``rex.api.deps.authenticated_routes``), including routes added to those routers later.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, routing

from rex.api.deps import REQUIRES_API_KEY


@dataclass(frozen=True)
class Operation:
    path: str  # the OpenAPI path, e.g. "/deals/{deal_id}"
    methods: frozenset[str]
    path_regex: re.Pattern[str]
    requires_api_key: bool
    route: routing.APIRoute


def api_operations(app: FastAPI) -> Iterator[Operation]:
    """Every ``APIRoute`` of ``app`` with its full path (router prefixes included)."""
    iter_contexts = getattr(routing, "iter_route_contexts", None)
    if iter_contexts is not None:  # FastAPI >= 0.160 keeps included routers un-flattened
        contexts: list[Any] = list(iter_contexts(app.routes))
    else:  # pragma: no cover - older FastAPI flattens them into app.routes
        contexts = list(app.routes)
    for context in contexts:
        original = getattr(context, "original_route", context)
        if not isinstance(original, routing.APIRoute):
            continue
        yield Operation(
            path=context.path_format,
            methods=frozenset(context.methods or ()),
            path_regex=context.path_regex,
            requires_api_key=any(dep is REQUIRES_API_KEY for dep in context.dependencies),
            route=original,
        )
