"""Webhook endpoints as the console lists them, with their health: success rate over 24 h,
last error, disabled reason (Home's failing and disabled endpoints, the Webhooks page).
SQLAlchemy Core, scoped to one workspace, the same on SQLite and PostgreSQL; windows found
through the ids as in ``rex.console.ops_queries``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.console.ops_queries import RECENT_TTL, TTLCache, id_floor
from rex.db.pagination import fetch_page
from rex.db.schema import attempts, deliveries, endpoints
from rex.outbox.records import EndpointKind


@dataclass(frozen=True)
class EndpointHealth:
    """One webhook endpoint as the console lists it."""

    id: str
    url: str
    description: str | None
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None
    attempts_24h: int = 0
    successes_24h: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        """Successful attempts over attempts, in the last 24 h (None without attempts)."""
        if not self.attempts_24h:
            return None
        return self.successes_24h / self.attempts_24h

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.failing_since is not None:
            return "failing"
        return "healthy"


def _health(row: Any) -> EndpointHealth:
    return EndpointHealth(
        id=row.id,
        url=row.url,
        description=row.description,
        events=list(row.events or []),
        enabled=bool(row.enabled),
        disabled_reason=row.disabled_reason,
        failing_since=row.failing_since,
        last_success_at=row.last_success_at,
    )


ENDPOINT_COLUMNS = (
    endpoints.c.id,
    endpoints.c.url,
    endpoints.c.description,
    endpoints.c.events,
    endpoints.c.enabled,
    endpoints.c.disabled_reason,
    endpoints.c.failing_since,
    endpoints.c.last_success_at,
)


async def _last_errors(conn: AsyncConnection, ids: list[str]) -> dict[str, Any]:
    """Each endpoint's newest failed attempt among its 50 newest deliveries (index order)."""
    success = sa.and_(attempts.c.status_code >= 200, attempts.c.status_code < 300)
    errors: dict[str, Any] = {}
    for endpoint_id in ids:
        # The newest failed attempt among the endpoint's newest deliveries (index order).
        recent = (
            sa.select(deliveries.c.id)
            .where(deliveries.c.endpoint_id == endpoint_id)
            .order_by(deliveries.c.id.desc())
            .limit(50)
            .scalar_subquery()
        )
        error = (
            await conn.execute(
                sa.select(attempts.c.at, attempts.c.status_code, attempts.c.error)
                .where(
                    attempts.c.delivery_id.in_(recent),
                    sa.or_(attempts.c.status_code.is_(None), ~success),
                )
                .order_by(attempts.c.at.desc())
                .limit(1)
            )
        ).first()
        if error is not None:
            errors[endpoint_id] = error
    return errors


async def with_health(
    conn: AsyncConnection,
    workspace_id: str,
    rows: Sequence[Any],
    *,
    now: datetime,
    cache: TTLCache | None = None,
) -> list[EndpointHealth]:
    """Endpoint rows with their attempts of the last 24 h counted (attempts of deliveries
    created in those 24 h) and their newest error. One query per page, not per endpoint."""
    found = [_health(row) for row in rows]
    if not found:
        return []
    since = now - timedelta(hours=24)
    ids = [h.id for h in found]
    success = sa.and_(attempts.c.status_code >= 200, attempts.c.status_code < 300)
    key = (workspace_id, "health", tuple(ids))
    counted: dict[str, tuple[int, int]] | None = cache.get(key) if cache is not None else None
    if counted is None:
        stats = await conn.execute(
            sa.select(
                deliveries.c.endpoint_id,
                sa.func.count().label("n"),
                sa.func.sum(sa.case((success, 1), else_=0)).label("ok"),
            )
            .select_from(attempts.join(deliveries, deliveries.c.id == attempts.c.delivery_id))
            .where(
                deliveries.c.workspace_id == workspace_id,
                deliveries.c.endpoint_id.in_(ids),
                deliveries.c.id >= id_floor("dlv", since),
                attempts.c.at >= since,
            )
            .group_by(deliveries.c.endpoint_id)
        )
        counted = {row.endpoint_id: (int(row.n), int(row.ok or 0)) for row in stats}
        if cache is not None:
            cache.put(key, counted, RECENT_TTL)
    errors = cache.get((*key, "errors")) if cache is not None else None
    if errors is None:
        errors = await _last_errors(conn, ids)
        if cache is not None:
            cache.put((*key, "errors"), errors, RECENT_TTL)
    result = []
    for health in found:
        n, ok = counted.get(health.id, (0, 0))
        error = errors.get(health.id)
        text = None
        if error is not None:
            text = error.error or f"HTTP {error.status_code}"
        result.append(
            EndpointHealth(
                **{
                    **health.__dict__,
                    "attempts_24h": n,
                    "successes_24h": ok,
                    "last_error": text,
                    "last_error_at": error.at if error is not None else None,
                }
            )
        )
    return result


async def endpoints_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    now: datetime,
    limit: int,
    cursor: str | None,
    cache: TTLCache | None = None,
) -> tuple[list[EndpointHealth], str | None]:
    """The workspace's webhook endpoints, newest first, with their health."""
    query = sa.select(*ENDPOINT_COLUMNS).where(
        endpoints.c.workspace_id == workspace_id,
        endpoints.c.kind == EndpointKind.WEBHOOK.value,
    )
    rows, next_cursor = await fetch_page(conn, query, endpoints.c.id, limit=limit, cursor=cursor)
    return await with_health(conn, workspace_id, rows, now=now, cache=cache), next_cursor


async def troubled_endpoints(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    now: datetime,
    limit: int = 20,
    cache: TTLCache | None = None,
) -> list[EndpointHealth]:
    """Disabled endpoints and those failing now (no success since their first failure),
    disabled first, then the longest failing."""
    rows = (
        await conn.execute(
            sa.select(*ENDPOINT_COLUMNS)
            .where(
                endpoints.c.workspace_id == workspace_id,
                endpoints.c.kind == EndpointKind.WEBHOOK.value,
                sa.or_(endpoints.c.enabled.is_(False), endpoints.c.failing_since.is_not(None)),
            )
            .order_by(endpoints.c.enabled, endpoints.c.failing_since, endpoints.c.id)
            .limit(limit)
        )
    ).all()
    return await with_health(conn, workspace_id, rows, now=now, cache=cache)
