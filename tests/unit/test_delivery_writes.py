"""Every write to delivery rows (``deliveries`` and ``attempts``) lives in ``rex.outbox``,
where each statement carries its concurrency note: no other module inserts, updates or
deletes them (migrations aside)."""

from __future__ import annotations

import ast
from pathlib import Path

import rex

SOURCE = Path(rex.__file__).parent
OUTBOX = SOURCE / "outbox"
WRITES = {"insert", "update", "delete"}
TABLES = {"deliveries", "attempts"}


def _writes(path: Path) -> list[str]:
    """``sa.insert(deliveries)``-like calls in one module, as ``line: text``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func, table = node.func, node.args[0]
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in WRITES and isinstance(table, ast.Name) and table.id in TABLES:
            found.append(f"{path.relative_to(SOURCE)}:{node.lineno}: {name}({table.id})")
    return found


def test_only_the_outbox_writes_delivery_rows() -> None:
    modules = [p for p in SOURCE.rglob("*.py") if "migrations" not in p.parts]
    outside = [w for p in modules if OUTBOX not in p.parents for w in _writes(p)]
    assert outside == []
    # The scan does see writes: the outbox's own.
    inside = [w for p in OUTBOX.rglob("*.py") for w in _writes(p)]
    assert any("delete(deliveries)" in w for w in inside)
    assert any("update(deliveries)" in w for w in inside)
    assert any("insert(attempts)" in w for w in inside)
