"""The embed snippet of Settings: a capture form marked ``data-rex`` plus the ``embed.js``
tag, as docs/capture.md shows it, built from what the owner picks. Every value picked is
escaped for the attribute or text it lands in: the snippet is pasted into other sites."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

OPTIONAL_FIELDS = {
    "first_name": ("text", "First name"),
    "last_name": ("text", "Last name"),
    "company": ("text", "Company"),
    "phone": ("tel", "Phone"),
}


@dataclass(frozen=True)
class SnippetOptions:
    base_url: str
    """Where the workspace's captures go (``https://acme.rexgtm.com``), without a slash."""
    form_id: str | None = None
    fields: list[str] = field(default_factory=lambda: ["first_name"])
    success_message: str = "Thanks! We will be in touch."
    button: str = "Sign up"
    consent_text: str | None = None
    next_url: str | None = None
    source: str | None = None


def _a(value: str) -> str:
    return escape(value, quote=True)


def embed_snippet(options: SnippetOptions) -> str:
    """The HTML to paste (plain text: the page shows it escaped)."""
    base = options.base_url.rstrip("/")
    action = f"{base}/capture" + (f"/{options.form_id}" if options.form_id else "")
    lines = [
        f'<form data-rex data-rex-success="{_a(options.success_message)}"',
        f'      action="{_a(action)}" method="post">',
        '  <label>Email <input type="email" name="email" autocomplete="email" required></label>',
    ]
    for name in options.fields:
        if name not in OPTIONAL_FIELDS:
            continue
        kind, label = OPTIONAL_FIELDS[name]
        lines.append(f'  <label>{label} <input type="{kind}" name="{name}"></label>')
    if options.consent_text:
        text = _a(options.consent_text)
        lines.append(f'  <label><input type="checkbox" name="consent" value="{text}">')
        lines.append(f"    {escape(options.consent_text, quote=False)}</label>")
    if options.source:
        lines.append(f'  <input type="hidden" name="source" value="{_a(options.source)}">')
    if options.next_url:
        lines.append(f'  <input type="hidden" name="_next" value="{_a(options.next_url)}">')
    lines += [
        '  <input type="text" name="_gotcha" tabindex="-1" autocomplete="off" aria-hidden="true"',
        '         style="position:absolute;left:-10000px">',
        f'  <button type="submit">{escape(options.button, quote=False)}</button>',
        "</form>",
        f'<script src="{_a(base)}/embed.js" defer></script>',
    ]
    return "\n".join(lines) + "\n"
