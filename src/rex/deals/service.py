"""Deals: reads, writes, and the events each write emits. Callers own the transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rex.changes import Changes, changed_fields, merge_metadata
from rex.db.pagination import fetch_page
from rex.db.schema import contacts, deals, pipelines
from rex.deals.schemas import TRACKED, Deal, DealCreate, DealUpdate
from rex.errors import Invalid, NotFound
from rex.ids import new_id, utcnow
from rex.outbox.catalogue import EventType
from rex.outbox.events import record_event
from rex.pipelines import service as pipelines_service
from rex.pipelines.schemas import Pipeline
from rex.states import DealStatus


async def require_contact(conn: AsyncConnection, workspace_id: str, contact_id: str) -> None:
    """422 unless the contact exists in this workspace (another workspace's is "missing").

    FOR SHARE: a concurrent delete of that contact waits for this transaction (or finished
    first, and then the contact is missing), so the link never dangles.
    """
    query = (
        sa.select(contacts.c.id)
        .where(contacts.c.workspace_id == workspace_id, contacts.c.id == contact_id)
        .with_for_update(read=True)
    )
    if (await conn.execute(query)).first() is None:
        raise Invalid("contact_id", f"No contact with id {contact_id!r}.")


async def require_deal(conn: AsyncConnection, workspace_id: str, deal_id: str) -> None:
    """422 unless the deal exists in this workspace (see ``require_contact``)."""
    query = (
        sa.select(deals.c.id)
        .where(deals.c.workspace_id == workspace_id, deals.c.id == deal_id)
        .with_for_update(read=True)
    )
    if (await conn.execute(query)).first() is None:
        raise Invalid("deal_id", f"No deal with id {deal_id!r}.")


async def _pipeline(conn: AsyncConnection, workspace_id: str, pipeline_id: str) -> Pipeline:
    # FOR SHARE: a concurrent PATCH /pipelines that removes a stage waits for this deal to
    # commit and then sees it (409), or commits first and this deal sees the new stages.
    query = (
        sa.select(pipelines)
        .where(pipelines.c.workspace_id == workspace_id, pipelines.c.id == pipeline_id)
        .with_for_update(read=True)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        raise Invalid("pipeline_id", f"No pipeline with id {pipeline_id!r}.")
    return Pipeline.from_row(row)


def _status_of(pipeline: Pipeline, stage: str) -> DealStatus:
    status = pipelines_service.stage_status(pipeline, stage)
    if status is None:
        names = ", ".join(s.name for s in pipeline.stages)
        raise Invalid(
            "stage",
            f"{stage!r} is not a stage of pipeline {pipeline.name!r} (stages: {names}).",
        )
    return status


def _check_amount(deal: Changes) -> None:
    if deal["amount"] is not None and deal["currency"] is None:
        raise Invalid("currency", "currency is required when amount is set.")


async def _fetch_row(
    conn: AsyncConnection, workspace_id: str, deal_id: str, *, for_update: bool = False
) -> sa.Row[Any]:
    query = sa.select(deals).where(deals.c.workspace_id == workspace_id, deals.c.id == deal_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("deal", deal_id)
    return row


async def get(conn: AsyncConnection, workspace_id: str, deal_id: str) -> Deal:
    return Deal.from_row(await _fetch_row(conn, workspace_id, deal_id))


async def list_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    limit: int,
    cursor: str | None,
    stage: str | None = None,
    status: str | None = None,
    contact_id: str | None = None,
    pipeline_id: str | None = None,
) -> tuple[list[Deal], str | None]:
    query = sa.select(deals).where(deals.c.workspace_id == workspace_id)
    if stage is not None:
        query = query.where(deals.c.stage == stage)
    if status is not None:
        query = query.where(deals.c.status == status)
    if contact_id is not None:
        query = query.where(deals.c.contact_id == contact_id)
    if pipeline_id is not None:
        query = query.where(deals.c.pipeline_id == pipeline_id)
    rows, next_cursor = await fetch_page(conn, query, deals.c.id, limit=limit, cursor=cursor)
    return [Deal.from_row(row) for row in rows], next_cursor


async def create(conn: AsyncConnection, workspace_id: str, body: DealCreate) -> Deal:
    now = utcnow()
    if body.pipeline_id is not None:
        pipeline = await _pipeline(conn, workspace_id, body.pipeline_id)
    else:
        default = await pipelines_service.ensure_default(conn, workspace_id, now)
        pipeline = await _pipeline(conn, workspace_id, default.id)
    stage = body.stage if body.stage is not None else pipeline.stages[0].name
    status = _status_of(pipeline, stage)
    if body.contact_id is not None:
        await require_contact(conn, workspace_id, body.contact_id)
    values = {
        "id": new_id("deal"),
        "workspace_id": workspace_id,
        "name": body.name,
        "amount": body.amount,
        "currency": body.currency,
        "pipeline_id": pipeline.id,
        "stage": stage,
        "status": status,
        "expected_close_date": body.expected_close_date,
        "contact_id": body.contact_id,
        "metadata": body.metadata,
        "created_at": now,
        "updated_at": now,
    }
    _check_amount(values)
    row = (await conn.execute(sa.insert(deals).values(values).returning(deals))).one()
    deal = Deal.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.DEAL_CREATED,
        data=deal.data(),
        object_id=deal.id,
        now=now,
    )
    return deal


async def update(conn: AsyncConnection, workspace_id: str, deal_id: str, body: DealUpdate) -> Deal:
    row = await _fetch_row(conn, workspace_id, deal_id, for_update=True)
    stored = Deal.from_row(row)
    before = stored.data()
    changes = body.model_dump(exclude_unset=True)
    for field in ("name", "pipeline_id", "stage"):
        if field in changes and changes[field] is None:
            raise Invalid(field, f"{field} cannot be null.")
    if "expected_close_date" in changes and changes["expected_close_date"] is not None:
        changes["expected_close_date"] = changes["expected_close_date"].isoformat()
    if "metadata" in changes:
        changes["metadata"] = merge_metadata(stored.metadata, changes["metadata"])
    after = {**before, **changes}
    if after["pipeline_id"] != before["pipeline_id"] or after["stage"] != before["stage"]:
        pipeline = await _pipeline(conn, workspace_id, after["pipeline_id"])
        after["status"] = _status_of(pipeline, after["stage"])
    if after["contact_id"] is not None and after["contact_id"] != before["contact_id"]:
        await require_contact(conn, workspace_id, after["contact_id"])
    _check_amount(after)
    previous = changed_fields(before, after, TRACKED)
    if not previous:
        return stored
    now = utcnow()
    values: dict[str, Any] = {key: after[key] for key in previous}
    if values.get("expected_close_date") is not None:
        values["expected_close_date"] = body.expected_close_date
    row = (
        await conn.execute(
            sa.update(deals)
            .where(deals.c.id == deal_id)
            .values({**values, "updated_at": now})
            .returning(deals)
        )
    ).one()
    deal = Deal.from_row(row)
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.DEAL_UPDATED,
        data=deal.data(),
        object_id=deal_id,
        now=now,
        previous_attributes=previous,
    )
    if "stage" in previous or "pipeline_id" in previous:
        await record_event(
            conn,
            workspace_id=workspace_id,
            event_type=EventType.DEAL_STAGE_CHANGED,
            data=deal.data(),
            object_id=deal_id,
            now=now,
            extra={"from": before["stage"], "to": deal.stage},
        )
    return deal


async def delete(conn: AsyncConnection, workspace_id: str, deal_id: str) -> Deal:
    row = await _fetch_row(conn, workspace_id, deal_id, for_update=True)
    deal = Deal.from_row(row)
    await conn.execute(sa.delete(deals).where(deals.c.id == deal_id))
    await record_event(
        conn,
        workspace_id=workspace_id,
        event_type=EventType.DEAL_DELETED,
        data=deal.data(),
        object_id=deal_id,
        now=utcnow(),
    )
    return deal
