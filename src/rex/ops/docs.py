"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets shipped in the package
(``rex/static/docs``, see its VERSIONS.md): they render offline, and no request leaves Rex."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

ASSETS = Path(__file__).resolve().parent.parent / "static" / "docs"
ASSET_VERSIONS = {"swagger-ui-dist": "5.36.0", "redoc": "3.0.1"}
PREFIX = "/docs-assets"
_FILES = {
    "swagger-ui/swagger-ui-bundle.js": "text/javascript",
    "swagger-ui/swagger-ui.css": "text/css",
    "swagger-ui/favicon-32x32.png": "image/png",
    "redoc/redoc.standalone.js": "text/javascript",
}


# The pages may load nothing but Rex's own files: ReDoc's sidebar shows a logo from
# cdn.redoc.ly (no option turns it off), which this blocks inside the browser.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    "font-src 'self' data:; frame-ancestors 'self'"
)


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Serve ``/docs``, ``/redoc`` and their assets (create the app with ``docs_url=None,
    redoc_url=None``)."""
    version = f"?v={ASSET_VERSIONS['swagger-ui-dist']}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API reference",
            swagger_js_url=f"{PREFIX}/swagger-ui/swagger-ui-bundle.js{version}",
            swagger_css_url=f"{PREFIX}/swagger-ui/swagger-ui.css{version}",
            swagger_favicon_url=f"{PREFIX}/swagger-ui/favicon-32x32.png",
            # No validator badge: it is an image from validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        # ReDoc 3 is an ES module (`type="module"`), which FastAPI's own page does not load.
        script = f"{PREFIX}/redoc/redoc.standalone.js?v={ASSET_VERSIONS['redoc']}"
        return HTMLResponse(
            "<!DOCTYPE html><html><head>"
            f"<title>{html.escape(app.title)} - API reference</title>"
            '<meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            'initial-scale=1">'
            f'<link rel="shortcut icon" href="{PREFIX}/swagger-ui/favicon-32x32.png">'
            "<style>body { margin: 0; padding: 0; }</style></head><body>"
            f'<redoc spec-url="{html.escape(openapi_url)}"></redoc>'
            f'<script type="module" src="{script}"></script>'
            "</body></html>",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    @app.get(PREFIX + "/{package}/{name}", include_in_schema=False)
    async def asset(package: str, name: str) -> FileResponse:
        relative = f"{package}/{name}"
        media_type = _FILES.get(relative)
        if media_type is None:
            raise StarletteHTTPException(404, f"No documentation asset {relative!r}.")
        return FileResponse(
            ASSETS / relative,
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )
