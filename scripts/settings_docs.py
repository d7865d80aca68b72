"""Write the configuration reference, ``docs/configuration.md``, from Rex's ``Settings`` model.

    python scripts/settings_docs.py           # regenerate docs/configuration.md
    python scripts/settings_docs.py --check   # exit 1 if it is out of date (CI, tests)

One section per field of ``rex.settings.Settings``: its environment variable (``REX_`` + the
field's name upper-cased), its ``description=``, its type and its default. The page is
generated, never edited by hand: change the field's description in ``src/rex/settings.py``,
then run this again. ``tests/unit/test_settings_docs.py`` fails when the page is stale, and
a field without a description is refused here.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "configuration.md"
NOTICE = (
    "<!-- Generated from rex.settings.Settings by scripts/settings_docs.py: do not edit by "
    "hand; run `python scripts/settings_docs.py`. -->"
)
INTRO = """\
Rex reads its settings once, at start-up, from `REX_*` environment variables or from a
`.env` file in the working directory (the environment wins). `rex serve`, `rex worker`,
`rex migrate`, `rex keys` and `rex workspaces` read the same ones. Booleans take `1`,
`true`, `yes` or `on` (and `0`, `false`, `no`, `off`); lists are comma-separated.

```sh
export REX_DATABASE_URL=postgresql://rex@db.internal/rex
export REX_RETRY_SCHEDULE=10,60,600   # three retries: 10 s, 1 min, 10 min
rex serve --no-worker
```
"""

_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string"}
_CONSTRAINTS = {
    annotated_types.Gt: ("gt", "greater than"),
    annotated_types.Ge: ("ge", "at least"),
    annotated_types.Lt: ("lt", "less than"),
    annotated_types.Le: ("le", "at most"),
}


def env_name(name: str) -> str:
    return f"REX_{name.upper()}"


def type_name(annotation: Any) -> str:
    """A short, readable type: ``number``, ``comma-separated list of string``, ..."""
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        optional = len(kept) < len(args)
        return " or ".join(type_name(a) for a in kept) + (" (optional)" if optional else "")
    if origin in (list, tuple, set, frozenset):
        item = next((a for a in args if a is not Ellipsis), str)
        return f"comma-separated list of {type_name(item)}"
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_value(v) for v in value)
    return str(value)


def default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(unset)"
    text = _value(value)
    return f"`{text}`" if text else "(empty)"


def _constraints(field: FieldInfo) -> str:
    said = []
    for item in field.metadata:
        for kind, (attribute, words) in _CONSTRAINTS.items():
            if isinstance(item, kind):
                said.append(f"{words} {_value(getattr(item, attribute))}")
    return f" Must be {' and '.join(said)}." if said else ""


def render(model: type[BaseModel] | None = None) -> str:
    """The whole page. Raises ``ValueError`` naming every field that has no description."""
    if model is None:
        from rex.settings import Settings

        model = Settings
    fields = model.model_fields
    missing = [name for name, field in fields.items() if not (field.description or "").strip()]
    if missing:
        raise ValueError(
            f"settings without a description= (say what it does, its unit and default): "
            f"{', '.join(env_name(n) for n in missing)}"
        )
    lines = ["# Configuration", "", NOTICE, "", INTRO]
    for name, field in fields.items():
        description = (field.description or "").strip() + _constraints(field)
        lines += [
            f"## `{env_name(name)}`",
            "",
            " ".join(description.split()),
            "",
            f"Type: {type_name(field.annotation)}. Default: {default_of(field)}.",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def is_stale(text: str, out: Path = OUT) -> bool:
    return not out.exists() or out.read_text(encoding="utf-8") != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    try:
        text = render()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    stale = is_stale(text)
    where = OUT.relative_to(ROOT)
    if args.check:
        if stale:
            print(f"{where} is out of date: run `python scripts/settings_docs.py`", file=sys.stderr)
            return 1
        print(f"{where} is up to date")
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {where}" + (" (changed)" if stale else " (no change)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
