"""Rex's own docs (``docs/*.md``) as text, and the code samples cut out of them verbatim.

A sample a test runs is marked in the page by an HTML comment on the line before its fence,
``<!-- test: NAME -->`` (invisible on the site), so that moving it, or the text around it,
never silently detaches it from its test.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def snippet(name: str, marker: str) -> str:
    """The code of the fenced block right after ``<!-- test: marker -->`` in ``docs/name``."""
    pattern = rf"<!-- test: {re.escape(marker)} -->\n```[a-z]*\n(.*?)\n```"
    found = re.findall(pattern, page(name), flags=re.DOTALL)
    if len(found) != 1:
        raise LookupError(f"docs/{name} has {len(found)} samples marked {marker!r}, expected 1")
    return str(found[0]) + "\n"


def code_blocks(name: str, language: str) -> list[str]:
    """Every fenced ``language`` block of ``docs/name``, in page order."""
    return re.findall(rf"```{language}\n(.*?)```", page(name), flags=re.DOTALL)
