"""Operational alerts to a Slack incoming webhook: an ``alert_slack`` endpoint's URL is
``slack+https://hooks.slack.com/...``; its deliveries are sent as ``{"text": ...}`` JSON (what
Slack expects) through the HTTP transport, so the same destination rules (the SSRF guard,
checked again at connect time) apply as to any endpoint."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from rex.outbox.alerts import SLACK_PREFIX, render_alert
from rex.worker.headers import USER_AGENT
from rex.worker.transport import DeliveryFailed, Transport, TransportResponse


def slack_text(event: Mapping[str, object]) -> str:
    subject, text = render_alert(event)
    return f"*{subject}*\n{text}"


class SlackTransport:
    """Posts an operational event to a Slack incoming webhook as a text message."""

    def __init__(self, http: Transport) -> None:
        self.http = http

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        try:
            event = orjson.loads(body)
        except ValueError:
            raise DeliveryFailed("the event is not JSON") from None
        message = orjson.dumps({"text": slack_text(event)})
        return await self.http.post(
            url.removeprefix(SLACK_PREFIX),
            message,
            {"Content-Type": "application/json", "User-Agent": USER_AGENT},
            timeout,
        )

    async def close(self) -> None:
        return None
