"""One value per scalar query parameter, on every route.

Starlette keeps every value of a repeated parameter and FastAPI reads the last one for a
parameter that takes one value, so ``GET /contacts?email=a&email=b`` would filter by ``b``
alone: a request that says two things, answered as if it said one. It is refused instead,
with a 422 naming the parameter, like any other bad input. Which parameters take one value
is read from each route's own definition (its parameters and those of its dependencies), so
a route added later is covered without a word.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from typing import Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from rex.errors import Invalid

_SEQUENCES = (list, tuple, set, frozenset, Sequence)
# Where a route keeps its scalar names once read (an APIRoute is not hashable, and a table
# keyed by id() would keep every app built in a process alive).
_CACHE = "_rex_scalar_query_names"


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter so annotated takes every value (``list[str] | None``...)."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return any(_takes_many(arg) for arg in get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, _SEQUENCES)


def _query_params(dependant: Dependant, depth: int = 0) -> Iterator[Any]:
    """The query parameters of ``dependant`` and of its dependencies (bounded in depth)."""
    yield from dependant.query_params
    if depth < 20:
        for sub in dependant.dependencies:
            yield from _query_params(sub, depth + 1)


def scalar_query_names(route: APIRoute) -> tuple[str, ...]:
    """The query parameters of ``route`` that take one value, as the client spells them."""
    names: tuple[str, ...] | None = getattr(route, _CACHE, None)
    if names is None:
        params = _query_params(route.dependant)
        names = tuple(
            dict.fromkeys(p.alias for p in params if not _takes_many(p.field_info.annotation))
        )
        setattr(route, _CACHE, names)
    return names


def _shown(values: list[str]) -> str:
    shown = ", ".join(repr(value[:40]) for value in values[:5])
    return shown + (", ..." if len(values) > 5 else "")


async def _one_value_per_scalar(request: Request) -> None:
    query = request.query_params
    if len(query) == len(query.multi_items()):
        return  # no name repeated: the usual case, at the cost of two len()
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    for name in scalar_query_names(route):
        values = query.getlist(name)
        if len(values) > 1:
            raise Invalid(
                name,
                f"{name} was sent {len(values)} times ({_shown(values)}); it takes one value.",
            )


# Mounted on every router of the app (after the API key check, where there is one).
ONE_VALUE_PER_SCALAR = Depends(_one_value_per_scalar)
