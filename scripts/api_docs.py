"""Write the API reference in ``docs/api/`` from Rex's OpenAPI document.

    python scripts/api_docs.py           # regenerate docs/api/*.md
    python scripts/api_docs.py --check   # exit 1 if they are out of date (CI, tests)

One page per OpenAPI tag (every operation: parameters, request body, responses), a page of
schemas, and an index. The pages are generated, never edited by hand: change the routers'
docstrings and pydantic models, then run this again. ``tests/unit/test_api_docs.py`` fails
when the pages and the OpenAPI document disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api"
NOTICE = (
    "<!-- Generated from Rex's OpenAPI document by scripts/api_docs.py: do not edit by hand; "
    "run `python scripts/api_docs.py`. -->"
)
METHODS = ("get", "post", "put", "patch", "delete")


def openapi() -> dict[str, Any]:
    """The OpenAPI document the app serves at ``/openapi.json``."""
    from rex.app import create_app
    from rex.settings import Settings

    settings = Settings(_env_file=None, database_url="sqlite:///:memory:")  # type: ignore[call-arg]
    return create_app(settings).openapi()


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _slug(text: str) -> str:
    """A file name for a tag."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    kept = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _cell(text: Any) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(schema: dict[str, Any]) -> str:
    """A short, readable type: ``string``, ``Contact``, ``list of string``, ``integer or null``."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](schemas.md#{_anchor(name)})"
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            parts = [type_of(s) for s in schema[key]]
            return " or ".join(dict.fromkeys(parts))
    if "const" in schema:
        return f"`{schema['const']!r}`".replace("'", '"')
    if "enum" in schema:
        return " \\| ".join(f'`"{v}"`' if isinstance(v, str) else f"`{v}`" for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        values = schema["additionalProperties"]
        return "object" if values is True else f"object of {type_of(values)}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind or "any")


def _constraints(schema: dict[str, Any]) -> str:
    notes = []
    for key, label in (
        ("minimum", ">="),
        ("maximum", "<="),
        ("exclusiveMinimum", ">"),
        ("minLength", "min length"),
        ("maxLength", "max length"),
    ):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            notes.extend(n for n in [_constraints(option)] if n)
    if "default" in schema and schema["default"] is not None:
        notes.append(f"default `{schema['default']}`")
    return ", ".join(notes)


def _description(schema: dict[str, Any]) -> str:
    text = schema.get("description", "")
    constraints = _constraints(schema)
    examples = schema.get("examples")
    parts = [p for p in (text, f"({constraints})" if constraints else "") if p]
    if examples:
        parts.append("e.g. `" + str(examples[0]) + "`")
    return _cell(" ".join(parts))


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = ["| field | type | required | description |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        yes = "yes" if name in required else ""
        lines.append(f"| `{name}` | {type_of(prop)} | {yes} | {_description(prop)} |")
    return lines


def _body_schema(content: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for media_type, body in content.items():
        return media_type, body.get("schema", {})
    return None


def operation_section(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"## `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [f"**{op['summary']}**", ""]
    if op.get("description"):
        lines += [op["description"].strip(), ""]
    auth = "an API key (`X-Api-Key`, or `Authorization: Bearer`)" if op.get("security") else "none"
    lines += [f"Authentication: {auth}.", ""]

    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for param in params:
            schema = dict(param.get("schema", {}))
            if "description" in param:
                schema["description"] = param["description"]
            yes = "yes" if param.get("required") else ""
            lines.append(
                f"| `{param['name']}` | {param['in']} | {type_of(param.get('schema', {}))} | "
                f"{yes} | {_description(schema)} |"
            )
        lines.append("")

    request = op.get("requestBody")
    if request:
        found = _body_schema(request.get("content", {}))
        if found:
            media_type, schema = found
            lines += [f"Request body (`{media_type}`): {type_of(schema)}", ""]

    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in op.get("responses", {}).items():
        found = _body_schema(response.get("content", {}))
        body = "" if found is None else f"{type_of(found[1])} (`{found[0]}`)"
        lines.append(f"| {status} | {_cell(response.get('description', ''))} | {body} |")
    lines.append("")
    return lines


def render(spec: dict[str, Any]) -> dict[str, str]:
    """Every page of ``docs/api``, by file name."""
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                tag = (op.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((path, method, op))

    pages: dict[str, str] = {}
    title = spec.get("info", {}).get("title", "API")
    index = [
        f"# {title} API reference",
        "",
        NOTICE,
        "",
        spec.get("info", {}).get("summary", ""),
        "",
        "Every key-authenticated request sends `X-Api-Key: <key>` (or "
        '`Authorization: Bearer <key>`). Errors are `{"error": {"type", "message", '
        '"field"}}`. The live document is served at `/openapi.json`, and rendered at `/docs`.',
        "",
    ]
    for tag, operations in by_tag.items():
        page = f"{_slug(tag)}.md"
        index += [f"## [{tag}]({page})", ""]
        index += [
            f"- [`{method.upper()} {path}`]({page}#{_anchor(f'{method} {path}')}) "
            f"{op.get('summary', '')}"
            for path, method, op in operations
        ]
        index.append("")
        body = [f"# {tag}", "", NOTICE, ""]
        for path, method, op in operations:
            body += operation_section(path, method, op)
        pages[page] = "\n".join(body).rstrip() + "\n"
    index += ["## [Schemas](schemas.md)", ""]
    pages["README.md"] = "\n".join(index).rstrip() + "\n"

    schemas = ["# Schemas", "", NOTICE, ""]
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        schemas += [f"## {name}", ""]
        if schema.get("description"):
            schemas += [schema["description"].strip(), ""]
        if "properties" in schema:
            schemas += [*_fields(schema), ""]
        else:
            schemas += [f"Type: {type_of(schema)}", ""]
    pages["schemas.md"] = "\n".join(schemas).rstrip() + "\n"
    return pages


def stale(pages: dict[str, str], out: Path = OUT) -> list[str]:
    """Pages that differ from ``out`` (or are missing there), and files there that should not be."""
    problems = [name for name, text in pages.items() if _read(out / name) != text]
    if out.exists():
        problems += [p.name for p in out.glob("*.md") if p.name not in pages]
    return sorted(problems)


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    pages = render(openapi())
    problems = stale(pages)
    if args.check:
        if problems:
            print(
                f"docs/api is out of date ({', '.join(problems)}): run "
                "`python scripts/api_docs.py`",
                file=sys.stderr,
            )
            return 1
        print("docs/api is up to date")
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for extra in OUT.glob("*.md"):
        if extra.name not in pages:
            extra.unlink()
    for name, text in pages.items():
        (OUT / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} pages to {OUT.relative_to(ROOT)}" + (
        f" ({len(problems)} changed)" if problems else " (no change)"))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
