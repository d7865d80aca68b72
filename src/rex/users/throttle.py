"""Failed sign-ins, counted per account and per client address in the database (so every
API process sees the same count). Past its limit within the window, an account or address
is refused until the lockout ends, whatever the password: guessing costs days, not seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.schema import sign_in_failures


@dataclass(frozen=True)
class ThrottlePolicy:
    max_per_account: int
    max_per_address: int
    window: timedelta


def scopes(email: str, address: str | None) -> list[tuple[str, str]]:
    """``(scope, kind)`` pairs a sign-in attempt counts against."""
    found = [(f"account:{email.strip().lower()[:320]}", "account")]
    if address:
        found.append((f"address:{address}", "address"))
    return found


async def locked_until(
    conn: AsyncConnection, email: str, address: str | None, now: datetime
) -> datetime | None:
    """When the account or the address may try again, if either is locked now."""
    names = [scope for scope, _ in scopes(email, address)]
    query = sa.select(sa.func.max(sign_in_failures.c.locked_until)).where(
        sign_in_failures.c.scope.in_(names), sign_in_failures.c.locked_until > now
    )
    until: datetime | None = (await conn.execute(query)).scalar()
    return until


async def record_failure(
    conn: AsyncConnection, email: str, address: str | None, policy: ThrottlePolicy, now: datetime
) -> None:
    # Forget counts whose window and lockout are both over (the table stays small).
    await conn.execute(
        sa.delete(sign_in_failures).where(
            sign_in_failures.c.window_started_at < now - policy.window,
            sa.or_(
                sign_in_failures.c.locked_until.is_(None), sign_in_failures.c.locked_until < now
            ),
        )
    )
    for scope, kind in scopes(email, address):
        limit = policy.max_per_account if kind == "account" else policy.max_per_address
        row = (
            await conn.execute(
                sa.select(sign_in_failures)
                .where(sign_in_failures.c.scope == scope)
                .with_for_update()
            )
        ).first()
        if row is None:
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        sa.insert(sign_in_failures).values(
                            scope=scope,
                            failures=1,
                            window_started_at=now,
                            locked_until=now + policy.window if limit <= 1 else None,
                        )
                    )
                continue
            except sa.exc.IntegrityError:  # another process counted the first one
                row = (
                    await conn.execute(
                        sa.select(sign_in_failures)
                        .where(sign_in_failures.c.scope == scope)
                        .with_for_update()
                    )
                ).one()
        if row.window_started_at <= now - policy.window:
            failures, started = 1, now
        else:
            failures, started = row.failures + 1, row.window_started_at
        await conn.execute(
            sa.update(sign_in_failures)
            .where(sign_in_failures.c.scope == scope)
            .values(
                failures=failures,
                window_started_at=started,
                locked_until=now + policy.window if failures >= limit else row.locked_until,
            )
        )


async def clear_account(conn: AsyncConnection, email: str) -> None:
    """A successful sign-in forgets the account's failures (not the address's)."""
    scope, _ = scopes(email, None)[0]
    await conn.execute(sa.delete(sign_in_failures).where(sign_in_failures.c.scope == scope))
