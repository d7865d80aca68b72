"""``/listen/sessions``: what `rex listen` talks to (forward events without a tunnel)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response, status
from sqlalchemy.exc import IntegrityError

from rex.api.deps import AuthDep, DbDep, SettingsDep
from rex.api.errors import ERROR_RESPONSES, ApiError
from rex.api.pagination import CursorQuery, LimitQuery
from rex.api.schemas import Deleted, DeletedObject, One
from rex.delivery.schemas import DeliveryEnvelope
from rex.ids import utcnow
from rex.json_types import JsonObject
from rex.listen import service
from rex.listen.schemas import (
    AttemptReport,
    SessionEnvelope,
    SessionList,
    SessionOpen,
    SessionOpenedEnvelope,
)
from rex.listen.stream import EventStream, ListenHub, SessionStreamer, Write
from rex.outbox.records import DeliveryData
from rex.runtime import runtime_of

# Error responses are declared per route: the stream's errors are JSON, not event streams.
router = APIRouter(prefix="/listen/sessions", tags=["listen"])

_STREAM_ERRORS: dict[int | str, JsonObject] = {
    status_code: {
        "description": ERROR_RESPONSES[status_code]["description"],
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/ErrorEnvelope"},
                "example": ERROR_RESPONSES[status_code]["content"]["application/json"]["example"],
            }
        },
    }
    for status_code in (401, 404, 422, 503)
}
_STREAM_ERRORS[429] = {
    "description": "Too many streams connected for this workspace (REX_MAX_STREAMS_PER_WORKSPACE)",
    "content": {
        "application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorEnvelope"},
            "example": {
                "error": {
                    "type": "rate_limited",
                    "message": "This workspace has the most rex listen streams connected at "
                    "once (REX_MAX_STREAMS_PER_WORKSPACE=10); stop one and retry.",
                    "field": None,
                }
            },
        }
    },
}


def _hub(request: Request) -> ListenHub:
    return runtime_of(request.app).listen_hub


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionOpenedEnvelope,
    responses={
        **ERROR_RESPONSES,
        200: {"model": SessionOpenedEnvelope, "description": "Session resumed"},
    },
)
async def open_session(
    body: SessionOpen, response: Response, auth: AuthDep, db: DbDep, settings: SettingsDep
) -> SessionOpenedEnvelope:
    """Open a session for this API key and local URL, or resume it (200) when one was seen
    within the grace period: same id, same secret, and the deliveries it missed still queued.
    The secret signs this session's deliveries; it is shown whenever the session is opened."""
    for attempt in (1, 2):
        try:
            async with db.transaction() as conn:
                session = await service.open_session(
                    conn,
                    workspace_id=auth.workspace.id,
                    api_key_id=auth.key_id,
                    body=body,
                    config=settings.listen,
                    now=utcnow(),
                )
            break
        except IntegrityError:
            # Another open of the same new session committed first; resume that one.
            if attempt == 2:
                raise
    if session.resumed:
        response.status_code = status.HTTP_200_OK
    return SessionOpenedEnvelope(data=session)


@router.get("", response_model=SessionList, responses=ERROR_RESPONSES)
async def list_sessions(
    auth: AuthDep,
    db: DbDep,
    settings: SettingsDep,
    limit: LimitQuery = 20,
    cursor: CursorQuery = None,
) -> SessionList:
    """This workspace's listen sessions, connected or within their grace period."""
    async with db.read() as conn:
        data, next_cursor = await service.list_page(
            conn, auth.workspace.id, settings.listen, utcnow(), limit=limit, cursor=cursor
        )
    return SessionList(data=data, next_cursor=next_cursor)


@router.get("/{session_id}", response_model=SessionEnvelope, responses=ERROR_RESPONSES)
async def get_session(
    session_id: str, auth: AuthDep, db: DbDep, settings: SettingsDep
) -> SessionEnvelope:
    async with db.read() as conn:
        session = await service.get(conn, auth.workspace.id, session_id, settings.listen, utcnow())
    return SessionEnvelope(data=session)


@router.delete("/{session_id}", response_model=Deleted, responses=ERROR_RESPONSES)
async def delete_session(session_id: str, auth: AuthDep, db: DbDep) -> Deleted:
    """End a session now; its queued deliveries are dropped and its secret stops signing."""
    async with db.transaction() as conn:
        await service.delete(conn, auth.workspace.id, session_id)
    return Deleted(data=DeletedObject(id=session_id, deleted=True))


@router.get(
    "/{session_id}/stream",
    status_code=status.HTTP_200_OK,
    response_class=EventStream,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    # One Server-Sent Event: `ready`, then a `delivery` per queued delivery
                    # (`data` is its JSON), with comments as keep-alives.
                    "schema": {
                        "type": "object",
                        "properties": {
                            "event": {"type": "string", "enum": ["ready", "delivery"]},
                            "data": {"type": "string"},
                            "id": {"type": "string"},
                            "retry": {"type": "integer"},
                        },
                    }
                }
            },
            "description": "The event stream",
        },
        **_STREAM_ERRORS,
    },
)
async def stream_session(
    session_id: str, request: Request, auth: AuthDep, db: DbDep, settings: SettingsDep
) -> EventStream:
    """Server-Sent Events for a connected `rex listen`: `ready` once, then one `delivery`
    per delivery (`{id, event_id, event, attempt, lease, headers, payload}`: post `payload`
    with `headers` to the local URL, then report to `POST .../results`), comment lines as
    keep-alives, and `superseded` or `gone` before the stream ends for good. Connecting
    replaces any other stream of the session."""
    async with db.read() as conn:
        await service.fetch(conn, auth.workspace.id, session_id)
    streamer = SessionStreamer(db, settings.listen, _hub(request), session_id)
    quota = runtime_of(request.app).stream_quota
    workspace_id = auth.workspace.id
    if not quota.acquire(workspace_id, settings.max_streams_per_workspace):
        raise ApiError(
            429,
            "This workspace has the most rex listen streams connected at once "
            f"(REX_MAX_STREAMS_PER_WORKSPACE={settings.max_streams_per_workspace}); "
            "stop one and retry.",
            headers={"Retry-After": "5"},
        )

    async def run(write: Write, disconnected: asyncio.Event) -> None:
        try:
            await streamer.run(write, disconnected)
        finally:
            quota.release(workspace_id)

    return EventStream(run)


@router.post("/{session_id}/results", response_model=DeliveryEnvelope, responses=ERROR_RESPONSES)
async def report_result(
    session_id: str,
    body: AttemptReport,
    request: Request,
    auth: AuthDep,
    db: DbDep,
    settings: SettingsDep,
) -> One[DeliveryData]:
    """Record the outcome of posting one streamed delivery to the local URL: a 2xx delivers
    it, anything else schedules a retry on the normal retry schedule."""
    async with db.transaction() as conn:
        delivery = await service.record_report(
            conn, auth.workspace.id, session_id, body, settings.listen, utcnow()
        )
    _hub(request).wake()  # room for one more in flight on this process's stream
    return {"data": delivery}


@router.post(
    "/{session_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryEnvelope,
    responses=ERROR_RESPONSES,
)
async def test_session(session_id: str, auth: AuthDep, db: DbDep) -> One[DeliveryData]:
    """Send a `webhook.test` event to this session now, whatever its event filter."""
    async with db.transaction() as conn:
        delivery = await service.send_test(conn, auth.workspace.id, session_id, utcnow())
    return {"data": delivery}
