"""What the client commands print: rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON instead of a table (for scripts).")
]


def console() -> Console:
    # Piped output is not wrapped at 80 columns: ids and URLs stay whole for grep and cut.
    width = None if sys.stdout.isatty() else 240
    return Console(width=width, highlight=False, markup=False, soft_wrap=False)


def print_json(body: Any) -> None:
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


Column = tuple[str, Callable[[Mapping[str, Any]], Any]]
WHOLE = {"ID", "EMAIL", "URL", "ENDPOINT", "OBJECT", "CREATED", "AT", "NEXT ATTEMPT"}


def when(value: Any) -> Any:
    """``2026-03-16T12:00:01.123Z`` -> ``2026-03-16 12:00:01Z`` (UTC, to the second)."""
    if isinstance(value, str) and len(value) >= 19 and value[10] == "T":
        return f"{value[:10]} {value[11:19]}Z"
    return value


def time_field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda item: when(item.get(name))


def field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda item: item.get(name)


def print_table(
    items: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    empty: str,
    title: str | None = None,
    footer: str | None = None,
) -> None:
    out = console()
    if not items:
        out.print(empty)
        return
    # Piped: plain aligned columns, for awk and cut; on a terminal, a rule under the header.
    style = box.SIMPLE_HEAD if out.is_terminal else None
    table = Table(title=title, box=style, title_justify="left", pad_edge=False)
    for header, _ in columns:
        # Ids, addresses and times are never folded: half an id on each of two lines
        # cannot be copied. The other columns give way on a narrow terminal.
        whole = header in WHOLE or header.endswith(" ID")
        table.add_column(header, overflow="fold", no_wrap=whole)
    for item in items:
        table.add_row(*(text(get(item)) for _, get in columns))
    out.print(table)
    if footer:
        out.print(footer)


def print_record(pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
    """One object as aligned ``name  value`` lines."""
    out = console()
    table = Table(title=title, box=None, show_header=False, title_justify="left", pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in pairs:
        table.add_row(name, text(value))
    out.print(table)


def say(message: str) -> None:
    console().print(message, soft_wrap=True)
