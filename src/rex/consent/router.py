"""``/contacts/{id}/consent``: the history, and the authenticated way to grant or revoke."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rex.api.deps import AuthDep, DbDep
from rex.api.errors import ERROR_RESPONSES
from rex.consent import service
from rex.consent.schemas import ConsentChange, ConsentHistory
from rex.contacts import service as contacts_service
from rex.contacts.schemas import ContactEnvelope
from rex.ids import utcnow
from rex.runtime import runtime_of

router = APIRouter(prefix="/contacts", tags=["contacts"], responses=ERROR_RESPONSES)


@router.get("/{contact_id}/consent", response_model=ConsentHistory)
async def consent_history(contact_id: str, auth: AuthDep, db: DbDep) -> ConsentHistory:
    """Every consent answer of the contact, oldest first (`via`: `capture` or `api`)."""
    async with db.read() as conn:
        await contacts_service.get(conn, auth.workspace.id, contact_id)
        return ConsentHistory(data=await service.history(conn, auth.workspace.id, contact_id))


@router.post("/{contact_id}/consent", response_model=ContactEnvelope)
async def record_consent(
    contact_id: str, body: ConsentChange, request: Request, auth: AuthDep, db: DbDep
) -> ContactEnvelope:
    """Record a grant or a revocation (the only way to revoke: `/capture` may only grant).

    Appends to the history and sets the contact's `consent`; emits `contact.updated`."""
    trust = runtime_of(request.app).proxy_trust
    address = trust.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
    )
    ip = str(address) if address is not None else None
    now = utcnow()
    workspace_id = auth.workspace.id
    async with db.transaction() as conn:
        before = await contacts_service.get(conn, workspace_id, contact_id)
        await service.append(
            conn, workspace_id, contact_id, granted=body.granted, text=body.text, ip=ip,
            via="api", now=now,
        )  # fmt: skip
        consent = service.as_consent(body.granted, body.text, now, ip)
        contact = await contacts_service.apply_changes(
            conn, workspace_id, before, {"consent": consent}
        )
    return ContactEnvelope(data=contact)
