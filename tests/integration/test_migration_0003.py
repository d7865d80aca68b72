"""Migration 0003 gives every existing workspace its default pipeline, once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rex.db.engine import MIGRATIONS, Database
from rex.db.schema import workspaces
from rex.ids import new_id, utcnow
from tests.support import (
    POSTGRES_SKIP_REASON,
    POSTGRES_URL,
    missing,
    run,
    sql,
    temporary_postgres_database,
)


def _upgrade(connection: sa.Connection, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, target)


_WORKSPACES_0001 = sa.table(
    "workspaces",
    *(
        sa.column(name, workspaces.c[name].type)
        for name in ("id", "slug", "name", "allowed_origins", "created_at", "updated_at")
    ),
)


async def _old_install_with_two_workspaces(url: str) -> None:
    db = Database(url, pool_size=1)
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_upgrade, "0001")
            now = utcnow()
            for slug in ("default", "acme"):
                # The columns of 0001 only: today's Table has more, with defaults of its own.
                await conn.execute(
                    sa.insert(_WORKSPACES_0001).values(
                        id=new_id("ws"),
                        slug=slug,
                        name=slug,
                        allowed_origins=[],
                        created_at=now,
                        updated_at=now,
                    )
                )
            await conn.commit()
        await db.migrate()
        await db.migrate()  # idempotent
    finally:
        await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    if not POSTGRES_URL:
        missing(POSTGRES_SKIP_REASON)
    with temporary_postgres_database(POSTGRES_URL) as url:
        yield url


def test_existing_workspaces_get_one_default_pipeline(fresh_database_url: str) -> None:
    run(_old_install_with_two_workspaces(fresh_database_url))
    rows = sql(
        fresh_database_url,
        "SELECT w.slug, p.name, p.stages FROM pipelines p JOIN workspaces w "
        "ON w.id = p.workspace_id WHERE p.is_default ORDER BY w.slug",
    )
    assert [(row.slug, row.name) for row in rows] == [("acme", "Sales"), ("default", "Sales")]
    stages = rows[0].stages
    stages = json.loads(stages) if isinstance(stages, str) else stages
    assert [s["name"] for s in stages] == [
        "lead", "qualified", "proposal", "negotiation", "won", "lost",
    ]  # fmt: skip
    # The partial unique index now refuses a second default pipeline.
    with pytest.raises(sa.exc.IntegrityError):
        sql(
            fresh_database_url,
            "INSERT INTO pipelines (id, workspace_id, name, is_default, stages, created_at, "
            "updated_at) SELECT 'pipe_x', workspace_id, 'Dup', is_default, stages, created_at, "
            "updated_at FROM pipelines WHERE is_default LIMIT 1",
        )
