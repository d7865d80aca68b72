"""Pipelines: the default one every workspace has, and custom ones. Callers own the
transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.db.pagination import fetch_page
from rex.db.schema import deals, pipelines
from rex.errors import Conflict, Invalid, NotFound
from rex.ids import new_id, utcnow
from rex.pipelines.schemas import Pipeline, PipelineCreate, PipelineUpdate
from rex.states import DealStatus

DEFAULT_NAME = "Sales"
DEFAULT_STAGES: tuple[dict[str, str], ...] = (
    {"name": "lead", "status": "open"},
    {"name": "qualified", "status": "open"},
    {"name": "proposal", "status": "open"},
    {"name": "negotiation", "status": "open"},
    {"name": "won", "status": "won"},
    {"name": "lost", "status": "lost"},
)


def stage_status(pipeline: Pipeline, stage: str) -> DealStatus | None:
    """The status (open/won/lost) of ``stage`` in ``pipeline``, or None if it has no such
    stage."""
    for candidate in pipeline.stages:
        if candidate.name == stage:
            return DealStatus(candidate.status)
    return None


async def ensure_default(conn: AsyncConnection, workspace_id: str, now: datetime) -> Pipeline:
    """The workspace's default pipeline, created if missing.

    Safe when several API processes do it at once: the partial unique index
    ``uq_pipelines_default`` admits one default row per workspace, so the losers' INSERT ..
    ON CONFLICT DO NOTHING inserts nothing (on PostgreSQL it waits for the winner's commit
    first), and the SELECT after it finds the winner's row.
    """
    found = await _default_row(conn, workspace_id)
    if found is not None:
        return Pipeline.from_row(found)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(
        insert(pipelines)
        .values(
            id=new_id("pipe"),
            workspace_id=workspace_id,
            name=DEFAULT_NAME,
            is_default=True,
            stages=[dict(stage) for stage in DEFAULT_STAGES],
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["workspace_id"], index_where=pipelines.c.is_default)
    )
    row = await _default_row(conn, workspace_id)
    assert row is not None  # inserted above, or by a concurrent winner
    return Pipeline.from_row(row)


async def _default_row(conn: AsyncConnection, workspace_id: str) -> sa.Row[Any] | None:
    query = sa.select(pipelines).where(
        pipelines.c.workspace_id == workspace_id, pipelines.c.is_default.is_(True)
    )
    return (await conn.execute(query)).first()


async def _fetch_row(
    conn: AsyncConnection, workspace_id: str, pipeline_id: str, *, for_update: bool = False
) -> sa.Row[Any]:
    query = sa.select(pipelines).where(
        pipelines.c.workspace_id == workspace_id, pipelines.c.id == pipeline_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("pipeline", pipeline_id)
    return row


async def get(conn: AsyncConnection, workspace_id: str, pipeline_id: str) -> Pipeline:
    return Pipeline.from_row(await _fetch_row(conn, workspace_id, pipeline_id))


async def find(conn: AsyncConnection, workspace_id: str, pipeline_id: str) -> Pipeline | None:
    query = sa.select(pipelines).where(
        pipelines.c.workspace_id == workspace_id, pipelines.c.id == pipeline_id
    )
    row = (await conn.execute(query)).first()
    return Pipeline.from_row(row) if row is not None else None


async def list_page(
    conn: AsyncConnection, workspace_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Pipeline], str | None]:
    query = sa.select(pipelines).where(pipelines.c.workspace_id == workspace_id)
    rows, next_cursor = await fetch_page(conn, query, pipelines.c.id, limit=limit, cursor=cursor)
    return [Pipeline.from_row(row) for row in rows], next_cursor


async def create(conn: AsyncConnection, workspace_id: str, body: PipelineCreate) -> Pipeline:
    now = utcnow()
    row = (
        await conn.execute(
            sa.insert(pipelines)
            .values(
                id=new_id("pipe"),
                workspace_id=workspace_id,
                name=body.name,
                is_default=False,
                stages=[stage.model_dump() for stage in body.stages],
                created_at=now,
                updated_at=now,
            )
            .returning(pipelines)
        )
    ).one()
    return Pipeline.from_row(row)


async def _deals_per_stage(conn: AsyncConnection, pipeline_id: str) -> dict[str, int]:
    query = (
        sa.select(deals.c.stage, sa.func.count())
        .where(deals.c.pipeline_id == pipeline_id)
        .group_by(deals.c.stage)
    )
    return {row[0]: int(row[1]) for row in await conn.execute(query)}


async def update(
    conn: AsyncConnection, workspace_id: str, pipeline_id: str, body: PipelineUpdate
) -> Pipeline:
    before = Pipeline.from_row(await _fetch_row(conn, workspace_id, pipeline_id, for_update=True))
    old = before.data()
    changes = body.model_dump(exclude_unset=True)
    if body.stages is not None:  # exclude_unset would drop each stage's default status
        changes["stages"] = [stage.model_dump() for stage in body.stages]
    for field in ("name", "stages"):
        if field in changes and changes[field] is None:
            raise Invalid(field, f"{field} cannot be null.")
    if "stages" in changes:
        new = {stage["name"]: stage["status"] for stage in changes["stages"]}
        for stage, count in (await _deals_per_stage(conn, pipeline_id)).items():
            if stage not in new:
                raise Conflict(
                    f"{count} deal(s) are in stage {stage!r}; move them to another stage "
                    "before removing it.",
                    field="stages",
                )
            if new[stage] != stage_status(before, stage):
                raise Conflict(
                    f"{count} deal(s) are in stage {stage!r}; its status cannot change while "
                    "deals are in it (it would silently change theirs).",
                    field="stages",
                )
    changes = {key: value for key, value in changes.items() if old[key] != value}
    if not changes:
        return before
    row = (
        await conn.execute(
            sa.update(pipelines)
            .where(pipelines.c.id == pipeline_id)
            .values({**changes, "updated_at": utcnow()})
            .returning(pipelines)
        )
    ).one()
    return Pipeline.from_row(row)


async def delete(conn: AsyncConnection, workspace_id: str, pipeline_id: str) -> None:
    row = await _fetch_row(conn, workspace_id, pipeline_id, for_update=True)
    if row.is_default:
        raise Conflict("The default pipeline cannot be deleted.")
    in_use = sum((await _deals_per_stage(conn, pipeline_id)).values())
    if in_use:
        raise Conflict(f"{in_use} deal(s) are in this pipeline; move or delete them first.")
    await conn.execute(sa.delete(pipelines).where(pipelines.c.id == pipeline_id))
