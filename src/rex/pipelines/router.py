"""``/pipelines``: the stages deals move through."""

from __future__ import annotations

from fastapi import APIRouter, status

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject
from rex.pipelines import service
from rex.pipelines.schemas import PipelineCreate, PipelineEnvelope, PipelineList, PipelineUpdate

router = APIRouter(prefix="/pipelines", tags=["pipelines"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PipelineEnvelope)
async def create_pipeline(body: PipelineCreate, auth: AuthDep, db: DbDep) -> PipelineEnvelope:
    """Create a pipeline with its stages in board order."""
    async with db.transaction() as conn:
        pipeline = await service.create(conn, auth.workspace.id, body)
    return PipelineEnvelope(data=pipeline)


@router.get("", response_model=PipelineList)
async def list_pipelines(
    auth: AuthDep, db: DbDep, limit: LimitQuery = 20, cursor: CursorQuery = None
) -> PipelineList:
    """Pipelines, newest first (the default one is created with the workspace)."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn, auth.workspace.id, limit=limit, cursor=cursor
        )
    return PipelineList(data=data, next_cursor=next_cursor)


@router.get("/{pipeline_id}", response_model=PipelineEnvelope)
async def get_pipeline(pipeline_id: str, auth: AuthDep, db: DbDep) -> PipelineEnvelope:
    async with db.read() as conn:
        return PipelineEnvelope(data=await service.get(conn, auth.workspace.id, pipeline_id))


@router.patch("/{pipeline_id}", response_model=PipelineEnvelope)
async def update_pipeline(
    pipeline_id: str, body: PipelineUpdate, auth: AuthDep, db: DbDep
) -> PipelineEnvelope:
    """Rename it or replace its stages (409 if that would strand deals)."""
    async with db.transaction() as conn:
        pipeline = await service.update(conn, auth.workspace.id, pipeline_id, body)
    return PipelineEnvelope(data=pipeline)


@router.delete("/{pipeline_id}", response_model=Deleted)
async def delete_pipeline(pipeline_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """Delete an empty, non-default pipeline."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, pipeline_id)
    return Deleted(data=DeletedObject(id=pipeline_id, deleted=True))
