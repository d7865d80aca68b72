"""docs/api is the OpenAPI document, rendered: the test fails when they disagree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "api_docs.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_api_matches_the_openapi_document() -> None:
    generator = _generator()
    stale = generator.stale(generator.render(generator.openapi()))
    assert stale == [], (
        f"docs/api is out of date ({', '.join(stale)}): run `python scripts/api_docs.py` "
        "and commit the result"
    )


def test_every_operation_is_documented() -> None:
    generator = _generator()
    spec = generator.openapi()
    pages = generator.render(spec)
    text = "\n".join(pages.values())
    for path, item in spec["paths"].items():
        for method in item:
            assert f"## `{method.upper()} {path}`" in text
    for name in spec["components"]["schemas"]:
        assert f"## {name}\n" in pages["schemas.md"]


async def test_the_served_openapi_document_is_the_one_documented() -> None:
    generator = _generator()
    app_spec = generator.openapi()
    from rex.app import create_app
    from rex.settings import Settings

    app = create_app(Settings(_env_file=None, database_url="sqlite:///:memory:"))  # type: ignore[call-arg]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        served = await client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json()["paths"].keys() == app_spec["paths"].keys()


def test_check_mode_is_one_command() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "docs/api is up to date"


def test_check_mode_names_what_is_stale(tmp_path: Path) -> None:
    generator = _generator()
    pages = generator.render(generator.openapi())
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    assert generator.stale(pages, tmp_path) == []
    (tmp_path / "listen.md").write_text("edited by hand\n")
    (tmp_path / "old.md").write_text("a page for an operation that is gone\n")
    assert generator.stale(pages, tmp_path) == ["listen.md", "old.md"]
