"""Deals: a board per pipeline, one column per stage with its amounts summed; a card moves
by drag and drop or by its "Move to" form (which works without JavaScript). Either way the
move is the API's own update (``deal.stage_changed`` and its deliveries)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Form, Query, Request
from starlette.responses import RedirectResponse, Response

from rex.console.auth import RuntimeDep, ViewerDep, not_found
from rex.console.forms import parse
from rex.console.routing import console_router
from rex.console.templating import money, render
from rex.db.schema import contacts, deals, pipelines
from rex.deals import service as deals_service
from rex.deals.schemas import DealUpdate

router = console_router()

# Cards shown per column (newest first); the column's count and sums cover all its deals.
CARDS_PER_COLUMN = 50


@router.get("/deals")
async def board(
    request: Request,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    pipeline: Annotated[str | None, Query(max_length=40)] = None,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    workspace_id = viewer.workspace_id
    async with runtime.db.read() as conn:
        all_pipelines = (
            await conn.execute(
                sa.select(pipelines)
                .where(pipelines.c.workspace_id == workspace_id)
                .order_by(pipelines.c.is_default.desc(), pipelines.c.name)
                .limit(200)
            )
        ).all()
        if pipeline:
            current = next((p for p in all_pipelines if p.id == pipeline), None)
            if current is None:
                raise not_found()
        else:
            current = all_pipelines[0] if all_pipelines else None
        columns: list[dict[str, Any]] = []
        if current is not None:
            in_pipeline = (deals.c.workspace_id == workspace_id) & (
                deals.c.pipeline_id == current.id
            )
            totals: dict[str, list[tuple[str | None, int]]] = defaultdict(list)
            counts: dict[str, int] = defaultdict(int)
            for row in await conn.execute(
                sa.select(
                    deals.c.stage,
                    deals.c.currency,
                    sa.func.count().label("n"),
                    sa.func.sum(deals.c.amount).label("total"),
                )
                .where(in_pipeline)
                .group_by(deals.c.stage, deals.c.currency)
            ):
                counts[row.stage] += row.n
                if row.total is not None:
                    totals[row.stage].append((row.currency, int(row.total)))
            stage_names = [stage["name"] for stage in current.stages]
            for stage in current.stages:
                name = stage["name"]
                cards = (
                    await conn.execute(
                        sa.select(deals, contacts.c.email.label("contact_email"))
                        .outerjoin(contacts, contacts.c.id == deals.c.contact_id)
                        .where(in_pipeline, deals.c.stage == name)
                        .order_by(deals.c.id.desc())
                        .limit(CARDS_PER_COLUMN)
                    )
                ).all()
                columns.append(
                    {
                        "name": name,
                        "status": stage.get("status", "open"),
                        "count": counts.get(name, 0),
                        "sums": [
                            money(total, cur)
                            for cur, total in sorted(totals.get(name, []), key=lambda t: t[0] or "")
                        ],
                        "cards": cards,
                        "others": [s for s in stage_names if s != name],
                    }
                )
    return render(
        request,
        "deals.html",
        {
            "nav": "deals",
            "pipelines": [(p.id, p.name) for p in all_pipelines],
            "pipeline": current,
            "columns": columns,
            "notice": "Deal moved." if done == "moved" else None,
        },
    )


@router.post("/deals/{deal_id}/move")
async def move(
    request: Request,
    deal_id: str,
    viewer: ViewerDep,
    runtime: RuntimeDep,
    stage: Annotated[str, Form(max_length=64)],
) -> Response:
    """The same update as ``PATCH /deals/{id}`` with a stage: ``deal.stage_changed``."""
    body = parse(DealUpdate, {"stage": stage})
    async with runtime.db.transaction() as conn:
        deal = await deals_service.update(conn, viewer.workspace_id, deal_id, body)
    if request.headers.get("x-requested-with"):  # the board's drag and drop
        return Response(status_code=204)
    return RedirectResponse(
        f"/console/deals?pipeline={deal.pipeline_id}&done=moved#{deal.id}", status_code=303
    )
