"""Partial updates: previous_attributes and metadata merges, shared by contacts, deals, tasks."""

from __future__ import annotations

from rex.changes import changed_fields, merge_metadata
from rex.contacts.schemas import TRACKED as CONTACT_FIELDS
from rex.deals.schemas import TRACKED as DEAL_FIELDS
from rex.tasks.schemas import TRACKED as TASK_FIELDS


def test_changed_fields_are_the_old_values_of_tracked_fields_that_differ() -> None:
    before = {"name": "A", "amount": 1, "stage": "lead", "updated_at": "t1"}
    after = {"name": "A", "amount": 2, "stage": "won", "updated_at": "t2"}
    assert changed_fields(before, after, ("name", "amount", "stage")) == {
        "amount": 1,
        "stage": "lead",
    }
    assert changed_fields(before, dict(before), ("name", "amount")) == {}


def test_merge_metadata_sets_keys_and_removes_nulled_ones() -> None:
    assert merge_metadata({"a": 1, "b": 2}, {"b": None, "c": 3}) == {"a": 1, "c": 3}
    assert merge_metadata({"a": 1}, None) == {"a": 1}


def test_tracked_fields_are_every_field_but_bookkeeping() -> None:
    # Derived from the record models, so a new field is tracked without a second list.
    for tracked in (CONTACT_FIELDS, DEAL_FIELDS, TASK_FIELDS):
        assert not {"id", "created_at", "updated_at"} & set(tracked)
    assert CONTACT_FIELDS[0] == "email" and "first_touch" in CONTACT_FIELDS
    assert "status" in DEAL_FIELDS and "completed_at" in TASK_FIELDS
