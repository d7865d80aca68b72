"""Idempotency keys: claim a key before running a POST, store its response after.

A row is one ``(workspace_id, key)``. ``response_status = 0`` marks a request still in flight;
otherwise the row holds the response to replay. Rows live 24 hours.

Why a claim is safe under concurrency: the claim is ``INSERT .. ON CONFLICT DO NOTHING`` on the
primary key, committed on its own before the request runs. Of concurrent requests with one key
exactly one inserts; on PostgreSQL the others' INSERT waits on the uncommitted index entry
until that commit, then does nothing and reads the winner's row (in flight: 409). On SQLite
write transactions are serialised outright (``BEGIN IMMEDIATE``), so the same holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import idempotency_keys

TTL = timedelta(hours=24)
# A request still "in flight" after this long died with its process; its key may be reused.
STALE_AFTER = timedelta(minutes=5)
IN_FLIGHT = 0


class ClaimOutcome(StrEnum):
    OWNED = "owned"  # run the request, then complete() or release()
    REPLAY = "replay"  # answer with the stored response
    MISMATCH = "mismatch"  # same key, different request
    IN_FLIGHT = "in_flight"  # the first request with this key has not finished


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    claimed_at: datetime | None = None  # OWNED: the token complete()/release() match on
    status: int | None = None  # REPLAY
    body: str | None = None  # REPLAY


async def claim(
    conn: AsyncConnection, *, workspace_id: str, key: str, request_hash: str, now: datetime
) -> Claim:
    table = idempotency_keys
    # Expired keys (and this key if its request died long ago) are forgotten first, so the
    # INSERT below can take them over. Range delete on (workspace_id, created_at).
    await conn.execute(
        sa.delete(table).where(
            table.c.workspace_id == workspace_id,
            sa.or_(
                table.c.created_at < now - TTL,
                sa.and_(
                    table.c.key == key,
                    table.c.response_status == IN_FLIGHT,
                    table.c.created_at < now - STALE_AFTER,
                ),
            ),
        )
    )
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    inserted = (
        await conn.execute(
            insert(table)
            .values(
                workspace_id=workspace_id,
                key=key,
                request_hash=request_hash,
                response_status=IN_FLIGHT,
                response_body="",
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "key"])
            .returning(table.c.key)
        )
    ).first()
    if inserted is not None:
        return Claim(ClaimOutcome.OWNED, claimed_at=now)
    row = (
        await conn.execute(
            sa.select(table).where(table.c.workspace_id == workspace_id, table.c.key == key)
        )
    ).one()
    if row.request_hash != request_hash:
        return Claim(ClaimOutcome.MISMATCH)
    if row.response_status == IN_FLIGHT:
        return Claim(ClaimOutcome.IN_FLIGHT)
    return Claim(ClaimOutcome.REPLAY, status=row.response_status, body=row.response_body)


def _owned(workspace_id: str, key: str, claimed_at: datetime) -> sa.ColumnElement[bool]:
    table = idempotency_keys
    return sa.and_(
        table.c.workspace_id == workspace_id,
        table.c.key == key,
        table.c.response_status == IN_FLIGHT,
        table.c.created_at == claimed_at,
    )


async def complete(
    conn: AsyncConnection,
    *,
    workspace_id: str,
    key: str,
    claimed_at: datetime,
    status: int,
    body: str,
) -> None:
    """Store the response of the request that owns the claim."""
    await conn.execute(
        sa.update(idempotency_keys)
        .where(_owned(workspace_id, key, claimed_at))
        .values(response_status=status, response_body=body)
    )


async def release(
    conn: AsyncConnection, *, workspace_id: str, key: str, claimed_at: datetime
) -> None:
    """Forget a claim whose request failed (5xx), so a retry runs it again."""
    await conn.execute(sa.delete(idempotency_keys).where(_owned(workspace_id, key, claimed_at)))
