"""Leads: contacts newest first (search, filters, new ones appear by themselves) and the
submissions inbox (spam and rejected posts to capture URLs, with "Reprocess")."""

from __future__ import annotations

import re
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Query, Request
from starlette.responses import RedirectResponse, Response

from rex.capture.reprocess import reprocess
from rex.console.auth import RuntimeDep, ViewerDep
from rex.console.paging import SEARCH_WINDOW, distinct_values, fetch, search_floor
from rex.console.routing import console_router
from rex.console.templating import render
from rex.db.schema import contacts, forms, submissions
from rex.submissions.service import SubmissionStatus, serialize

router = console_router()

_ID = re.compile(r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$")
Text = Annotated[str | None, Query(max_length=200)]
# The newest rows the live list adds at once (more: the page says to reload).
FRESH_LIMIT = 50


def _contact_query(
    workspace_id: str, q: str | None, stage: str | None, source: str | None, form: str | None
) -> sa.Select[Any]:
    query = sa.select(contacts).where(contacts.c.workspace_id == workspace_id)
    if q and q.strip():
        needle = q.strip().lower()
        full_name = sa.func.lower(
            sa.func.coalesce(contacts.c.first_name, "")
            + " "
            + sa.func.coalesce(contacts.c.last_name, "")
        )
        query = query.where(
            sa.or_(
                contacts.c.email.contains(needle, autoescape=True),
                full_name.contains(needle, autoescape=True),
            )
        )
    if stage:
        query = query.where(contacts.c.stage == stage)
    if source:
        query = query.where(contacts.c.source == source)
    if form:
        query = query.where(
            contacts.c.id.in_(
                sa.select(submissions.c.contact_id).where(
                    submissions.c.workspace_id == workspace_id,
                    submissions.c.form_id == form,
                    submissions.c.contact_id.is_not(None),
                )
            )
        )
    return query


def lead_row(row: sa.Row[Any]) -> dict[str, Any]:
    first_touch = row.first_touch if isinstance(row.first_touch, dict) else {}
    name = " ".join(part for part in (row.first_name, row.last_name) if part)
    return {
        "id": row.id,
        "email": row.email,
        "name": name,
        "company": row.company,
        "stage": row.stage,
        "source": row.source,
        "campaign": first_touch.get("utm_campaign"),
        "created_at": row.created_at,
    }


async def _filter_options(conn: Any, workspace_id: str) -> dict[str, Any]:
    stages = await distinct_values(conn, contacts.c.stage, workspace_id)
    sources = await distinct_values(conn, contacts.c.source, workspace_id)
    form_rows = await conn.execute(
        sa.select(forms.c.id, forms.c.name)
        .where(forms.c.workspace_id == workspace_id)
        .order_by(forms.c.name)
        .limit(200)
    )
    return {
        "stages": [(value, value) for value in stages],
        "sources": [(value, value) for value in sources],
        "forms": [(r.id, r.name) for r in form_rows],
    }


@router.get("/leads")
async def leads(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    q: Text = None,
    stage: Text = None,
    source: Text = None,
    form: Text = None,
    cursor: Text = None,
) -> Response:
    async with runtime.db.read() as conn:
        query = _contact_query(viewer.workspace_id, q, stage, source, form)
        # A substring search has no index: it reads a bounded window of contacts a page.
        floor = None
        if q and q.strip():
            floor = await search_floor(conn, contacts.c.id, viewer.workspace_id, cursor)
        page = await fetch(conn, query, contacts.c.id, cursor=cursor, convert=lead_row, floor=floor)
        options = await _filter_options(conn, viewer.workspace_id)
    filters = {"q": q or "", "stage": stage or "", "source": source or "", "form": form or ""}
    live = request.url.path + "/fresh"
    live_query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return render(
        request,
        "leads.html",
        {
            "nav": "leads",
            "tab": "contacts",
            "page": page,
            "filters": filters,
            "options": options,
            "search_window": SEARCH_WINDOW,
            # Only the first page grows by itself (later pages are a fixed window).
            "live_url": None if page.cursor else f"{live}?{live_query}",
            "newest": page.items[0]["id"] if page.items else "",
        },
    )


@router.get("/leads/fresh")
async def fresh_leads(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    after: Text = None,
    q: Text = None,
    stage: Text = None,
    source: Text = None,
    form: Text = None,
) -> Response:
    """The rows of leads newer than ``after`` (an HTML fragment the Leads page polls for)."""
    items: list[dict[str, Any]] = []
    query = _contact_query(viewer.workspace_id, q, stage, source, form)
    if after and _ID.match(after):
        query = query.where(contacts.c.id > after)
    elif after:
        query = query.where(sa.false())
    async with runtime.db.read() as conn:
        rows = await conn.execute(query.order_by(contacts.c.id.desc()).limit(FRESH_LIMIT))
        items = [lead_row(row) for row in rows]
    return render(request, "leads_rows.html", {"items": items})


INBOX_STATUSES = (SubmissionStatus.SPAM.value, SubmissionStatus.REJECTED.value)
REPROCESS_NOTICES = {
    "accepted": "Reprocessed: the submission is now accepted and its lead captured.",
    "spam": "Reprocessed: the submission is still spam.",
    "rejected": "Reprocessed: the submission is still rejected.",
}


@router.get("/leads/inbox")
async def inbox(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    status: Text = None,
    form: Text = None,
    cursor: Text = None,
    done: Text = None,
) -> Response:
    query = sa.select(submissions).where(submissions.c.workspace_id == viewer.workspace_id)
    if status in INBOX_STATUSES:
        query = query.where(submissions.c.status == status)
    else:
        query = query.where(submissions.c.status.in_(INBOX_STATUSES))
    if form:
        query = query.where(submissions.c.form_id == form)
    async with runtime.db.read() as conn:
        page = await fetch(conn, query, submissions.c.id, cursor=cursor, convert=serialize)
        form_rows = await conn.execute(
            sa.select(forms.c.id, forms.c.name)
            .where(forms.c.workspace_id == viewer.workspace_id)
            .order_by(forms.c.name)
            .limit(200)
        )
        form_names = {r.id: r.name for r in form_rows}
    return render(
        request,
        "inbox.html",
        {
            "nav": "leads",
            "tab": "inbox",
            "page": page,
            "status": status if status in INBOX_STATUSES else "",
            "form": form or "",
            "forms": form_names,
            "notice": REPROCESS_NOTICES.get(done or ""),
        },
    )


@router.post("/leads/inbox/{submission_id}/reprocess")
async def reprocess_submission(
    submission_id: str, viewer: ViewerDep, runtime: RuntimeDep
) -> Response:
    """The same reprocessing as ``POST /submissions/{id}/reprocess``."""
    async with runtime.db.transaction() as conn:
        result = await reprocess(conn, viewer.workspace_id, submission_id)
    return RedirectResponse(f"/console/leads/inbox?done={result['status']}", status_code=303)
