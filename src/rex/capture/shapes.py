"""Shapes: which tool sent a body, and where that tool keeps the respondent's answers.

A shape is recorded on the submission (and as the lead's ``source`` when it carries none).
Its root (Typeform's ``form_response``, Calendly's ``payload``...) is searched first, so that
a form's own name or an organiser's address next to the answers does not win. A body no
shape claims is searched through the wrappers tools commonly nest answers in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from rex.capture.names import MAILCHIMP_HONEYPOT, get

# Checked in order; the first that matches is recorded.


_Signature = Callable[[Mapping[str, Any], Mapping[str, str], str], bool]
_SHAPES: tuple[tuple[str, _Signature], ...] = (
    ("typeform", lambda b, c, ua: isinstance(get(b, "form_response", "answers"), list)),
    (
        "tally",
        lambda b, c, ua: (
            b.get("eventType") == "FORM_RESPONSE" and isinstance(get(b, "data", "fields"), list)
        ),
    ),
    (
        "calendly",
        lambda b, c, ua: (
            str(b.get("event", "")).startswith("invitee.") and isinstance(b.get("payload"), Mapping)
        ),
    ),
    (
        "cal.com",
        lambda b, c, ua: (
            isinstance(b.get("triggerEvent"), str) and isinstance(b.get("payload"), Mapping)
        ),
    ),
    (
        "webflow",
        lambda b, c, ua: (
            b.get("triggerType") == "form_submission"
            or (b.get("name") is not None and isinstance(get(b, "payload", "data"), Mapping))
            or (
                isinstance(get(b, "data", "formId"), str)
                and isinstance(get(b, "data", "data"), Mapping)
            )
            # API v1: {"name": <the form>, "site", "data": {...fields}, "d": <time>, "_id"}
            or ("site" in b and "d" in b and isinstance(b.get("data"), Mapping))
        ),
    ),
    (
        "hubspot",
        lambda b, c, ua: (
            isinstance(b.get("fields"), list)
            and all(isinstance(f, Mapping) and "name" in f and "value" in f for f in b["fields"])
            and bool(b["fields"])
        ),
    ),
    (
        "jotform",
        lambda b, c, ua: (
            "rawRequest" in b
            or ("formID" in b and "submissionID" in b)
            or any(re.match(r"^q\d+_", k) for k in b)
        ),
    ),
    ("google-forms", lambda b, c, ua: isinstance(b.get("namedValues"), Mapping)),
    ("facebook-lead-ads", lambda b, c, ua: isinstance(b.get("field_data"), list)),
    (
        "paperform",
        lambda b, c, ua: (
            "submission_id" in b
            and isinstance(b.get("data"), list)
            and all(isinstance(q, Mapping) and "key" in q and "value" in q for q in b["data"])
        ),
    ),
    (
        "fillout",
        lambda b, c, ua: (
            isinstance(get(b, "submission", "questions"), list)
            # A webhook made with the REST API posts the submission itself.
            or (isinstance(b.get("questions"), list) and "submissionId" in b)
        ),
    ),
    ("formstack", lambda b, c, ua: "FormID" in b and "UniqueID" in b),
    ("cognito-forms", lambda b, c, ua: isinstance(b.get("Entry"), Mapping) and "Form" in b),
    (
        "wufoo",
        lambda b, c, ua: "HandshakeKey" in b or ("EntryId" in b and "FieldStructure" in b),
    ),
    ("unbounce", lambda b, c, ua: "data.json" in b and "page_id" in b),
    (
        "elementor",
        lambda b, c, ua: (
            (
                isinstance(b.get("fields"), Mapping)
                and isinstance(b.get("form"), Mapping)
                and isinstance(b.get("meta"), Mapping)
            )
            or str(b.get("Powered by", "")).startswith("Elementor")
        ),
    ),
    (
        "intercom",
        lambda b, c, ua: (
            b.get("type") == "notification_event" and isinstance(get(b, "data", "item"), Mapping)
        ),
    ),
    (
        "drift",
        lambda b, c, ua: "orgId" in b and isinstance(get(b, "data", "attributes"), Mapping),
    ),
    (
        "hubspot",
        lambda b, c, ua: (
            ("vid" in b or "canonical-vid" in b) and isinstance(b.get("properties"), Mapping)
        ),
    ),
    ("mailchimp", lambda b, c, ua: isinstance(get(b, "data", "merges"), Mapping)),
    (
        "netlify",
        lambda b, c, ua: (
            "form-name" in b or ("form_name" in b and isinstance(b.get("data"), Mapping))
        ),
    ),
    ("contact-form-7", lambda b, c, ua: any(k.startswith("_wpcf7") for k in c)),
    (
        "gravity-forms",
        lambda b, c, ua: any(k.startswith("gform_") or k.startswith("is_submit_") for k in b),
    ),
    ("wpforms", lambda b, c, ua: isinstance(get(b, "wpforms", "fields"), Mapping)),
    ("mailchimp", lambda b, c, ua: any(MAILCHIMP_HONEYPOT.match(k) for k in (*b, *c))),
    ("formspree", lambda b, c, ua: "_replyto" in c or "_subject" in c),
    ("zapier", lambda b, c, ua: "zapier" in ua),
    ("make", lambda b, c, ua: "make/" in ua or "integromat" in ua),
)


def _jotform_root(body: Mapping[str, Any]) -> Any:
    raw = body.get("rawRequest")
    if isinstance(raw, str) and len(raw) <= 65536:
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return None


# Where a shape keeps the respondent's answers: searched first, so that a form's own name
# (Webflow's payload.name) or an organiser (Cal.com's payload.organizer) does not win.
_ROOTS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "typeform": lambda b: b.get("form_response"),
    "tally": lambda b: b.get("data"),
    "calendly": lambda b: b.get("payload"),
    "cal.com": lambda b: b.get("payload"),
    "webflow": lambda b: get(b, "payload", "data") or get(b, "data", "data") or b.get("data"),
    "google-forms": lambda b: b.get("namedValues"),
    "netlify": lambda b: b.get("data") if isinstance(b.get("data"), Mapping) else None,
    "jotform": _jotform_root,
    "facebook-lead-ads": lambda b: b.get("field_data"),
    "paperform": lambda b: b.get("data"),
    "fillout": lambda b: get(b, "submission", "questions") or b.get("questions"),
    "intercom": lambda b: get(b, "data", "item"),
    "drift": lambda b: get(b, "data", "attributes"),
    "hubspot": lambda b: b.get("properties") if isinstance(b.get("properties"), Mapping) else None,
    "mailchimp": lambda b: get(b, "data", "merges"),
    "elementor": lambda b: b.get("fields") if isinstance(b.get("fields"), Mapping) else None,
    "cognito-forms": lambda b: None,
}

# Where tools commonly nest the respondent's answers. For a body no shape claims, the walk
# descends through these (at most four levels) and what it finds there wins over the rest
# of the body, so a form's own name or an account's address next to the answers does not.
_WRAPPERS = (
    "form_response", "submission", "payload", "data", "body", "entry", "lead", "contact",
    "record", "response", "responses", "item", "attributes", "properties", "fields", "answers",
    "values", "object", "customer", "person", "visitor", "invitee", "attendee", "respondent",
)  # fmt: skip


def _generic_root(body: Mapping[str, Any]) -> Any:
    node: Any = body
    for _ in range(4):
        if not isinstance(node, Mapping):
            break
        inner = next(
            (v for k in _WRAPPERS if isinstance(v := node.get(k), Mapping | list) and v), None
        )
        if inner is None:
            break
        node = inner
    return None if node is body else node


def recognise_shape(
    body: Mapping[str, Any],
    controls: Mapping[str, str],
    user_agent: str | None,
    names: frozenset[str] = frozenset(),
) -> str | None:
    """The tool that sent ``body``; ``names`` adds the names of fields sent empty."""
    agent = (user_agent or "").lower()
    present = {**dict.fromkeys(names, ""), **controls}
    for name, matches in _SHAPES:
        try:
            if matches(body, present, agent):
                return name
        except (TypeError, AttributeError):
            continue
    return None


def answers_root(shape: str | None, body: Mapping[str, Any]) -> Any:
    """Where ``shape`` keeps the respondent's answers (for no shape: the common wrappers)."""
    if shape in _ROOTS:
        return _ROOTS[shape](body)
    return _generic_root(body)
