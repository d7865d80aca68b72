"""Pure parts of the `rex listen` client: the event-stream parser and the printed line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rex.cli._errors import CliError
from rex.cli.listen import StreamedDelivery, _check_url, _line, server_sent_events


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def _parse(*lines: str) -> list[tuple[str, str]]:
    return [pair async for pair in server_sent_events(_lines(*lines))]


async def test_events_comments_and_multi_line_data() -> None:
    parsed = await _parse(
        ": keepalive",
        "",
        "event: ready",
        'data: {"session": "wh_1"}',
        "",
        "data: first",
        "data:second",
        "",
        "event: delivery",
        "id: dlv_1",
        "data: {}",
        "",
        "event: dangling",  # no blank line after it: never dispatched
    )
    assert parsed == [
        ("ready", '{"session": "wh_1"}'),
        ("message", "first\nsecond"),
        ("delivery", "{}"),
    ]


DELIVERY = StreamedDelivery(
    id="dlv_1",
    event_id="evt_1",
    event="contact.created",
    attempt=1,
    lease="listen:lcn_1",
    headers={},
    payload=b"{}",
)


def test_the_line_says_what_happened_and_what_comes_next() -> None:
    ok = _line(DELIVERY, 200, None, 12, {"status": "delivered"})
    assert ok.endswith("contact.created      evt_1  --> 200  (12 ms)")
    retry = _line(DELIVERY, 500, None, 3, {"status": "pending", "next_attempt_at": "T1Z"})
    assert retry.endswith("--> 500  (3 ms)  retry at T1Z")
    second = StreamedDelivery(**{**DELIVERY.__dict__, "attempt": 4})
    failed = _line(second, None, "timed out after 15s", 15000, {"status": "failed"})
    assert failed.endswith(
        "--> error: timed out after 15s  (15000 ms)  attempt 4  failed: no retries left"
    )
    lost = _line(DELIVERY, 200, None, 1, {"report_error": "ConnectError"})
    assert lost.endswith("[not recorded: ConnectError; Rex will resend it]")


@pytest.mark.parametrize("url", ["http://127.0.0.1:3000/hook", "https://localhost/x"])
def test_forward_to_urls_accepted(url: str) -> None:
    assert _check_url(url) == url


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1:3000", "http://", "/hook"])
def test_forward_to_urls_refused(url: str) -> None:
    with pytest.raises(CliError, match="--forward-to"):
        _check_url(url)
