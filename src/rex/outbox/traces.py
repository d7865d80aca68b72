"""The trace context of recorded events (``event_traces``), for rex.tracing's links.

Written in the transaction that records the event, only when tracing is on; read by the
worker for the deliveries it claims. Deleted with the event (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex import tracing
from rex.db.schema import event_traces

_INSERT = sa.insert(event_traces)


async def remember(conn: AsyncConnection, event_id: str) -> None:
    """Store the current trace context with the event (no-op when tracing is off)."""
    traceparent = tracing.current_traceparent()
    if traceparent is not None:
        await conn.execute(_INSERT, {"event_id": event_id, "traceparent": traceparent})


async def traceparents(conn: AsyncConnection, event_ids: Sequence[str]) -> dict[str, str]:
    """``event_id -> traceparent`` for those of ``event_ids`` recorded while tracing."""
    if not event_ids:
        return {}
    rows = await conn.execute(
        sa.select(event_traces.c.event_id, event_traces.c.traceparent).where(
            event_traces.c.event_id.in_(sorted(set(event_ids)))
        )
    )
    return {row.event_id: row.traceparent for row in rows}
