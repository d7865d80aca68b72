"""A workspace's own event types, and publishing their events.

``POST /event-types`` declares one (a lower-case dotted name, a description, and an optional
JSON Schema for its ``data``); ``POST /events`` publishes an event of it, validated against
that schema and recorded through the outbox exactly like the built-in events (same envelope,
same signatures, same retries). Subscriptions name these types like any other. Callers own
the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

import sqlalchemy as sa
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import event_types
from rex.errors import Conflict, Invalid, NotFound
from rex.events import service as events_service
from rex.events.webhooks import BUILTIN_DESCRIPTIONS
from rex.ids import is_id, new_id, rfc3339
from rex.json_types import JsonObject
from rex.outbox.catalogue import EVENT_TYPES, WILDCARD, is_custom_event_name
from rex.outbox.events import record_event

MAX_EVENT_TYPES = 500
"""Event types one workspace may declare (archived ones included)."""
# Names Rex uses for events of its own outside the subscribable catalogue.
_RESERVED = frozenset({"submission.accepted"})


class EventTypeData(TypedDict):
    """An event type as ``GET /event-types`` shows it (``rex.events.schemas.EventType``);
    the built-in ones have no id, schema or times."""

    id: str | None
    name: str
    description: str | None
    schema: JsonObject | None
    builtin: bool
    archived: bool
    created_at: str | None
    updated_at: str | None


def _serialize(row: Any) -> EventTypeData:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "schema": row.schema,
        "builtin": False,
        "archived": row.archived_at is not None,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def _builtin(name: str) -> EventTypeData:
    return {
        "id": None,
        "name": name,
        "description": BUILTIN_DESCRIPTIONS.get(name),
        "schema": None,
        "builtin": True,
        "archived": False,
        "created_at": None,
        "updated_at": None,
    }


def _local_refs_only(schema: Any, where: str = "schema") -> None:
    """Refuse ``$ref`` to anything but this schema itself: Rex fetches nothing at run time."""
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise Invalid(
                "schema", f"{where}: only references inside the schema ($ref: #/...) are allowed"
            )
        for key, value in schema.items():
            _local_refs_only(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            _local_refs_only(value, f"{where}[{index}]")


def check_schema(schema: JsonObject | None) -> None:
    """Is ``schema`` a valid JSON Schema (draft 2020-12 unless its ``$schema`` says)?"""
    if schema is None:
        return
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        path = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        raise Invalid("schema", f"not a valid JSON Schema: schema{path}: {exc.message}") from None
    _local_refs_only(schema)


def _data_errors(schema: JsonObject, data: Any) -> str | None:
    """What is wrong with ``data`` under ``schema`` (the first error, with its path)."""
    cls = validator_for(schema, default=Draft202012Validator)
    validator = cls(schema, registry=Registry())
    try:
        errors: Iterable[ValidationError] = sorted(
            validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message)
        )
        first = next(iter(errors), None)
    except Unresolvable as exc:
        return f"the type's schema has a reference that does not resolve: {exc}"
    if first is None:
        return None
    path = "data" + "".join(
        f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path
    )
    return f"{path}: {first.message}"


def check_name(name: str) -> None:
    if name in EVENT_TYPES or name in _RESERVED:
        raise Conflict(f"{name!r} is a built-in event type; choose another name.", field="name")
    if not is_custom_event_name(name):
        raise Invalid(
            "name",
            f"{name!r} is not an event type name: lower-case words joined by dots, like "
            "invoice.paid or trial.started (letters, digits and _, at most 64 characters)",
        )


async def _row(conn: AsyncConnection, workspace_id: str, name_or_id: str) -> Any:
    column = event_types.c.id if is_id(name_or_id, "et") else event_types.c.name
    return (
        await conn.execute(
            sa.select(event_types).where(
                event_types.c.workspace_id == workspace_id, column == name_or_id
            )
        )
    ).first()


async def create(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    name: str,
    description: str | None,
    schema: JsonObject | None,
    now: datetime,
) -> EventTypeData:
    """Declare an event type. Declaring an archived one again restores it, with the new
    description and schema; a live one is a conflict."""
    check_name(name)
    check_schema(schema)
    existing = await _row(conn, workspace_id, name)
    if existing is not None:
        if existing.archived_at is None:
            raise Conflict(f"The event type {name!r} exists already.", field="name")
        row = (
            await conn.execute(
                sa.update(event_types)
                .where(event_types.c.id == existing.id)
                .values(description=description, schema=schema, archived_at=None, updated_at=now)
                .returning(event_types)
            )
        ).one()
        return _serialize(row)
    count = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(event_types)
            .where(event_types.c.workspace_id == workspace_id)
        )
    ).scalar_one()
    if count >= MAX_EVENT_TYPES:
        raise Conflict(f"This workspace has {count} event types, the most it may have.")
    row = (
        await conn.execute(
            sa.insert(event_types)
            .values(
                id=new_id("et"),
                workspace_id=workspace_id,
                name=name,
                description=description,
                schema=schema,
                created_at=now,
                updated_at=now,
            )
            .returning(event_types)
        )
    ).one()
    return _serialize(row)


async def list_all(
    conn: AsyncConnection, workspace_id: str, *, include_archived: bool = False
) -> list[EventTypeData]:
    """The built-in types (``builtin: true``), then the workspace's own, by name."""
    query = (
        sa.select(event_types)
        .where(event_types.c.workspace_id == workspace_id)
        .order_by(event_types.c.name)
    )
    if not include_archived:
        query = query.where(event_types.c.archived_at.is_(None))
    own = [_serialize(row) for row in await conn.execute(query)]
    return [_builtin(name) for name in sorted(EVENT_TYPES)] + own


async def get(conn: AsyncConnection, workspace_id: str, name_or_id: str) -> EventTypeData:
    if name_or_id in EVENT_TYPES:
        return _builtin(name_or_id)
    row = await _row(conn, workspace_id, name_or_id)
    if row is None:
        raise NotFound("event type", name_or_id, message=f"No event type {name_or_id!r}.")
    return _serialize(row)


async def archive(
    conn: AsyncConnection, workspace_id: str, name_or_id: str, *, now: datetime
) -> EventTypeData:
    """Archive a type: it can no longer be published or newly subscribed to; its events,
    and the subscriptions that name it, stay."""
    if name_or_id in EVENT_TYPES:
        raise Conflict(f"{name_or_id!r} is a built-in event type; it cannot be deleted.")
    row = await _row(conn, workspace_id, name_or_id)
    if row is None:
        raise NotFound("event type", name_or_id, message=f"No event type {name_or_id!r}.")
    if row.archived_at is None:
        row = (
            await conn.execute(
                sa.update(event_types)
                .where(event_types.c.id == row.id)
                .values(archived_at=now, updated_at=now)
                .returning(event_types)
            )
        ).one()
    return _serialize(row)


async def check_known(conn: AsyncConnection, workspace_id: str, name: str) -> None:
    """``name`` is a built-in type or one the workspace declared (archived ones included:
    their events stay listed); else ``Invalid`` on ``type``."""
    if name in EVENT_TYPES:
        return
    found = (
        is_custom_event_name(name)
        and (
            await conn.execute(
                sa.select(event_types.c.id).where(
                    event_types.c.workspace_id == workspace_id, event_types.c.name == name
                )
            )
        ).first()
        is not None
    )
    if not found:
        raise Invalid(
            "type",
            f"unknown event type {name!r}; GET /event-types lists the built-in ones and yours",
        )


async def check_subscribable(
    conn: AsyncConnection, workspace_id: str, names: Iterable[str]
) -> None:
    """Every name a subscription gives is built in, ``*``, or a live type of the workspace."""
    own = sorted(set(names) - EVENT_TYPES - {WILDCARD})
    if not own:
        return
    found = set(
        (
            await conn.execute(
                sa.select(event_types.c.name).where(
                    event_types.c.workspace_id == workspace_id,
                    event_types.c.name.in_(own),
                    event_types.c.archived_at.is_(None),
                )
            )
        ).scalars()
    )
    unknown = [name for name in own if name not in found]
    if unknown:
        raise Invalid(
            "events",
            f"unknown event type(s) {', '.join(unknown)}: declare your own with "
            "POST /event-types first (GET /event-types lists them all)",
        )


async def publish(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    type: str,
    data: JsonObject,
    object_id: str | None,
    now: datetime,
) -> JsonObject:
    """Record an event of the workspace's own ``type`` (its data checked against the type's
    schema) and queue it for every subscribed endpoint; returns it with its deliveries."""
    if type in EVENT_TYPES or type in _RESERVED:
        raise Invalid(
            "type",
            f"{type!r} is a built-in event type: Rex emits it itself when the change happens. "
            "Publish your own types (POST /event-types).",
        )
    row = await _row(conn, workspace_id, type) if is_custom_event_name(type) else None
    if row is None:
        raise NotFound(
            "event type",
            type,
            message=f"No event type {type!r}: declare it with POST /event-types first.",
            field="type",
        )
    if row.archived_at is not None:
        raise Invalid("type", f"The event type {type!r} is archived; it cannot be published.")
    if row.schema is not None:
        problem = _data_errors(row.schema, data)
        if problem is not None:
            raise Invalid("data", f"data does not match the schema of {type}: {problem}")
    event_id = await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=row.name,
        data=data,
        object_id=object_id,
        now=now,
    )
    return await events_service.get(conn, workspace_id, event_id)
