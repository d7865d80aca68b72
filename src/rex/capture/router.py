"""``POST /capture`` (no API key: the workspace comes from the request's host), its CORS
preflight, the built-in thank-you page and the embed script."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from rex.api.deps import DbDep, SettingsDep
from rex.api.errors import ErrorEnvelope, api_error_for, error_response
from rex.api.openapi import component_ref
from rex.capture import captcha, intake, service
from rex.capture.body import (
    BodyKind,
    ParsedCapture,
    body_kind,
    parse_capture,
    read_body,
)
from rex.capture.intake import Decision, Received, decide
from rex.capture.pages import link_back, not_sent_page, success_page
from rex.capture.responses import (
    THANK_YOU_PATH,
    CaptureEnvelope,
    capture_answer,
    cors_headers,
    error_answer,
    json_answer,
    preflight_headers,
    thank_you_page,
    wants_html,
    wants_json,
)
from rex.capture.schemas import CAPTURE_FORM_SCHEMA, CaptureIn
from rex.client_ip import rate_limit_key
from rex.db.engine import Database
from rex.errors import ChallengeFailed, DomainError, NotFound, RateLimited, Unavailable
from rex.forms import service as forms_service
from rex.forms.schemas import StoredForm
from rex.ids import new_id, rfc3339, utcnow
from rex.runtime import Runtime, runtime_of
from rex.settings import Settings
from rex.submissions import service as submissions
from rex.submissions.service import SubmissionStatus
from rex.workspaces import service as workspaces
from rex.workspaces.origins import origin_allowed, safe_redirect
from rex.workspaces.service import Workspace

log = structlog.get_logger("rex.capture")
router = APIRouter(tags=["capture"])

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _error(description: str, example: tuple[str, str, str | None], **extra: Any) -> dict[str, Any]:
    error = dict(zip(("type", "message", "field"), example, strict=True))
    return {
        "model": ErrorEnvelope,
        "description": description,
        "content": {"application/json": {"example": {"error": error}}},
        **extra,
    }


_RESPONSES: dict[int | str, dict[str, Any]] = {
    303: {
        "description": (
            "A form post without `Accept: application/json`: see `_next`. The redirect goes "
            "to `_next` or the workspace's `redirect_url` when their origin is allowed, else "
            f"to Rex's thank-you page (`{THANK_YOU_PATH}`)."
        ),
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    400: _error(
        "Malformed body (bad JSON, bad form encoding)",
        ("invalid_request", "Request body is not valid JSON.", None),
    ),
    404: _error(
        "No workspace for this host",
        ("not_found", "No workspace for host 'nope.rexgtm.com'.", None),
    ),
    413: _error(
        "Body over the size limit (REX_MAX_BODY_BYTES, 64 KiB by default)",
        ("payload_too_large", "Request body is larger than 65536 bytes.", None),
    ),
    415: _error(
        "Not JSON, urlencoded or multipart",
        ("unsupported_media_type", "Send the lead as JSON or as a form post.", None),
    ),
    422: _error(
        "Invalid lead: bad email, too much metadata, ...",
        ("invalid_request", "'jane@' is not a valid email address.", "email"),
    ),
    429: _error(
        "Rate limited (per client IP or per workspace)",
        ("rate_limited", "Too many captures from this address; retry in 1 s.", None),
        headers={"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds"}},
    ),
    503: _error(
        "Database unavailable (`service_unavailable`), or its disk is full (`storage_full`: "
        "nothing was written); retry after the Retry-After delay",
        (
            "service_unavailable",
            "The database is unavailable; the request may not have been applied.",
            None,
        ),
    ),
}


def _host_slug(host: str | None, settings: Settings) -> str | None:
    """``acme.<REX_BASE_DOMAIN>`` -> ``"acme"``; ``""`` for a host that names no workspace
    (it lands in the default workspace); ``None`` for a host under the base domain that
    cannot be a workspace (``a.b.<base>``)."""
    hostname = (host or "").strip().lower()
    hostname = hostname.rsplit(":", 1)[0] if not hostname.endswith("]") else hostname
    hostname = hostname.rstrip(".")
    base = (settings.base_domain or "").lower().strip(".")
    if base and hostname.endswith("." + base):
        slug = hostname[: -len(base) - 1]
        return None if "." in slug else slug
    return ""


async def find_workspace(request: Request, db: Database, settings: Settings) -> Workspace | None:
    """The workspace a capture on this request's host lands in, or ``None`` if there is none.

    ``acme.<REX_BASE_DOMAIN>`` is workspace ``acme``; any other host is the default workspace
    of a single-workspace install. Nothing in the body can choose another workspace. Read
    through the app's ``WorkspaceCache``: every capture and preflight needs it first.
    """
    slug = _host_slug(request.headers.get("host"), settings)
    if slug is None:
        return None
    cache = runtime_of(request.app).workspace_cache
    return await cache.get(db.read, slug or workspaces.DEFAULT_SLUG)


def _no_workspace(host: str | None) -> NotFound:
    return NotFound(
        "workspace", host or "", message=f"No workspace receives captures for host {host or ''!r}."
    )


def _check_rate_limits(runtime: Runtime, workspace: Workspace | None, ip_key: str) -> None:
    limiter = runtime.capture_limiter
    ip_rate = runtime.capture_limits.per_ip
    if ip_rate is not None and (wait := limiter.hit(f"ip:{ip_key}", ip_rate)):
        raise RateLimited(
            f"Too many captures from your address; retry in {wait} s.", retry_after=wait
        )
    if workspace is None:
        return
    ws_rate = runtime.capture_limits.for_workspace(workspace.capture_rate_limit)
    # The rate is part of the key: a workspace given a new limit starts it afresh.
    ws_key = f"ws:{workspace.id}:{ws_rate.count}/{ws_rate.period}" if ws_rate else ""
    if ws_rate is not None and (wait := limiter.hit(ws_key, ws_rate)):
        raise RateLimited(
            f"This workspace receives too many captures; retry in {wait} s.", retry_after=wait
        )


def _redirect_location(
    request: Request,
    parsed: ParsedCapture,
    workspace: Workspace,
    form_redirect: str | None = None,
) -> str:
    allowed = workspace.allowed_origins
    requested = parsed.controls.get("_next", "").strip()
    if requested:
        base = request.headers.get("referer") or request.headers.get("origin")
        target = safe_redirect(requested, allowed, base=base)
        if target:
            return target
        log.info("capture_next_refused", workspace=workspace.slug, next=requested[:200])
    if form_redirect:
        return form_redirect  # set with an API key on the form: trusted like the key
    if workspace.redirect_url:
        target = safe_redirect(workspace.redirect_url, allowed)
        if target:
            return target
    return THANK_YOU_PATH


@router.post(
    "/capture",
    status_code=201,
    response_model=CaptureEnvelope,
    response_description=(
        "Lead received, whether the address was new or known (same status and shape: the "
        "answer is built from the request and the contact's id, nothing stored is read back)"
    ),
    responses=_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": component_ref(CaptureIn)},
                **{media: {"schema": CAPTURE_FORM_SCHEMA} for media in _FORM_TYPES},
            },
        }
    },
)
async def capture_lead(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """Create or update a contact from a lead (upsert by email). 201 for a new and a known
    address alike; the answer echoes the request (email normalised) and the contact's id.

    Takes JSON, or a plain HTML form post (urlencoded or multipart). A form post is answered
    with a 303 redirect unless it sends `Accept: application/json`. No API key: the workspace
    is the one the host names (`acme.<REX_BASE_DOMAIN>`), else the default workspace.
    Fields are recognised without configuration (`EMAIL`, `your-email`, a Typeform answer...);
    every post that passes the rate and size limits is kept as a submission.
    """
    return await _capture(request, db, settings, None)


@router.post(
    "/capture/{form_id}",
    status_code=201,
    response_model=CaptureEnvelope,
    responses={
        **_RESPONSES,
        403: _error(
            "The form's CAPTCHA was not completed (a `spam` submission is kept)",
            ("captcha_failed", "Please complete the challenge and send the form again.", None),
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": component_ref(CaptureIn)},
                **{media: {"schema": CAPTURE_FORM_SCHEMA} for media in _FORM_TYPES},
            },
        }
    },
)
async def capture_form_lead(
    form_id: str, request: Request, db: DbDep, settings: SettingsDep
) -> Response:
    """`/capture` for one form (`POST /forms`): its `field_map`, honeypots, CAPTCHA,
    redirect, success message and new-lead emails. No API key; same CORS and limits."""
    return await _capture(request, db, settings, form_id)


async def _captcha_decision(
    form: StoredForm, received: Received, decision: Decision, client_ip: str | None,
    settings: Settings,
) -> Decision:  # fmt: skip
    config = form["captcha"]
    if config is None:  # no CAPTCHA on this form: nothing to verify
        return decision
    token = captcha.token_from(config["provider"], received.fields, received.controls)
    result = await captcha.verify(config, token, client_ip=client_ip, settings=settings)
    if result.verdict is captcha.Verdict.PASSED:
        return decision
    if result.verdict is captcha.Verdict.FAILED:
        failed = ChallengeFailed(
            "Please complete the challenge (the CAPTCHA) and send the form again.",
            field=captcha.TOKEN_FIELDS[config["provider"]],
        )
        return Decision(SubmissionStatus.SPAM, result.reason, decision.shape, None, failed)
    unavailable = Unavailable(
        "We could not check the challenge just now. Your details were kept; please try "
        "again in a minute.",
        retry_after=30,
        type="captcha_unavailable",
    )
    return Decision(SubmissionStatus.REJECTED, result.reason, decision.shape, None, unavailable)


async def _capture(
    request: Request, db: Database, settings: Settings, form_id: str | None
) -> Response:
    runtime = runtime_of(request.app)
    address = runtime.proxy_trust.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
    )
    client_ip = str(address) if address is not None else None
    origin = request.headers.get("origin")
    accept = request.headers.get("accept")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    browser = media in _FORM_TYPES and wants_html(accept)
    workspace: Workspace | None = None
    form: StoredForm | None = None
    try:
        workspace = await find_workspace(request, db, settings)
        # Per-IP first, before anything costs more than a dictionary lookup.
        _check_rate_limits(runtime, workspace, rate_limit_key(address))
        if workspace is None:
            raise _no_workspace(request.headers.get("host"))
        if form_id is not None:
            async with db.read() as conn:
                form = await forms_service.find(conn, workspace.id, form_id)
            if form is None:
                raise NotFound(
                    "form", form_id, message=f"No form {form_id!r} receives captures here."
                )
        body = await read_body(request, settings.max_body_bytes)
    except DomainError as refused:
        exc = api_error_for(refused)
        return error_answer(
            exc.status,
            exc.message,
            type=exc.type,
            field=exc.field,
            headers={**exc.headers, **cors_headers(origin, workspace)},
            html_page=browser,
        )
    # Past the abuse limits: whatever happens now, the post is kept as one submission.
    now = utcnow()
    raw, truncated = submissions.raw_text(body)
    submission: dict[str, Any] = {
        "id": new_id("sub"),
        "workspace_id": workspace.id,
        "form_id": form_id,
        "status": SubmissionStatus.REJECTED.value,
        "reason": None,
        "shape": None,
        "content_type": request.headers.get("content-type", "")[:200] or None,
        "fields": None,
        "raw_body": raw,
        "raw_truncated": truncated,
        "contact_id": None,
        "created_at": now,
        "updated_at": now,
    }
    received: Received | None = None
    recorded = False
    try:
        kind = body_kind(request.headers.get("content-type"))
        parsed = await parse_capture(body, request.headers, kind)
        received = Received(
            kind, parsed.fields, parsed.controls, parsed.names, request.headers.get("user-agent")
        )
        # A JSON body's fields are its raw body, read back on demand (one encoding less on
        # the hot path); a form's are stored decoded.
        if kind is not BodyKind.JSON or truncated:
            submission["fields"] = received.stored()
        decision = decide(received, form, referer=request.headers.get("referer"))
        if decision.status is SubmissionStatus.ACCEPTED and form and form.get("captcha"):
            decision = await _captcha_decision(form, received, decision, client_ip, settings)
        submission["shape"] = decision.shape
        if decision.status is SubmissionStatus.ACCEPTED:
            assert decision.lead is not None
            lead, workspace_id, fields = decision.lead, workspace.id, received.stored()
            max_metadata = settings.max_contact_metadata_bytes
            contact, _created = await db.run_in_transaction(
                lambda conn: intake.accept(
                    conn,
                    workspace_id,
                    lead,
                    now=now,
                    client_ip=client_ip,
                    submission=submission,
                    form=form,
                    fields=fields,
                    max_metadata_bytes=max_metadata,
                )
            )
            contact_id = contact.id
            recorded = True
        else:
            submission["status"], submission["reason"] = decision.status.value, decision.reason
            await db.run_in_transaction(lambda conn: submissions.record(conn, submission))
            recorded = True
            intake.log_refused(
                decision.status, decision.reason, form_id, intake.received_names(received)
            )
            if decision.error is not None:
                raise decision.error
            assert decision.lead is not None
            # A filled honeypot: answered exactly like a new contact; no contact, no event.
            lead = decision.lead
            contact_id = service.preview(lead, now=now, client_ip=client_ip).id
    except DomainError as refused:
        exc = api_error_for(refused)
        if not recorded:
            submission["reason"] = exc.message
            await db.run_in_transaction(lambda conn: submissions.record(conn, submission))
            names = intake.received_names(received) if received else []
            intake.log_refused(SubmissionStatus.REJECTED, exc.message, form_id, names)
        headers = {**exc.headers, **cors_headers(origin, workspace)}
        if browser:
            back = link_back(request.headers.get("referer"), workspace.allowed_origins)
            return not_sent_page(exc.status, exc.message, back, headers)
        return error_answer(
            exc.status, exc.message, type=exc.type, field=exc.field, headers=headers,
            html_page=False,
        )  # fmt: skip
    cors = cors_headers(origin, workspace)
    if kind is BodyKind.JSON or wants_json(accept):
        # One status and shape for a new and a known address: no existence oracle.
        return json_answer(capture_answer(lead, contact_id, rfc3339(now) or ""), 201, cors)
    location = _redirect_location(
        request, parsed, workspace, form["redirect_url"] if form else None
    )
    if location == THANK_YOU_PATH and form and (message := form["success_message"]):
        return success_page(message)
    return Response(status_code=303, headers={"Location": location, **cors})


@router.options("/capture", include_in_schema=False)
@router.options("/capture/{form_id}", include_in_schema=False)
async def capture_preflight(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """CORS preflight: allowed for the workspace's ``allowed_origins`` only."""
    origin = request.headers.get("origin")
    method = request.headers.get("access-control-request-method")
    workspace = await find_workspace(request, db, settings)
    if workspace is None:
        exc = api_error_for(_no_workspace(request.headers.get("host")))
        return error_response(exc.status, exc.message, headers={"Vary": "Origin"})
    if not origin or not method:
        return Response(status_code=204, headers={"Allow": "POST, OPTIONS", "Vary": "Origin"})
    if method.upper() != "POST":
        return error_response(
            403, f"Only POST is allowed on /capture, not {method}.", headers={"Vary": "Origin"}
        )
    if not origin_allowed(origin, workspace.allowed_origins):
        return error_response(
            403,
            f"Origin {origin!r} is not in this workspace's allowed_origins "
            "(add it with PATCH /workspace).",
            headers={"Vary": "Origin"},
        )
    return Response(status_code=204, headers=preflight_headers(origin, workspace))


@router.get(THANK_YOU_PATH, include_in_schema=False)
async def thank_you() -> Response:
    """Where a form post lands when no allowed ``_next`` or ``redirect_url`` is set."""
    return thank_you_page()


@cache
def _embed_script() -> bytes:
    return (resources.files("rex") / "static" / "embed.js").read_bytes()


@router.get("/embed.js", include_in_schema=False)
async def embed_script() -> Response:
    """The optional script that turns ``<form data-rex>`` into an in-page submission."""
    return Response(
        _embed_script(),
        media_type="text/javascript; charset=utf-8",
        headers={
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "cross-origin",
        },
    )
