"""What a field's name (or label) says it holds: the rules on names, without a body.

Field names are normalised (camelCase split, lower-cased, separators, decoration such as
``your``/``input``/``field`` and numeric parts such as ``email-2``/``q4_email`` dropped), and
the normalised name says the role: it contains ``email``; it is ``fname``, ``firstname``,
``givenname``...; ``lname``, ``surname``, ``familyname``...; ``name`` or ``fullname`` (split
when no separate names came); ``phone``, ``tel``, ``mobile``...; ``company``,
``organization``... A question's label ("What is your email address?") falls back to words.

Also here: the value helpers the walk (:mod:`rex.capture.walk`) and the shapes
(:mod:`rex.capture.shapes`) share, and the names of honeypot, CAPTCHA and plumbing fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "company")


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
        # Elementor's default-data webhook names an unlabelled field "No Label <id>".
        "no", "label",
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


class _HoneypotNames(tuple[str, ...]):
    """The known honeypot names (``in`` takes a case-folded name), and the general rule:
    a name that says it is one (``_honeypot``, ``honey-pot``, ``my_gotcha``, ``hpot``)."""

    __slots__ = ()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if tuple.__contains__(self, name.casefold()):
            return True
        joined = "".join(_TOKEN.findall(name.lower()))
        return (
            any(word in joined for word in ("honeypot", "gotcha", "botfield")) or joined == "hpot"
        )


HONEYPOT_FIELDS = _HoneypotNames(("_gotcha", "bot-field"))
CAPTCHA_FIELDS = ("cf-turnstile-response", "h-captcha-response", "g-recaptcha-response")
# Plumbing that form plugins post next to the visitor's answers: never data.
PLUMBING = re.compile(
    r"^(form-name|gform_.*|is_submit_\d+|state_\d+|gform|wpforms\[id\]|wpforms_.*|"
    r"cf-turnstile-response|h-captcha-response|g-recaptcha-response|bot-field|"
    r"b_[0-9a-f]+_[0-9a-f]+|subscribe|submit|formid|form_id|submission_id|website|"
    r".*honey_?pot.*)$",
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


def scalar(value: object) -> str | None:
    """A field's text: strings and numbers; a one-item list (Google Forms' ``namedValues``)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return text or None
    return None


_SUBFIELD_LINE = re.compile(r"^\s*([A-Za-z][\w ]{0,40}?)\s*=\s*(.*?)\s*$")


def subfield_lines(text: str) -> dict[str, str]:
    """``"first = Ada\nlast = Lovelace"`` -> ``{"first": "Ada", "last": "Lovelace"}``."""
    parts: dict[str, str] = {}
    for line in text.splitlines()[:8]:
        match = _SUBFIELD_LINE.match(line)
        if match is None:
            return {}
        parts[match.group(1)] = match.group(2)
    return parts


def embedded_json(text: str) -> Any:
    """The object or list a string holds as JSON (``'{"q4_email": ...}'``), else None."""
    start = text.lstrip()[:1]
    if start not in ("{", "[") or len(text) > 65536:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, Mapping | list) else None


def name_parts(node: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """``{"first": "Ada", "last": "Lovelace"}`` (any name rules) -> ``("Ada", "Lovelace")``."""
    if len(node) > 12:  # a name object (Cognito's Name has First, Middle, Last, Prefix...)
        return None
    first = last = None
    for key, value in node.items():
        if not isinstance(key, str):
            continue
        role = role_of(key)
        text = scalar(value)
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


def get(body: Mapping[str, Any], *path: str) -> Any:
    """``body[path[0]][path[1]]...``, or None where the path leaves the objects."""
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node
