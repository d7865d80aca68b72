"""``/submissions``: the inbox of everything posted to a capture URL (accepted, spam,
rejected), and ``reprocess`` to apply a form's current mapping again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import One, Page
from rex.capture.reprocess import reprocess
from rex.submissions import service
from rex.submissions.schemas import SubmissionEnvelope, SubmissionList, SubmissionStatusName
from rex.submissions.service import SubmissionData
from rex.validation import UtcTime

router = APIRouter(prefix="/submissions", tags=["submissions"], responses=ERROR_RESPONSES)


@router.get("", response_model=SubmissionList)
async def list_submissions(
    auth: AuthDep,
    db: DbDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
    status: Annotated[SubmissionStatusName | None, Query(description="Only this status.")] = None,
    form_id: Annotated[
        str | None, Query(max_length=40, description="Only this form's submissions.")
    ] = None,
    since: Annotated[UtcTime | None, Query(description="Received at or after this time.")] = None,
) -> Page[SubmissionData]:
    """Submissions, newest first."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn,
            auth.workspace.id,
            limit=limit,
            cursor=cursor,
            status=status,
            form_id=form_id,
            since=since,
        )
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{submission_id}", response_model=SubmissionEnvelope)
async def get_submission(submission_id: str, auth: AuthDep, db: DbDep) -> One[SubmissionData]:
    """One submission: the fields and raw body received, why it was refused, its contact."""
    async with db.read() as conn:
        return {"data": await service.get(conn, auth.workspace.id, submission_id)}


@router.post("/{submission_id}/reprocess", response_model=SubmissionEnvelope)
async def reprocess_submission(submission_id: str, auth: AuthDep, db: DbDep) -> One[SubmissionData]:
    """Apply the form's current `field_map` and recognition to a spam or rejected submission
    again; when a lead is now found it is captured (events and new-lead email as usual)."""
    async with db.transaction() as conn:
        return {"data": await reprocess(conn, auth.workspace.id, submission_id)}
