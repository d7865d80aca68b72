"""Recognising a lead in whatever a form or a tool sent, without configuration.

A capture's body comes from Rex's own forms (``email``, ``first_name``...), from HTML forms
written for other services (``EMAIL``/``FNAME`` for Mailchimp, ``your-email`` for Contact
Form 7...), and from tools' webhooks that nest the answers (Typeform, Tally, Calendly...).
The rules are general, not a list of names, and live in three modules:

- :mod:`rex.capture.names`: what a field's name or label says it holds;
- :mod:`rex.capture.walk`: every value of a body a role could claim, ranked;
- :mod:`rex.capture.shapes`: which tool sent the body, and where it keeps the answers.

Here they are put together into a lead. A top-level field with the exact name wins over
anything recognised, so a body written for Rex means exactly what it says; a body made only
of such names (:func:`is_plain`) skips recognition altogether.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rex.capture.limits import (
    MAX_KEY_LENGTH,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
    MAX_STRING_LENGTH,
)
from rex.capture.names import (
    CAPTCHA_FIELDS,
    HONEYPOT_FIELDS,
    MAILCHIMP_HONEYPOT,
    PLUMBING,
    Role,
    looks_like_email,
    role_of,
    split_full_name,
)
from rex.capture.schemas import ATTRIBUTION_KEYS, CaptureIn
from rex.capture.shapes import answers_root, recognise_shape
from rex.capture.walk import field_titles, find

__all__ = [
    "CAPTCHA_FIELDS",
    "HONEYPOT_FIELDS",
    "MAILCHIMP_HONEYPOT",
    "Recognised",
    "Role",
    "fit_extras",
    "is_plain",
    "recognise",
    "role_of",
    "split_full_name",
]

# Everything ``CaptureIn`` knows by name: a body made only of these is taken as it is.
CANONICAL = frozenset(CaptureIn.model_fields)


@dataclass
class Recognised:
    """A lead dict for ``CaptureIn`` (canonical fields, attribution, fitting extras)."""

    lead: dict[str, Any]
    shape: str | None
    dropped: list[str]  # extras left out of metadata (nested or over its limits)


def is_plain(body: Mapping[str, Any]) -> bool:
    """A body written for Rex (only names ``CaptureIn`` knows, with an ``email``): taken as
    it is, exactly as before recognition existed (and at the same speed)."""
    return "email" in body and all(key in CANONICAL for key in body)


def recognise(
    body: Mapping[str, Any],
    controls: Mapping[str, str],
    *,
    user_agent: str | None = None,
    mapped: Mapping[str, Any] | None = None,
    skip: frozenset[str] = frozenset(),
    names: frozenset[str] = frozenset(),
) -> Recognised:
    """Turn any body into a lead: mapped fields first, then recognised ones, then extras.

    ``mapped`` holds the values a form's ``field_map`` resolved (contact field ->
    value; ``metadata.<key>`` entries too); ``skip`` names fields never kept (honeypots).
    """
    shape = recognise_shape(body, controls, user_agent, names)
    titles = field_titles(body)
    found = find(body, titles=titles)
    root = answers_root(shape, body)
    if isinstance(root, Mapping | list) and root:
        in_root = find(root, titles=titles)
        found.values.update(in_root.values)
    lead: dict[str, Any] = {}
    # Formspree's convention: the visitor's address in _replyto.
    if Role.EMAIL not in found.values and looks_like_email(controls.get("_replyto")):
        found.values[Role.EMAIL] = controls["_replyto"].strip()
    for role in (Role.EMAIL, Role.FIRST_NAME, Role.LAST_NAME, Role.PHONE, Role.COMPANY):
        if role.value in body:
            # The exact name wins, as sent: CaptureIn says what is wrong with it, if anything.
            sent = body[role.value]
            if isinstance(sent, list) and len(sent) == 1 and isinstance(sent[0], str):
                sent = sent[0]  # one value in a list (Unbounce's JSON, Google's namedValues)
            lead[role.value] = sent
        elif role in found.values:
            lead[role.value] = found.values[role]
    full = found.values.get(Role.FULL_NAME)
    if full and "first_name" not in lead and "last_name" not in lead:
        first, last = split_full_name(full)
        lead["first_name"] = first
        if last and "last_name" not in lead:
            lead["last_name"] = last
    metadata: dict[str, Any] = {}
    for key, value in (mapped or {}).items():
        if key.startswith("metadata."):
            metadata[key.removeprefix("metadata.")] = value
        elif value is not None:
            lead[key] = value
    explicit = body.get("metadata")
    if isinstance(explicit, Mapping):
        lead["metadata"] = {**explicit, **metadata}
    elif metadata:
        lead["metadata"] = metadata
    elif explicit is not None:
        lead["metadata"] = explicit  # not an object: CaptureIn says what is wrong
    if "consent" in body:
        lead["consent"] = body["consent"]
    for key in ("source", *ATTRIBUTION_KEYS):
        if key in body and key not in lead:
            lead[key] = body[key]
    used = found.consumed | set(lead) | {"metadata", "consent", "name"}
    extras = {
        key: value
        for key, value in body.items()
        if key not in used and key not in skip and not PLUMBING.match(key)
    }
    kept, dropped = fit_extras(extras, lead.get("metadata"))
    lead.update(kept)
    return Recognised(lead, shape, dropped)


def _cost(value: Any, depth: int) -> int | None:
    """Keys and list items ``value`` adds to metadata, or None when it breaks a limit."""
    if isinstance(value, str):
        return 0 if len(value) <= MAX_STRING_LENGTH else None
    if isinstance(value, Mapping | list):
        if depth >= MAX_METADATA_DEPTH:
            return None
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        total = 0
        for key, child in items:
            if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
                return None
            inner = _cost(child, depth + 1)
            if inner is None:
                return None
            total += 1 + inner
        return total
    return 0


def fit_extras(extras: Mapping[str, Any], metadata: Any) -> tuple[dict[str, Any], list[str]]:
    """The unknown fields that fit in metadata's limits (next to ``metadata`` itself), in
    order; the names of the others (kept only in the submission's raw body)."""
    used = _cost(metadata, 0) if isinstance(metadata, Mapping) else 0
    room = MAX_METADATA_KEYS - (used or 0)
    kept: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in extras.items():
        cost = _cost(value, 1)
        if len(key) > MAX_KEY_LENGTH or cost is None or cost + 1 > room:
            dropped.append(key)
            continue
        if key in ATTRIBUTION_KEYS and not isinstance(value, str):
            dropped.append(key)
            continue
        room -= cost + 1
        kept[key] = value
    return kept, dropped
