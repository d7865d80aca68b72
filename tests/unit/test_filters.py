"""Subscription filters: the rule (JSON equality on dotted paths) and what a filter may be."""

from __future__ import annotations

from typing import Any

import pytest

from rex.outbox.filters import check_filter, passes

EVENT: dict[str, Any] = {
    "id": "evt_1",
    "event": "deal.updated",
    "data": {"stage": "won", "amount": 100, "won": True, "tags": ["vip"], "meta": {"x": None}},
    "previous_attributes": {"stage": "proposal"},
}


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"data.stage": "won"}, True),
        ({"data.stage": ["lost", "won"]}, True),
        ({"data.stage": "Won"}, False),
        ({"data.amount": 100.0}, True),
        ({"data.amount": "100"}, False),
        ({"data.won": True}, True),
        ({"data.won": 1}, False),
        ({"data.amount": True}, False),
        ({"data.tags.0": "vip"}, True),
        ({"data.tags.1": None}, True),  # missing reads as null
        ({"data.meta.x": None, "data.nope": None}, True),
        ({"data.meta": None}, False),  # an object is not null
        ({"event": "deal.updated", "previous_attributes.stage": ["proposal"]}, True),
        ({"data.stage": "won", "data.amount": 5}, False),  # every condition must hold
        ({}, True),
        (None, True),
    ],
)
def test_passes(condition: dict[str, Any] | None, holds: bool) -> None:
    assert passes(condition, EVENT) is holds


@pytest.mark.parametrize(
    "bad",
    [
        "data.stage=won",
        ["data.stage"],
        {"data.stage": {"eq": "won"}},
        {"data.stage": [["won"]]},
        {"data.stage": []},
        {"": "x"},
        {"data..stage": "x"},
        {"data.-1": "x"},
        {"data stage": "x"},
        {f"data.k{i}": i for i in range(21)},
    ],
)
def test_bad_filters_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        check_filter(bad)
