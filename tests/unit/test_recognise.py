"""Recognition rules, without a server: names, labelled fields, shapes, extras, mapping."""

from __future__ import annotations

import pytest

from rex.capture.recognise import Role, fit_extras, is_plain, recognise, role_of, split_full_name
from rex.forms.mapping import apply, resolve


@pytest.mark.parametrize(
    ("name", "role"),
    [
        *[(n, Role.EMAIL) for n in ("EMAIL", "Email Address", "e-mail", "your-email", "email-2",
                                     "emailAddress", "work_email", "q4_email", "E_Mail")],
        *[(n, Role.FIRST_NAME) for n in ("FNAME", "firstname", "First Name", "given_name",
                                          "givenName", "first-name-1")],
        *[(n, Role.LAST_NAME) for n in ("LNAME", "surname", "family_name", "Last Name",
                                         "familyName")],
        *[(n, Role.FULL_NAME) for n in ("name", "Name", "full_name", "your-name", "Full Name")],
        *[(n, Role.PHONE) for n in ("tel", "mobile", "phone_number", "Phone", "phoneNumber")],
        *[(n, Role.COMPANY) for n in ("organization", "company_name", "Company", "organisation")],
        *[(n, None) for n in ("message", "your-subject", "username", "formName", "input_2",
                              "subscribe", "")],
    ],
)  # fmt: skip
def test_field_names_by_rule(name: str, role: Role | None) -> None:
    assert role_of(name) is role


def test_exact_names_win_and_a_plain_body_is_plain() -> None:
    body = {"email": "a@example.com", "first_name": "A", "FNAME": "B", "source": "x"}
    assert not is_plain(body)
    lead = recognise(body, {}).lead
    assert (lead["email"], lead["first_name"], lead["source"]) == ("a@example.com", "A", "x")
    assert is_plain({"email": "a@example.com", "metadata": {}, "first_name": "A"})


def test_full_name_is_split_only_without_separate_names() -> None:
    assert split_full_name("Ada King Lovelace") == ("Ada King", "Lovelace")
    assert (
        recognise({"name": "Ada Lovelace", "email": "a@example.com"}, {}).lead["last_name"]
        == "Lovelace"
    )
    lead = recognise({"name": "Ada L", "LNAME": "Byron", "email": "a@example.com"}, {}).lead
    assert "first_name" not in lead and lead["last_name"] == "Byron"


def test_labelled_and_typed_fields_anywhere_in_json() -> None:
    body = {
        "x": {"y": [{"type": "email", "email": "deep@example.com"}]},
        "fields": [{"label": "First name", "value": "Deep"}, {"label": "Phone", "value": "1"}],
    }
    lead = recognise(body, {}).lead
    assert (lead["email"], lead["first_name"], lead["phone"]) == ("deep@example.com", "Deep", "1")


def test_an_email_that_is_not_one_is_not_taken_by_name() -> None:
    lead = recognise({"email_optin": "yes", "contact": {"addr": "b@example.com"}}, {}).lead
    assert lead["email"] == "b@example.com"  # the address found by value, not "yes"


def test_extras_that_do_not_fit_metadata_are_left_out() -> None:
    kept, dropped = fit_extras(
        {"ok": "v", "deep": {"a": {"b": {"c": 1}}}, "long": "x" * 2001, "list": [1, 2]}, {}
    )
    assert kept == {"ok": "v", "list": [1, 2]}
    assert dropped == ["deep", "long"]


def test_field_map_paths() -> None:
    body = {
        "Payload": {"invitee": {"email": "p@example.com"}},
        "answers": [{"email": "a@example.com"}],
        "q3_name": {"first": "Q"},
        "1.3": "Dotted key",
    }
    assert resolve(body, "payload.invitee.email") == "p@example.com"
    assert resolve(body, "answers.0.email") == "a@example.com"
    assert resolve(body, "q3_name[first]") == "Q"
    assert resolve(body, "1.3") == "Dotted key"
    assert resolve(body, "answers.5.email") is None
    assert apply({"name": "1.3", "metadata.k": "q3_name[first]"}, body) == {
        "first_name": "Dotted",
        "last_name": "key",
        "metadata.k": "Q",
    }


# Shapes no fixture covers, following the conventions tools share: the rules, not a list.
_CONVENTIONS = {
    "payload-submission-fields-by-label": {
        "event": "form.submitted",
        "payload": {
            "form": {"id": "f1", "name": "Contact form"},
            "submission": {"fields": {"Email": "a@example.com", "Full name": "Ada Lovelace"}},
        },
    },
    "data-fields-label-value": {
        "form": {"name": "Pricing form", "owner": {"email": "owner@acme.example"}},
        "data": {
            "fields": [
                {"label": "Full name", "value": "Ada Lovelace"},
                {"label": "Email address", "value": "a@example.com"},
            ]
        },
    },
    "questions-answers": {
        "form_name": "Demo request",
        "answers": [
            {"question": "What is your name?", "answer": "Ada Lovelace"},
            {"question": "Where can we reach you?", "type": "email", "answer": "a@example.com"},
        ],
    },
    "body-entry-nesting": {
        "body": {"entry": {"E-mail": "a@example.com", "Vorname": "Ada", "Nachname": "Lovelace"}},
        "account": {"name": "Acme Corp"},
    },
    "typed-answers-with-refs": {
        "form_response": {
            "answers": [
                {"type": "text", "text": "Ada", "field": {"ref": "first_name"}},
                {"type": "text", "text": "Lovelace", "field": {"ref": "last_name"}},
                {"type": "email", "email": "a@example.com", "field": {"ref": "x1"}},
            ]
        }
    },
    "fields-keyed-by-id-with-titles": {
        "fields": {
            "f_1": {"title": "Name", "value": "Ada Lovelace", "type": "text"},
            "f_2": {"title": "Contact", "value": "a@example.com", "type": "email"},
        },
        "site": {"name": "Acme"},
    },
    "json-string-field": {
        "formId": "7",
        "payload": '{"contact": {"email": "a@example.com", "firstName": "Ada", '
        '"lastName": "Lovelace"}}',
    },
    "lead-with-values-lists": {
        "lead": {"field_data": [
            {"name": "first_name", "values": ["Ada"]},
            {"name": "last_name", "values": ["Lovelace"]},
            {"name": "work_email", "values": ["a@example.com"]},
        ]},
    },
}  # fmt: skip


@pytest.mark.parametrize("body", _CONVENTIONS.values(), ids=_CONVENTIONS.keys())
def test_unfixtured_shapes_that_follow_the_conventions(body: dict[str, object]) -> None:
    lead = recognise(body, {}).lead
    assert (lead.get("email"), lead.get("first_name"), lead.get("last_name")) == (
        "a@example.com",
        "Ada",
        "Lovelace",
    )
