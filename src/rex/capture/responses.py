"""How ``/capture`` answers: JSON for code, redirects and small HTML pages for browsers, and
the CORS headers of the workspace's allowed origins."""

from __future__ import annotations

import html
from typing import TypedDict

import orjson
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from rex.api.errors import error_response
from rex.capture.schemas import CaptureIn
from rex.states import DEFAULT_CONTACT_STAGE
from rex.workspaces.origins import ANY_ORIGIN, origin_allowed
from rex.workspaces.service import Workspace

THANK_YOU_PATH = "/capture/thanks"
# Request headers a browser may send cross-origin to /capture (no credentials, no API key).
CORS_ALLOW_HEADERS = "Accept, Accept-Language, Content-Language, Content-Type, X-Requested-With"
CORS_MAX_AGE = "600"
# Rex's own pages load nothing and run nothing.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _media_ranges(accept: str | None) -> dict[str, float]:
    ranges: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        ranges[media.lower()] = quality
    return ranges


def wants_json(accept: str | None) -> bool:
    """The client asked for JSON by name (``Accept: application/json``)."""
    return _media_ranges(accept).get("application/json", 0.0) > 0


def wants_html(accept: str | None) -> bool:
    """The client asked for HTML by name and not for JSON: a browser navigating."""
    ranges = _media_ranges(accept)
    return ranges.get("text/html", 0.0) > 0 and not wants_json(accept)


def cors_headers(origin: str | None, workspace: Workspace | None) -> dict[str, str]:
    """CORS response headers for a request from ``origin`` (none when it is not allowed).

    Never ``Access-Control-Allow-Credentials``: ``/capture`` reads no cookies, and ``*`` is
    only sent when the operator configured ``*``.
    """
    headers = {"Vary": "Origin"}
    if workspace is None or not origin_allowed(origin, workspace.allowed_origins):
        return headers
    assert origin is not None
    allow = ANY_ORIGIN if ANY_ORIGIN in workspace.allowed_origins else origin
    headers["Access-Control-Allow-Origin"] = allow
    headers["Access-Control-Expose-Headers"] = "Retry-After"
    return headers


def preflight_headers(origin: str, workspace: Workspace) -> dict[str, str]:
    return {
        **cors_headers(origin, workspace),
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Access-Control-Max-Age": CORS_MAX_AGE,
    }


def _page(title: str, body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{html.escape(title)}</title>
<style>
  body {{ font: 17px/1.5 system-ui, sans-serif; color: #1f2328; background: #f6f8fa;
         display: grid; place-items: center; min-height: 100vh; margin: 0; }}
  main {{ background: #fff; border: 1px solid #d0d7de; border-radius: 8px;
          padding: 2rem 2.5rem; max-width: 32rem; }}
  h1 {{ font-size: 1.4rem; margin: 0 0 .5rem; }}
</style>
</head>
<body><main>{body}</main></body>
</html>
"""
    return HTMLResponse(document, status_code=status, headers={**_PAGE_HEADERS, **(headers or {})})


def thank_you_page() -> Response:
    return _page(
        "Thank you",
        "<h1>Thank you!</h1><p>Your details were received.</p>"
        "<p>You can close this page, or use your browser's back button to return.</p>",
        200,
    )


def error_page(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _page(
        "Not sent",
        "<h1>Your details were not sent</h1>"
        f"<p>{html.escape(message)}</p>"
        "<p>Use your browser's back button to correct the form and try again.</p>",
        status,
        headers,
    )


def error_answer(
    status: int,
    message: str,
    *,
    type: str | None,
    field: str | None,
    headers: dict[str, str],
    html_page: bool,
) -> Response:
    """The error envelope, or the same error as a page for a browser that asked for HTML."""
    if html_page:
        return error_page(status, message, headers)
    return error_response(status, message, type=type, field=field, headers=headers)


class CaptureAnswer(BaseModel):
    """What ``/capture`` answers: the lead as the request sent it (email normalised), plus
    the contact's ``id``. Never a stored value the request did not carry, and the same shape
    for a new and a known address, so the public endpoint reads nothing back."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "cont_01HQ6M3V8J6C1X1ZJ3Y6Q4Z9K2",
                    "email": "jane@example.com",
                    "first_name": "Jane",
                    "last_name": "Doe",
                    "phone": None,
                    "company": None,
                    "stage": "lead",
                    "source": "organic",
                    "created_at": "2026-03-16T12:00:00Z",
                }
            ]
        }
    )

    id: str = Field(description="The contact's id (a new or an existing contact).")
    email: str = Field(description="The email as sent, trimmed and lower-cased.")
    first_name: str | None = Field(description="As sent (null when not sent).")
    last_name: str | None = Field(description="As sent (null when not sent).")
    phone: str | None = Field(description="As sent (null when not sent).")
    company: str | None = Field(description="As sent (null when not sent).")
    stage: str = Field(description='Always "lead": the stage a new lead gets.')
    source: str | None = Field(description="As sent (null when not sent).")
    created_at: str = Field(description="When this capture was received (RFC 3339 UTC).")


class CaptureEnvelope(BaseModel):
    data: CaptureAnswer


class CaptureAnswerData(TypedDict):
    """``CaptureAnswer`` as the hot path builds it (a plain dict: no validation to pay for)."""

    id: str
    email: str
    first_name: str | None
    last_name: str | None
    phone: str | None
    company: str | None
    stage: str
    source: str | None
    created_at: str


def capture_answer(lead: CaptureIn, contact_id: str, received_at: str) -> CaptureAnswerData:
    """The body of a successful capture, from ``lead`` (a validated ``CaptureIn``) alone."""
    return {
        "id": contact_id,
        "email": lead.email,
        "first_name": lead.first_name or None,
        "last_name": lead.last_name or None,
        "phone": lead.phone or None,
        "company": lead.company or None,
        "stage": DEFAULT_CONTACT_STAGE,
        "source": lead.source or None,
        "created_at": received_at,
    }


def json_answer(contact: CaptureAnswerData, status: int, headers: dict[str, str]) -> Response:
    try:
        body = orjson.dumps({"data": contact})
    except TypeError:  # integers beyond 64 bits
        return JSONResponse({"data": contact}, status_code=status, headers=headers)
    return Response(body, status_code=status, headers=headers, media_type="application/json")
