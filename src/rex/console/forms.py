"""Reading console forms into the API's own request models, so a console write is checked
exactly as the same write through the API (a bad value is ``Invalid``: a 422 page)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rex.errors import Invalid

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], values: dict[str, Any]) -> M:
    """``model`` built from ``values`` (empty strings dropped); ``Invalid`` when refused."""
    cleaned = {k: v for k, v in values.items() if v is not None and v != ""}
    try:
        return model.model_validate(cleaned)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise Invalid(field, f"{field}: {message}" if field else message) from None
