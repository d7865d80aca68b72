"""The OpenAPI document describes /capture's JSON and form bodies, with every $ref resolvable."""

from __future__ import annotations

import json
import re
from typing import Any

from rex.app import create_app
from rex.settings import Settings


def openapi() -> dict[str, Any]:
    settings = Settings(_env_file=None, database_url="sqlite:///unused.db")  # type: ignore[call-arg]
    return create_app(settings).openapi()


def test_capture_documents_json_and_form_bodies() -> None:
    document = openapi()
    capture = document["paths"]["/capture"]["post"]

    content = capture["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    ref = content["application/json"]["schema"]["$ref"]
    assert "email" in document["components"]["schemas"][ref.rsplit("/", 1)[-1]]["required"]
    form = content["application/x-www-form-urlencoded"]["schema"]
    assert {"email", "_next", "_gotcha", "consent"} <= set(form["properties"])
    assert {"201", "303", "413", "422", "429"} <= set(capture["responses"])
    assert "200" not in capture["responses"]  # one status for a new and a known address
    assert "Retry-After" in capture["responses"]["429"]["headers"]


def test_every_reference_resolves() -> None:
    document = openapi()
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "([^"]+)"', text)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


def test_workspace_settings_are_documented() -> None:
    paths = openapi()["paths"]
    assert set(paths["/workspace"]) == {"get", "patch"}
