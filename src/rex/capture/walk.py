"""The walk: every value of a body a role could claim, ranked, the best one per role.

1. **Exact and ruled names** at the top level (``email``, ``EMAIL``, ``your-email``...).
2. **Labelled fields** anywhere in a JSON body: an object whose own ``type``, ``label``,
   ``title``, ``name``, ``key`` or ``ref`` says what it is, with its value in ``value``,
   ``answer``, ``text``, ``email``... (a Typeform answer ``{"type": "email", "email": ...}``,
   a Tally field ``{"label": "Email", "value": ...}``, HubSpot's ``{"name", "value"}``).
3. **Nested keys**: the same name rules on the keys of nested objects (Calendly's
   ``payload.email``), the shallowest first; a name object with ``first``/``last`` parts
   (Jotform's ``q3_name[first]``) gives both names.
4. **Last resort for the email**: the shallowest string that is an email address.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rex.capture.names import (
    CONTACT_FIELDS,
    Role,
    embedded_json,
    looks_like_email,
    name_parts,
    role_of,
    role_of_label,
    scalar,
    subfield_lines,
)

MAX_NODES = 5000  # how much of a JSON body the recognition walks
MAX_DEPTH = 12


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


# Looked up case-insensitively: "label", "Label" and "LABEL" alike.
_LABEL_KEYS = (
    "label", "title", "question", "name", "key", "ref", "field_name", "fieldname", "custom_key",
    "question_text", "questiontext", "description",
)  # fmt: skip
# Where an object describing one field says what kind of input it is (Tally's INPUT_EMAIL,
# Formstack's field_type, Fillout's EmailInput...).
_TYPE_KEYS = ("type", "field_type", "fieldtype", "inputtype", "input_type", "kind")
_VALUE_KEYS = (
    "value", "answer", "text", "email", "phone_number", "phone", "values", "response",
    "answers", "content",
)  # fmt: skip


def _labelled(node: Mapping[str, Any]) -> Iterator[tuple[Role, str, int]]:
    """(role, value, strength) for an object that describes one field."""
    node = {k.lower(): v for k, v in node.items() if isinstance(k, str)}
    value = None
    for key in _VALUE_KEYS:
        if key in node:
            value = scalar(node[key])
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
                            (v for k in _VALUE_KEYS if (v := scalar(node.get(k))) is not None),
                            None,
                        )
                        titled = role_of_label(title) if title else None
                        if answer and titled is not None:
                            add(titled, answer, 3, depth, path)
                parts = name_parts(node)
                if parts and depth > 0:
                    first, last = parts
                    add(Role.FIRST_NAME, first, 4, depth, path + ".first")
                    if last:
                        add(Role.LAST_NAME, last, 4, depth, path + ".last")
                for key, child in node.items():
                    if not isinstance(key, str):
                        continue
                    child_path = f"{path}.{key}" if path else key
                    text = scalar(child)
                    if text is not None:
                        if depth == 0 and key in CONTACT_FIELDS:
                            add(Role(key), text, 0, 0, child_path)
                        elif depth == 0 and key == "name":
                            add(Role.FULL_NAME, text, 0, 0, child_path)
                        elif (named := role_of(key)) is not None:
                            add(named, text, 1 if depth == 0 else 5, depth, child_path)
                        elif (title := titles.get(key)) and (by_title := role_of_label(title)):
                            # A value keyed by a field id the definition titles (Wufoo).
                            add(by_title, text, 3, depth, child_path)
                        if fallback_email is None and looks_like_email(text):
                            order += 1
                            fallback_email = _Candidate((9, depth, order), text, child_path)
                        if depth == 0 and "\n" in text and " = " in text:
                            # Sub-fields as lines (Formstack's urlencoded "first = Ada\nlast =
                            # Lovelace"): a name object, like Jotform's.
                            sub_parts = name_parts(subfield_lines(text))
                            if sub_parts and role_of(key) in (Role.FULL_NAME, None):
                                add(Role.FIRST_NAME, sub_parts[0], 1, 1, child_path + ".first")
                                if sub_parts[1]:
                                    add(Role.LAST_NAME, sub_parts[1], 1, 1, child_path + ".last")
                        elif depth == 0 and isinstance(child, str) and len(child) > 1:
                            # A JSON document posted as one form field: Jotform's rawRequest,
                            # Unbounce's data.json, Wufoo's FieldStructure...
                            embedded = embedded_json(child)
                            if embedded is not None and depth < MAX_DEPTH:
                                next_queue.append((embedded, child_path, depth + 1))
                    elif isinstance(child, Mapping):
                        if depth == 0:
                            # A name object at the top level: Jotform's q3_name[first]/[last].
                            sub_parts = name_parts(child)
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
                                (v for k in _HELD_KEYS if (v := scalar(child.get(k))) is not None),
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


_ID_KEYS = ("id", "ID", "Id", "field_id", "fieldId", "key")
_TITLE_KEYS = ("title", "Title", "label", "Label", "name", "Name", "question")
_SUB_KEYS = ("SubFields", "subfields", "sub_fields", "subFields", "inputs")
MAX_TITLE_NODES = 2000


def _title_of(node: Mapping[str, Any]) -> str | None:
    return next((t for k in _TITLE_KEYS if isinstance(t := node.get(k), str) and t), None)


def field_titles(body: Mapping[str, Any]) -> dict[str, str]:
    """Field ids and the titles a form's definition gives them, anywhere in ``body``.

    A definition is an object with an id and a title (or label) and no answer of its own:
    Typeform's ``definition.fields``, Wufoo's ``FieldStructure`` (a JSON string, its
    ``SubFields`` titled "Name First", "Name Last"), Gravity Forms' ``inputs``... The walk
    then reads a value keyed by such an id (Wufoo's ``Field3``) by its title.
    """
    titles: dict[str, str] = {}
    queue: list[Any] = [body]
    seen = 0
    while queue and seen < MAX_TITLE_NODES:
        node = queue.pop(0)
        seen += 1
        if isinstance(node, list):
            queue.extend(item for item in node if isinstance(item, Mapping | list))
            continue
        if not isinstance(node, Mapping):
            continue
        ident = next((i for k in _ID_KEYS if isinstance(i := node.get(k), str | int)), None)
        title = _title_of(node)
        if ident is not None and title is not None and not any(k in node for k in _VALUE_KEYS):
            titles.setdefault(str(ident), title)
            for key in _SUB_KEYS:
                subs = node.get(key)
                for sub in subs if isinstance(subs, list) else ():
                    if not isinstance(sub, Mapping):
                        continue
                    sub_id = next(
                        (i for k in _ID_KEYS if isinstance(i := sub.get(k), str | int)), None
                    )
                    sub_title = _title_of(sub)
                    if sub_id is not None and sub_title is not None:
                        # The sub-field's own id wins over its parent's (Wufoo's Name field
                        # is Field1, its first part is Field1 too).
                        titles[str(sub_id)] = f"{title} {sub_title}"
        for value in node.values():
            if isinstance(value, Mapping | list):
                queue.append(value)
            elif node is body and isinstance(value, str) and len(value) > 1:
                embedded = embedded_json(value)  # Wufoo's FieldStructure, a JSON string
                if embedded is not None:
                    queue.append(embedded)
    return titles
