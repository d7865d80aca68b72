"""The OpenAPI document: FastAPI's, plus what routers cannot say for themselves.

- ``Idempotency-Key`` is documented on every POST that takes an API key (the middleware in
  ``rex.api.idempotency`` applies it to the same set of routes).
- Models referenced by hand (a route that parses its own body and documents it through
  ``openapi_extra``) are added to ``components.schemas`` via ``component_ref``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from rex.api.routes import api_operations
from rex.json_types import JsonObject

_REFERENCED: dict[str, type[BaseModel]] = {}

IDEMPOTENCY_PARAMETER: JsonObject = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Any unique string (a UUID is a good choice). A repeat of this POST with the same key "
        "and the same body within 24 hours returns the first response (with "
        "`Idempotent-Replayed: true`) without writing again; the same key with a different "
        "request is a 409."
    ),
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
    "example": "8e03978e-40d5-43e8-bc93-6894a57f9324",
}


def component_ref(model: type[BaseModel]) -> dict[str, str]:
    """A ``$ref`` to ``model`` in ``components.schemas`` (added when the document is built)."""
    _REFERENCED[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def install_openapi(app: FastAPI, *, description: str) -> None:
    def build() -> JsonObject:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=description,
            routes=app.routes,
            webhooks=app.webhooks.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _REFERENCED.items():
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for def_name, definition in model_schema.pop("$defs", {}).items():
                components.setdefault(def_name, definition)
            components[name] = model_schema
        for op in api_operations(app):
            if "POST" not in op.methods or not op.requires_api_key:
                continue
            operation = schema["paths"][op.path]["post"]
            parameters = operation.setdefault("parameters", [])
            if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                parameters.append(IDEMPOTENCY_PARAMETER)
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
