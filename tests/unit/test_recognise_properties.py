"""The recognition rules hold beyond the named platforms: generated bodies in the shapes tools
share (answer lists with labels, fields keyed by ids with titles, bracketed form names, email
keys in any case and decoration, full names, honeypot names), checked without a server."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rex.capture.body import fields_from_form
from rex.capture.recognise import HONEYPOT_FIELDS, MAILCHIMP_HONEYPOT, recognise, split_full_name

EMAIL = "ada.lovelace@example.com"
FAST = settings(max_examples=60, deadline=None)

words = st.text(alphabet=string.ascii_letters, min_size=2, max_size=10).map(str.capitalize)
emails = st.builds(
    "{}.{}@{}.example".format,
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8),
    st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8),
    st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8),
)
ids = st.text(alphabet=string.ascii_letters + string.digits, min_size=3, max_size=10)


def _recase(text: str, flips: list[bool]) -> str:
    return "".join(c.swapcase() if i < len(flips) and flips[i] else c for i, c in enumerate(text))


@st.composite
def email_keys(draw: st.DrawFn) -> str:
    """``EMAIL``, ``Your-Email-2``, ``work_e_mail``, ``emailAddress``... in any case."""
    core = draw(st.sampled_from(["email", "e-mail", "e_mail", "email address", "emailaddress"]))
    core = _recase(core, draw(st.lists(st.booleans(), min_size=len(core), max_size=len(core))))
    prefix = draw(st.sampled_from(["", "your", "work", "contact", "primary", "visitor"]))
    suffix = draw(st.sampled_from(["", "2", "1", "field"]))
    sep = draw(st.sampled_from(["-", "_", " ", "."]))
    return sep.join(part for part in (prefix, core, suffix) if part)


@given(key=email_keys(), email=emails)
@FAST
def test_an_email_key_in_any_case_and_decoration(key: str, email: str) -> None:
    body = {key: email, "message": "Hello", "page": "https://example.com/contact"}
    assert recognise(body, {}).lead["email"] == email


@st.composite
def answer_lists(draw: st.DrawFn) -> tuple[dict[str, Any], str, str, str]:
    """A body with an answers array anywhere: label and value under the usual keys, the
    answers in any order between other questions, under any wrapper."""
    first, last, email = draw(words), draw(words), draw(emails)
    label_key = draw(st.sampled_from(["label", "title", "question", "name"]))
    value_key = draw(st.sampled_from(["value", "answer", "text"]))
    labels = {
        "email": draw(
            st.sampled_from(["Email", "Email address", "Your email", "E-mail", "Work email"])
        ),
        "first": draw(st.sampled_from(["First name", "Given name", "First Name", "Vorname"])),
        "last": draw(st.sampled_from(["Last name", "Surname", "Family name", "Nachname"])),
    }
    answers = [
        {label_key: labels["email"], value_key: email},
        {label_key: labels["first"], value_key: first},
        {label_key: labels["last"], value_key: last},
        {label_key: "Company size", value_key: "11-50"},
        {label_key: "How did you hear about us?", value_key: "A friend"},
    ]
    answers = draw(st.permutations(answers))
    if draw(st.booleans()):
        answers = [{**a, "id": f"q{i}", "type": "text"} for i, a in enumerate(answers)]
    path = draw(
        st.sampled_from(
            [("answers",), ("data", "fields"), ("payload", "submission", "answers"),
             ("form_response", "answers"), ("event", "lead", "responses"), ("x", "y", "z")]
        )
    )  # fmt: skip
    body: Any = answers
    for key in reversed(path):
        body = {key: body}
    body["form"] = {"name": "Contact us", "owner": {"email": "owner@acme.example"}}
    return body, email, first, last


@given(answer_lists())
@FAST
def test_labelled_answers_anywhere(case: tuple[dict[str, Any], str, str, str]) -> None:
    body, email, first, last = case
    lead = recognise(body, {}).lead
    assert (lead["email"], lead["first_name"], lead["last_name"]) == (email, first, last)


@given(
    first=words,
    last=words,
    email=emails,
    names=st.lists(ids, min_size=4, max_size=4, unique=True),
    title_key=st.sampled_from(["title", "label", "Title", "Label"]),
    nested=st.booleans(),
)
@FAST
def test_fields_keyed_by_id_with_titles(
    first: str, last: str, email: str, names: list[str], title_key: str, nested: bool
) -> None:
    titles = ["First name", "Last name", "Email address", "Message"]
    values = [first, last, email, "Hello"]
    if nested:
        # {"fields": {"<id>": {"title": "Email address", "value": ...}}}
        body: dict[str, Any] = {
            "fields": {
                id_: {title_key: title, "value": value, "type": "text"}
                for id_, title, value in zip(names, titles, values, strict=True)
            }
        }
    else:
        # Values keyed by id next to a definition (as a JSON string, like Wufoo's).
        definition = [{"ID": id_, title_key: t} for id_, t in zip(names, titles, strict=True)]
        body = dict(zip(names, values, strict=True))
        body["structure"] = json.dumps({"Fields": definition})
    lead = recognise(body, {}).lead
    assert (lead["email"], lead["first_name"], lead["last_name"]) == (email, first, last)


@given(
    wrapper=st.sampled_from(["contact", "lead", "fields", "form_fields", "data", "q3", "user"]),
    inner=st.sampled_from(["", "[person]"]),
    email_key=st.sampled_from(["email", "Email", "your-email", "EMAIL_ADDRESS"]),
    name_keys=st.sampled_from([("first", "last"), ("fname", "lname"), ("First Name", "Surname")]),
    first=words,
    last=words,
    email=emails,
)
@FAST
def test_bracketed_form_names(
    wrapper: str,
    inner: str,
    email_key: str,
    name_keys: tuple[str, str],
    first: str,
    last: str,
    email: str,
) -> None:
    pairs = [
        (f"{wrapper}{inner}[{email_key}]", email),
        (f"{wrapper}{inner}[{name_keys[0]}]", first),
        (f"{wrapper}{inner}[{name_keys[1]}]", last),
        (f"{wrapper}[message]", "Hello"),
    ]
    parsed = fields_from_form(pairs)
    lead = recognise(parsed.fields, parsed.controls, names=parsed.names).lead
    assert (lead["email"], lead["first_name"], lead["last_name"]) == (email, first, last)


@given(
    parts=st.lists(words, min_size=1, max_size=4),
    key=st.sampled_from(["name", "Name", "full_name", "your-name", "Full Name", "fullName"]),
    email=emails,
)
@FAST
def test_a_full_name_is_split_into_first_and_last(parts: list[str], key: str, email: str) -> None:
    full = " ".join(parts)
    first, last = split_full_name(full)
    assert " ".join(filter(None, (first, last))) == full
    lead = recognise({key: full, "e-mail": email}, {}).lead
    assert lead["first_name"] == first
    assert lead.get("last_name") == last


@given(
    core=st.sampled_from(["honeypot", "honey_pot", "honey-pot", "gotcha", "bot-field"]),
    prefix=st.sampled_from(["", "_", "my_", "form-", "x "]),
    flips=st.lists(st.booleans(), min_size=12, max_size=12),
)
@FAST
def test_honeypot_names_by_rule(core: str, prefix: str, flips: list[bool]) -> None:
    name = _recase(prefix + core, flips)
    assert name.casefold() in HONEYPOT_FIELDS


@given(
    a=st.text(alphabet="0123456789abcdef", min_size=8, max_size=25),
    b=st.text(alphabet="0123456789abcdef", min_size=8, max_size=12),
)
@FAST
def test_mailchimp_honeypots_by_rule(a: str, b: str) -> None:
    assert MAILCHIMP_HONEYPOT.match(f"b_{a}_{b}")


def test_ordinary_names_are_not_honeypots() -> None:
    for name in ("email", "website", "smith_pottery", "message", "phone", "company", "hp"):
        assert name not in HONEYPOT_FIELDS
