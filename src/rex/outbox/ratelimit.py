"""The per-endpoint rate limit of a claim: the send slots a claim may hand out and the
endpoint's state (``rate_limited_until``) moved past the slots it took.

An endpoint's ``rate_limit`` (deliveries per second) holds across every worker: its state
is one column of the endpoint row, ``rate_limited_until``, and only the holder of the
endpoint's claim lock (FOR NO KEY UPDATE on PostgreSQL, the write lock on SQLite) reads
and moves it. A claim hands out send slots one interval (1 / rate_limit) apart, the first
no earlier than the previous claim's last slot + one interval, none further than
RATE_HORIZON ahead of now; each claimed delivery carries its slot (``send_at``) and the
sender waits for it. ``rate_limited_until`` is the next free slot minus RATE_HORIZON: the
time from which a claim may take a slot again (``next_due_at`` wakes workers then). So
slots never come closer than one interval, whichever worker takes them, and any second
holds at most ``rate_limit`` of them. Deliveries left over stay pending, due, and are
claimed when the endpoint has slots again. The horizon is short so that a sender stalled
past its slots (a paused process) has few of them in hand: they would go out late
together, up to rate_limit x RATE_HORIZON at once; a longer one would save claims.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import endpoints
from rex.db.types import UTCDateTime
from rex.outbox.records import ClaimedDelivery

RATE_HORIZON = timedelta(milliseconds=200)


_RATE_STATE = sa.select(
    endpoints.c.id, endpoints.c.rate_limit, endpoints.c.rate_limited_until
).where(endpoints.c.id.in_(sa.bindparam("endpoint_ids", expanding=True)))
_SET_RATE_STATE = (
    sa.update(endpoints)
    .where(endpoints.c.id == sa.bindparam("endpoint_id"))
    .values(rate_limited_until=sa.bindparam("until", type_=UTCDateTime()))
)


def rate_slots(
    rate_limit: int, limited_until: datetime | None, now: datetime, room: int
) -> tuple[datetime, int]:
    """The first send slot an endpoint may use now, and how many slots (at most ``room``)
    fall within the horizon."""
    interval = timedelta(seconds=1 / rate_limit)
    first = max(now, limited_until + RATE_HORIZON) if limited_until is not None else now
    horizon = now + RATE_HORIZON
    slots = 0
    while slots < room and first + slots * interval < horizon:
        slots += 1
    return first, slots


async def rate_room(
    conn: AsyncConnection, limited: list[str], now: datetime, room: dict[str, int]
) -> dict[str, tuple[datetime, timedelta]]:
    """Cut ``room`` to the rate-limited endpoints' free slots; their first slot and
    interval. A new statement, after the lock: it reads the state the previous lock holder
    committed (READ COMMITTED), as the lease count does."""
    schedule: dict[str, tuple[datetime, timedelta]] = {}
    for row in await conn.execute(_RATE_STATE, {"endpoint_ids": limited}):
        if row.rate_limit is None or row.id not in room:
            continue
        first, slots = rate_slots(row.rate_limit, row.rate_limited_until, now, room[row.id])
        room[row.id] = slots
        schedule[row.id] = (first, timedelta(seconds=1 / row.rate_limit))
    return schedule


async def take_rate_slots(
    conn: AsyncConnection,
    schedule: dict[str, tuple[datetime, timedelta]],
    claimed: list[ClaimedDelivery],
) -> list[ClaimedDelivery]:
    """Give each claimed delivery of a rate-limited endpoint its slot, in claim order, and
    move the endpoints' state past the slots taken."""
    taken: dict[str, int] = {}
    timed = []
    for delivery in claimed:
        if delivery.endpoint_id not in schedule:
            timed.append(delivery)
            continue
        first, interval = schedule[delivery.endpoint_id]
        n = taken.get(delivery.endpoint_id, 0)
        taken[delivery.endpoint_id] = n + 1
        timed.append(dataclasses.replace(delivery, send_at=first + n * interval))
    for endpoint_id, count in taken.items():
        first, interval = schedule[endpoint_id]
        next_slot = first + count * interval
        await conn.execute(
            _SET_RATE_STATE, {"endpoint_id": endpoint_id, "until": next_slot - RATE_HORIZON}
        )
    return timed
