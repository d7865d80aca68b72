"""Pages a browser sees after posting a form: the form's own success message, and a
plain-language "not sent" page with a link back to the form's page (when its origin is one
of the workspace's allowed origins)."""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from fastapi.responses import Response

from rex.capture.responses import _page
from rex.workspaces.origins import origin_allowed


def success_page(message: str) -> Response:
    return _page("Thank you", f"<h1>Thank you!</h1><p>{html.escape(message)}</p>", 200)


def link_back(referer: str | None, allowed_origins: list[str]) -> str | None:
    """The page the form was posted from, if its origin is allowed."""
    if not referer:
        return None
    parts = urlsplit(referer)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    origin = f"{parts.scheme}://{parts.netloc}"
    return referer if origin_allowed(origin, allowed_origins) else None


def not_sent_page(
    status: int, message: str, back: str | None, headers: dict[str, str] | None = None
) -> Response:
    if back:
        action = f'<p><a href="{html.escape(back, quote=True)}">Go back to the form</a></p>'
    else:
        action = "<p>Use your browser's back button to return to the form.</p>"
    return _page(
        "Not sent",
        f"<h1>Your details were not sent</h1><p>{html.escape(_plain(message))}</p>{action}",
        status,
        headers,
    )


def _plain(message: str) -> str:
    """The API's message in words a visitor can act on."""
    if message.startswith("no email field found"):
        return (
            "The form did not include an email address we could recognise, so we could not "
            "record your details. Please check the email field and send the form again."
        )
    return message
