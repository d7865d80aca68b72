"""``/workspace``: the settings of the calling key's own workspace."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.errors import Invalid
from rex.runtime import runtime_of
from rex.worker.ssrf import validate_endpoint_url
from rex.workspaces import service
from rex.workspaces.schemas import WorkspaceEnvelope, WorkspaceUpdate

router = APIRouter(prefix="/workspace", tags=["workspace"], responses=ERROR_RESPONSES)


@router.get("", response_model=WorkspaceEnvelope)
async def get_workspace(auth: AuthDep, db: DbDep) -> WorkspaceEnvelope:
    """This key's workspace: slug, name, and its capture settings."""
    async with db.read() as conn:
        workspace = await service.get_by_id(conn, auth.workspace.id)
    assert workspace is not None  # the key was just found through it
    return WorkspaceEnvelope(data=service.serialize(workspace))


@router.patch("", response_model=WorkspaceEnvelope)
async def update_workspace(
    body: WorkspaceUpdate, auth: AuthDep, db: DbDep, request: Request
) -> WorkspaceEnvelope:
    """Change the fields sent: `name`, `allowed_origins`, `redirect_url`, `capture_rate_limit`,
    `notify_emails`, `notify_slack_url`.

    Takes effect for the next capture (through another API process: within a second), and
    for the next operational alert.
    """
    if body.notify_slack_url:
        # The same destination rules as a webhook endpoint's URL (checked again at connect).
        problem = validate_endpoint_url(
            body.notify_slack_url, runtime_of(request.app).destination_policy
        )
        if problem:
            raise Invalid("notify_slack_url", problem)
    async with db.transaction() as conn:
        workspace = await service.update_settings(conn, auth.workspace.id, body)
    runtime_of(request.app).workspace_cache.clear()
    return WorkspaceEnvelope(data=service.serialize(workspace))
