"""The seeds (Rex's public docs) as text, and the code samples cut out of them verbatim.

The docs live in ``../shared/seeds`` beside the checkout; a copy is kept in
``tests/acceptance/seeds`` so the suite also runs from a lone clone, and a test checks the
copy has not drifted from the original when both are present.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).parent
# Beside the checkout (``../shared``), or beside a directory holding it (a git worktree).
SHARED = next(
    (d / "shared" / "seeds" for d in HERE.parents[2:] if (d / "shared" / "seeds").is_dir()),
    HERE.parents[2] / "shared" / "seeds",
)
VENDORED = HERE / "seeds"


def seed(name: str) -> str:
    path = SHARED / name if (SHARED / name).exists() else VENDORED / name
    return path.read_text(encoding="utf-8")


def between(text: str, start: str, end: str) -> str:
    """The text after ``start`` up to (not including) ``end``."""
    begin = text.index(start) + len(start)
    return text[begin : text.index(end, begin)].strip("\n")


def curl_json_body(text: str, url_fragment: str) -> dict[str, str | dict[str, object]]:
    """The first ``curl -d '...'`` body posted to a URL containing ``url_fragment``."""
    import json

    for match in re.finditer(r"curl -X POST \"([^\"]+)\"(.*?)-d '(.*?)'", text, re.S):
        if url_fragment in match.group(1):
            headers = dict(re.findall(r'-H "([^:]+): ([^"]+)"', match.group(2)))
            return {"headers": headers, "body": json.loads(match.group(3))}
    raise LookupError(url_fragment)


def fastapi_listener_source() -> str:
    """The seed's FastAPI listener, verbatim."""
    return between(seed("webhook-listeners.txt"), "FastAPI (Python)\n", "Processing events")


def node_verify_source() -> str:
    """The seed's Express ``verifySignature``, verbatim but for its TypeScript annotations."""
    text = seed("webhook-listeners.txt")
    function = between(text, 'app.post("/webhooks/rex"', "app.listen(3000);")
    function = function[function.index("function verifySignature") :]
    function = re.sub(r"\((payload): string, (signature): string, (secret): string\): boolean",
                      r"(\1, \2, \3)", function)  # fmt: skip
    return 'const crypto = require("crypto");\n' + function
