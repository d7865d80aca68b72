"""The console's Jinja2 environment (autoescape on for everything) and ``render``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from rex._version import __version__
from rex.ids import rfc3339

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("rex.console", "templates"),
    autoescape=True,  # every value is escaped, whatever the template's file name
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def static_url(name: str) -> str:
    """A static asset's URL, with the version so a new Rex is never served stale assets."""
    return f"/console/static/{name}?v={__version__}"


def when(moment: datetime | None) -> str:
    """A time as people read it, in UTC: ``2026-03-16 12:00``."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def iso(moment: datetime | None) -> str:
    return rfc3339(moment) or ""


def money(minor: int | None, currency: str | None) -> str:
    """An amount in minor units (cents) with its currency: ``1,200.00 USD``."""
    if minor is None:
        return ""
    text = f"{minor / 100:,.2f}"
    return f"{text} {currency}" if currency else text


def query(request: Request, **changes: Any) -> str:
    """The current page's URL with some query parameters replaced (``None`` drops one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    encoded = urlencode(params)
    return f"{request.url.path}?{encoded}" if encoded else request.url.path


_ENV.globals.update(static=static_url, version=__version__)
_ENV.filters.update(when=when, iso=iso, money=money)


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render ``template`` with ``context``, plus ``request``, the signed-in ``viewer`` (or
    None) and ``query`` (see above)."""
    values: dict[str, Any] = {
        "request": request,
        "viewer": getattr(request.state, "viewer", None),
        "query": lambda **changes: query(request, **changes),
        "nav": None,
        "notice": None,
    }
    values.update(context or {})
    html = _ENV.get_template(template).render(values)
    return HTMLResponse(html, status_code=status_code, headers=headers)
