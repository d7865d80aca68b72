"""Recognising a lead in whatever a form or a tool sent, without configuration.

A capture's body comes from Rex's own forms (``email``, ``first_name``...), from HTML forms
written for other services (``EMAIL``/``FNAME`` for Mailchimp, ``your-email`` for Contact
Form 7...), and from tools' webhooks that nest the answers (Typeform, Tally, Calendly...).
The rules are general, not a list of names:

1. **Field names** are normalised: camelCase split, lower-cased, separators and decoration
   (``your``, ``input``, ``field``...) and numeric parts (``email-2``, ``q4_email``) dropped.
   The normalised name then says the role: it contains ``email``; it is ``fname``,
   ``firstname``, ``givenname``...; ``lname``, ``surname``, ``familyname``...; ``name`` or
   ``fullname`` (split when no separate names came); ``phone``, ``tel``, ``mobile``...;
   ``company``, ``organization``...
2. **Labelled fields** anywhere in a JSON body: an object whose own ``type``, ``label``,
   ``title``, ``name``, ``key`` or ``ref`` says what it is, with its value in ``value``,
   ``answer``, ``text``, ``email``... (a Typeform answer ``{"type": "email", "email": ...}``,
   a Tally field ``{"label": "Email", "value": ...}``, HubSpot's ``{"name", "value"}``).
3. **Nested keys**: the same name rules on the keys of nested objects (Calendly's
   ``payload.email``), the shallowest first; a name object with ``first``/``last`` parts
   (Jotform's ``q3_name[first]``) gives both names.
4. **Last resort for the email**: the shallowest string that is an email address.

A top-level field with the exact name wins over anything recognised, so a body written for
Rex means exactly what it says. The recognised *shape* (``typeform``, ``mailchimp``...) names
the tool that sent the body, when a signature of it is present.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rex.capture.limits import (
    MAX_KEY_LENGTH,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
    MAX_STRING_LENGTH,
)
from rex.capture.schemas import ATTRIBUTION_KEYS, CaptureIn

# Everything ``CaptureIn`` knows by name: a body made only of these is taken as it is.
CANONICAL = frozenset(CaptureIn.model_fields)
CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "company")

MAX_NODES = 5000  # how much of a JSON body the recognition walks
MAX_DEPTH = 12


class Role(StrEnum):
    EMAIL = "email"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    FULL_NAME = "full_name"
    PHONE = "phone"
    COMPANY = "company"


_DECORATION = frozenset(
    {
        "your", "my", "the", "input", "field", "contact", "customer", "client", "primary",
        "main", "work", "personal", "visitor", "sender", "invitee", "attendee", "respondent",
        "please", "enter", "here", "of",
    }
)  # fmt: skip
_FIRST = frozenset(
    {"fname", "firstname", "first", "givenname", "given", "forename", "prenom", "vorname",
     "namefirst", "nombre"}
)  # fmt: skip
_LAST = frozenset(
    {"lname", "lastname", "last", "surname", "familyname", "family", "nachname",
     "namelast", "apellido", "apellidos"}
)  # fmt: skip
_FULL = frozenset({"name", "fullname", "names", "completename", "yourname", "nom", "nombre"})
_PHONE = frozenset(
    {"tel", "telephone", "phone", "mobile", "cell", "cellphone", "mobilephone",
     "phonenumber", "mobilenumber", "telnumber", "whatsapp", "handy", "telefon"}
)  # fmt: skip
_COMPANY = frozenset(
    {"company", "companyname", "organization", "organisation", "org", "orgname",
     "organizationname", "organisationname", "business", "businessname", "employer", "firm",
     "account", "accountname", "firma", "empresa"}
)  # fmt: skip

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_TOKEN = re.compile(r"[a-z0-9]+")
_NUMERIC = re.compile(r"^[a-z]?\d+$")  # "2", "q4", "input_2"'s "2"
_EMAIL_LIKE = re.compile(r"^[^@\s<>\"',;]{1,64}@[^@\s<>\"',;]+\.[^@\s<>\"',;]{2,}$")
MAILCHIMP_HONEYPOT = re.compile(r"^b_[0-9a-f]+_[0-9a-f]+$")
HONEYPOT_FIELDS = ("_gotcha", "bot-field")
CAPTCHA_FIELDS = ("cf-turnstile-response", "h-captcha-response", "g-recaptcha-response")
# Plumbing that form plugins post next to the visitor's answers: never data.
_PLUMBING = re.compile(
    r"^(form-name|gform_.*|is_submit_\d+|state_\d+|gform|wpforms\[id\]|wpforms_.*|"
    r"cf-turnstile-response|h-captcha-response|g-recaptcha-response|bot-field|"
    r"b_[0-9a-f]+_[0-9a-f]+|subscribe|submit|formid|form_id|submission_id|website)$",
    re.IGNORECASE,
)


def normalise(name: str) -> str:
    """``"Your Email-2"`` -> ``"email"``; ``"emailAddress"`` -> ``"emailaddress"``."""
    tokens = _TOKEN.findall(_CAMEL.sub(r"\1 \2", name).lower())
    kept = [t for t in tokens if t not in _DECORATION and not _NUMERIC.match(t)]
    return "".join(kept or [t for t in tokens if not _NUMERIC.match(t)])


def role_of(name: str) -> Role | None:
    """What a field called ``name`` holds, or ``None``."""
    key = normalise(name)
    if not key:
        return None
    if "email" in key or key in ("mail", "emailaddress", "correo"):
        return Role.EMAIL
    if key in _FIRST or key.startswith("firstname") or key.endswith("firstname"):
        return Role.FIRST_NAME
    if key in _LAST or key.startswith("lastname") or key.endswith(("lastname", "surname")):
        return Role.LAST_NAME
    if key in _FULL or key.endswith("fullname"):
        return Role.FULL_NAME
    if key in _PHONE or "phone" in key or key.startswith("tel"):
        return Role.PHONE
    if key in _COMPANY or "company" in key or "organization" in key or "organisation" in key:
        return Role.COMPANY
    return None


def role_of_label(label: str) -> Role | None:
    """A question's label ("What is your email address?"): the name rules, then words."""
    role = role_of(label)
    if role is not None:
        return role
    words = set(_TOKEN.findall(label.lower()))
    if words & {"email", "mail"}:
        return Role.EMAIL
    if "name" in words:
        if words & {"first", "given"}:
            return Role.FIRST_NAME
        if words & {"last", "family", "surname"}:
            return Role.LAST_NAME
        if words & {"full", "your"} or words == {"name"}:
            return Role.FULL_NAME
    if words & {"phone", "mobile", "telephone"}:
        return Role.PHONE
    if words & {"company", "organization", "organisation"}:
        return Role.COMPANY
    return None


def looks_like_email(value: object) -> bool:
    return isinstance(value, str) and bool(_EMAIL_LIKE.match(value.strip()))


def _scalar(value: object) -> str | None:
    """A field's text: strings and numbers; a one-item list (Google Forms' ``namedValues``)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


@dataclass(order=True)
class _Candidate:
    rank: tuple[int, int, int]
    value: str = field(compare=False)
    path: str = field(compare=False)


@dataclass
class Found:
    """What recognition found: one value per role, and where each came from."""

    values: dict[Role, str] = field(default_factory=dict)
    paths: dict[Role, str] = field(default_factory=dict)
    consumed: set[str] = field(default_factory=set)  # top-level keys used up


_LABEL_KEYS = (
    "label", "title", "question", "name", "key", "ref", "field_name", "fieldName", "custom_key",
    "question_text", "questionText", "description",
)  # fmt: skip
# Where an object describing one field says what kind of input it is (Tally's INPUT_EMAIL,
# Formstack's field_type, Fillout's EmailInput...).
_TYPE_KEYS = ("type", "field_type", "fieldType", "inputType", "input_type", "kind")
_VALUE_KEYS = (
    "value", "answer", "text", "email", "phone_number", "phone", "values", "response",
    "answers", "content",
)  # fmt: skip


def _labelled(node: Mapping[str, Any]) -> Iterator[tuple[Role, str, int]]:
    """(role, value, strength) for an object that describes one field."""
    value = None
    for key in _VALUE_KEYS:
        if key in node:
            value = _scalar(node[key])
            if value is not None:
                break
    if value is None:
        return
    sub = node.get("field")
    kind = next((k for key in _TYPE_KEYS if isinstance(k := node.get(key), str)), None)
    if kind is None and isinstance(sub, Mapping):
        kind = sub.get("type")
    if isinstance(kind, str):
        role = role_of(kind)
        if role in (Role.EMAIL, Role.PHONE):
            yield role, value, 0
    for key in _LABEL_KEYS:
        label = node.get(key)
        if isinstance(label, str) and label and label != value:
            role = role_of_label(label)
            if role is not None:
                yield role, value, 1
                return
    if isinstance(sub, Mapping):
        ref = sub.get("ref")
        if isinstance(ref, str) and (role := role_of_label(ref)) is not None:
            yield role, value, 1


def find(body: Mapping[str, Any] | list[Any], *, titles: Mapping[str, str] | None = None) -> Found:
    """Walk ``body`` (breadth first, bounded) and pick the best value for each role.

    Ranks: exact top-level names, then top-level names by rule, then labelled objects,
    then nested keys; shallower before deeper; earlier before later.
    """
    candidates: dict[Role, list[_Candidate]] = {}
    order = 0

    def add(role: Role, value: str, tier: int, depth: int, path: str) -> None:
        nonlocal order
        if role is Role.EMAIL and not looks_like_email(value):
            return
        order += 1
        candidates.setdefault(role, []).append(_Candidate((tier, depth, order), value, path))

    titles = titles or {}
    queue: list[tuple[Any, str, int]] = [(body, "", 0)]
    seen = 0
    fallback_email: _Candidate | None = None
    while queue and seen < MAX_NODES:
        next_queue: list[tuple[Any, str, int]] = []
        for node, path, depth in queue:
            seen += 1
            if isinstance(node, Mapping):
                if depth > 0:
                    for role, value, strength in _labelled(node):
                        add(role, value, 2 + strength, depth, path)
                    # Typeform: an answer's field id names a question in the definition.
                    sub = node.get("field")
                    if isinstance(sub, Mapping) and isinstance(sub.get("id"), str):
                        title = titles.get(sub["id"])
                        answer = next(
                            (v for k in _VALUE_KEYS if (v := _scalar(node.get(k))) is not None),
                            None,
                        )
                        titled = role_of_label(title) if title else None
                        if answer and titled is not None:
                            add(titled, answer, 3, depth, path)
                parts = _name_parts(node)
                if parts and depth > 0:
                    first, last = parts
                    add(Role.FIRST_NAME, first, 4, depth, path + ".first")
                    if last:
                        add(Role.LAST_NAME, last, 4, depth, path + ".last")
                for key, child in node.items():
                    if not isinstance(key, str):
                        continue
                    child_path = f"{path}.{key}" if path else key
                    text = _scalar(child)
                    if text is not None:
                        if depth == 0 and key in CONTACT_FIELDS:
                            add(Role(key), text, 0, 0, child_path)
                        elif depth == 0 and key == "name":
                            add(Role.FULL_NAME, text, 0, 0, child_path)
                        elif (named := role_of(key)) is not None:
                            add(named, text, 1 if depth == 0 else 5, depth, child_path)
                        if fallback_email is None and looks_like_email(text):
                            order += 1
                            fallback_email = _Candidate((9, depth, order), text, child_path)
                        if depth == 0 and "\n" in text and " = " in text:
                            # Sub-fields as lines (Formstack's urlencoded "first = Ada\nlast =
                            # Lovelace"): a name object, like Jotform's.
                            sub_parts = _name_parts(_subfield_lines(text))
                            if sub_parts and role_of(key) in (Role.FULL_NAME, None):
                                add(Role.FIRST_NAME, sub_parts[0], 1, 1, child_path + ".first")
                                if sub_parts[1]:
                                    add(Role.LAST_NAME, sub_parts[1], 1, 1, child_path + ".last")
                        elif depth == 0 and isinstance(child, str) and len(child) > 1:
                            # A JSON document posted as one form field: Jotform's rawRequest,
                            # Unbounce's data.json, Wufoo's FieldStructure...
                            embedded = _embedded_json(child)
                            if embedded is not None and depth < MAX_DEPTH:
                                next_queue.append((embedded, child_path, depth + 1))
                    elif isinstance(child, Mapping):
                        if depth == 0:
                            # A name object at the top level: Jotform's q3_name[first]/[last].
                            sub_parts = _name_parts(child)
                            if sub_parts and role_of(key) in (Role.FULL_NAME, None):
                                add(Role.FIRST_NAME, sub_parts[0], 1, 1, child_path + ".first")
                                if sub_parts[1]:
                                    add(Role.LAST_NAME, sub_parts[1], 1, 1, child_path + ".last")
                        # An object named for its role that holds the value: HubSpot's
                        # properties.email.value, Formstack's Email{value, field_type},
                        # Cal.com's responses.email{label, value}, Elementor's fields[email].
                        named = role_of(key)
                        if named is not None:
                            held = next(
                                (v for k in _HELD_KEYS if (v := _scalar(child.get(k))) is not None),
                                None,
                            )
                            if held is not None:
                                add(named, held, 1 if depth == 0 else 2, depth + 1, child_path)
                    if isinstance(child, Mapping | list) and depth < MAX_DEPTH:
                        next_queue.append((child, child_path, depth + 1))
            elif isinstance(node, list):
                for index, child in enumerate(node):
                    if isinstance(child, Mapping | list) and depth < MAX_DEPTH:
                        next_queue.append((child, f"{path}.{index}", depth + 1))
        queue = next_queue
    if Role.EMAIL not in candidates and fallback_email is not None:
        candidates[Role.EMAIL] = [fallback_email]
    found = Found()
    for role, options in candidates.items():
        best = min(options)
        found.values[role] = best.value
        found.paths[role] = best.path
        found.consumed.add(best.path.split(".", 1)[0])
    return found


_HELD_KEYS = ("value", "answer", "text", "raw_value", "values")


_SUBFIELD_LINE = re.compile(r"^\s*([A-Za-z][\w ]{0,40}?)\s*=\s*(.*?)\s*$")


def _subfield_lines(text: str) -> dict[str, str]:
    """``"first = Ada\nlast = Lovelace"`` -> ``{"first": "Ada", "last": "Lovelace"}``."""
    parts: dict[str, str] = {}
    for line in text.splitlines()[:8]:
        match = _SUBFIELD_LINE.match(line)
        if match is None:
            return {}
        parts[match.group(1)] = match.group(2)
    return parts


def _embedded_json(text: str) -> Any:
    """The object or list a string holds as JSON (``'{"q4_email": ...}'``), else None."""
    start = text.lstrip()[:1]
    if start not in ("{", "[") or len(text) > 65536:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, Mapping | list) else None


def _name_parts(node: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """``{"first": "Ada", "last": "Lovelace"}`` (any name rules) -> ``("Ada", "Lovelace")``."""
    if len(node) > 6:
        return None
    first = last = None
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        role = role_of(key)
        text = _scalar(value)
        if text is None:
            continue
        if role is Role.FIRST_NAME:
            first = text
        elif role is Role.LAST_NAME:
            last = text
    return (first, last) if first else None


def split_full_name(full: str) -> tuple[str, str | None]:
    """``"Ada King Lovelace"`` -> ``("Ada King", "Lovelace")``; one word is a first name."""
    words = full.split()
    if len(words) <= 1:
        return full.strip(), None
    return " ".join(words[:-1]), words[-1]


# ---------------------------------------------------------------------------------------
# Shapes: which tool sent the body. Checked in order; the first that matches is recorded.


def _get(body: Mapping[str, Any], *path: str) -> Any:
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


_Signature = Callable[[Mapping[str, Any], Mapping[str, str], str], bool]
_SHAPES: tuple[tuple[str, _Signature], ...] = (
    ("typeform", lambda b, c, ua: isinstance(_get(b, "form_response", "answers"), list)),
    (
        "tally",
        lambda b, c, ua: (
            b.get("eventType") == "FORM_RESPONSE" and isinstance(_get(b, "data", "fields"), list)
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
            or (b.get("name") is not None and isinstance(_get(b, "payload", "data"), Mapping))
            or (
                isinstance(_get(b, "data", "formId"), str)
                and isinstance(_get(b, "data", "data"), Mapping)
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
    ("fillout", lambda b, c, ua: isinstance(_get(b, "submission", "questions"), list)),
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
            b.get("type") == "notification_event" and isinstance(_get(b, "data", "item"), Mapping)
        ),
    ),
    (
        "drift",
        lambda b, c, ua: "orgId" in b and isinstance(_get(b, "data", "attributes"), Mapping),
    ),
    (
        "hubspot",
        lambda b, c, ua: (
            ("vid" in b or "canonical-vid" in b) and isinstance(b.get("properties"), Mapping)
        ),
    ),
    ("mailchimp", lambda b, c, ua: isinstance(_get(b, "data", "merges"), Mapping)),
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
    ("wpforms", lambda b, c, ua: isinstance(_get(b, "wpforms", "fields"), Mapping)),
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
    "webflow": lambda b: _get(b, "payload", "data") or _get(b, "data", "data") or b.get("data"),
    "google-forms": lambda b: b.get("namedValues"),
    "netlify": lambda b: b.get("data") if isinstance(b.get("data"), Mapping) else None,
    "jotform": _jotform_root,
    "facebook-lead-ads": lambda b: b.get("field_data"),
    "paperform": lambda b: b.get("data"),
    "fillout": lambda b: _get(b, "submission", "questions"),
    "intercom": lambda b: _get(b, "data", "item"),
    "drift": lambda b: _get(b, "data", "attributes"),
    "hubspot": lambda b: b.get("properties") if isinstance(b.get("properties"), Mapping) else None,
    "mailchimp": lambda b: _get(b, "data", "merges"),
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


# ---------------------------------------------------------------------------------------


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


def _typeform_titles(body: Mapping[str, Any]) -> dict[str, str]:
    fields = _get(body, "form_response", "definition", "fields")
    titles: dict[str, str] = {}
    if isinstance(fields, list):
        for item in fields:
            if isinstance(item, Mapping) and isinstance(item.get("id"), str):
                title = item.get("title")
                if isinstance(title, str):
                    titles[item["id"]] = title
    return titles


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
    titles = _typeform_titles(body)
    found = find(body, titles=titles)
    root = _ROOTS[shape](body) if shape in _ROOTS else _generic_root(body)
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
            lead[role.value] = body[role.value]
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
        if key not in used and key not in skip and not _PLUMBING.match(key)
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
