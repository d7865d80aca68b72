"""``POST /capture`` (no API key: the workspace comes from the request's host)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.api.deps import DbDep, SettingsDep
from rex.api.errors import ERROR_RESPONSES, ApiError
from rex.api.openapi import component_ref
from rex.capture import service
from rex.capture.schemas import CaptureIn
from rex.contacts.schemas import ContactEnvelope
from rex.ids import utcnow
from rex.settings import Settings
from rex.workspaces import service as workspaces
from rex.workspaces.service import Workspace

router = APIRouter(tags=["capture"], responses=ERROR_RESPONSES)


async def resolve_workspace(
    conn: AsyncConnection, host: str | None, settings: Settings
) -> Workspace:
    """``acme.<REX_BASE_DOMAIN>`` -> workspace ``acme``; otherwise the default workspace."""
    hostname = (host or "").split(":", 1)[0].strip().lower().rstrip(".")
    base = (settings.base_domain or "").lower().strip(".")
    if base and hostname.endswith("." + base):
        slug = hostname[: -len(base) - 1]
        workspace = await workspaces.get_by_slug(conn, slug) if "." not in slug else None
        if workspace is None:
            raise ApiError(404, f"No workspace for host {hostname!r}.")
        return workspace
    workspace = await workspaces.get_by_slug(conn, workspaces.DEFAULT_SLUG)
    if workspace is None:
        raise ApiError(404, "This install has no default workspace for /capture.")
    return workspace


async def _parse_lead(request: Request) -> CaptureIn:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise ApiError(415, "Send the lead as JSON (Content-Type: application/json).")
    try:
        return CaptureIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.post(
    "/capture",
    status_code=201,
    response_model=ContactEnvelope,
    responses={200: {"model": ContactEnvelope, "description": "Existing contact updated"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": component_ref(CaptureIn)}},
        }
    },
)
async def capture_lead(request: Request, db: DbDep, settings: SettingsDep) -> Any:
    """Create or update a contact from a lead (upsert by email). 201 created, 200 updated."""
    lead = await _parse_lead(request)
    client_ip = request.client.host if request.client else None
    async with db.transaction() as conn:
        workspace = await resolve_workspace(conn, request.headers.get("host"), settings)
        contact, created = await service.capture(
            conn, workspace.id, lead, now=utcnow(), client_ip=client_ip
        )
    return JSONResponse({"data": contact}, status_code=201 if created else 200)
