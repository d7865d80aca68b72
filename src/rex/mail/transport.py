"""Lead notifications as deliveries: an endpoint whose URL is ``mailto:a@x,b@y`` is sent by
``MailTransport`` instead of HTTP, so the worker claims, retries and records it like any
webhook (``RoutingTransport`` picks the transport by the URL's scheme)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import orjson

from rex.mail.mailer import Mailer, MailError, Message
from rex.outbox.alerts import SLACK_PREFIX, render_alert
from rex.outbox.catalogue import OPERATIONAL_EVENTS
from rex.worker.slack import SlackTransport
from rex.worker.transport import DeliveryFailed, Transport, TransportResponse

MAILTO = "mailto:"


def mailto_url(emails: list[str]) -> str:
    return MAILTO + ",".join(quote(e, safe="@+") for e in emails)


def mailto_recipients(url: str) -> tuple[str, ...]:
    return tuple(unquote(p) for p in url.removeprefix(MAILTO).split(",") if p)


def render_notification(event: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """Subject, text and Reply-To of a new-lead email from a ``submission.accepted`` event."""
    data = event.get("data") or {}
    contact = data.get("contact") or {}
    form = data.get("form") or {}
    name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name")) if p)
    email = contact.get("email") or ""
    who = f"{name} <{email}>" if name else email
    subject = f"New lead from {form.get('name') or 'your form'}: {who}"
    lines = [f"A new lead arrived through {form.get('name') or 'your form'}.", ""]
    for label, key in (
        ("Email", "email"),
        ("First name", "first_name"),
        ("Last name", "last_name"),
        ("Phone", "phone"),
        ("Company", "company"),
        ("Source", "source"),
    ):
        if contact.get(key):
            lines.append(f"{label}: {contact[key]}")
    fields = data.get("fields") or {}
    if isinstance(fields, Mapping) and fields:
        lines += ["", "Fields received:"]
        for key, value in list(fields.items())[:60]:
            if str(key).startswith("_") or str(key).endswith("-response"):
                continue
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            lines.append(f"  {key}: {text[:500]}")
    lines += [
        "",
        f"Contact: {contact.get('id', '')}",
        f"Submission: {data.get('id', '')}",
    ]
    return subject, "\n".join(lines) + "\n", email or None


class MailTransport:
    """Sends a ``mailto:`` delivery as one email; the SMTP outcome is the attempt's."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        recipients = mailto_recipients(url)
        if not recipients:
            raise DeliveryFailed("no recipients in the mailto: URL")
        try:
            event = orjson.loads(body)
        except ValueError:
            raise DeliveryFailed("the event is not JSON") from None
        if isinstance(event, dict) and event.get("event") in OPERATIONAL_EVENTS:
            # The workspace's alert emails (notify_emails): rex.outbox.alerts.
            subject, text = render_alert(event)
            reply_to = None
        else:
            subject, text, reply_to = render_notification(event)
        try:
            await self.mailer.send(
                Message(to=recipients, subject=subject, text=text, reply_to=reply_to),
                timeout=timeout,
            )
        except MailError as exc:
            raise DeliveryFailed(str(exc)) from None
        # The worker counts any 2xx as delivered: the SMTP server took the message.
        return TransportResponse(200, f"250 sent to {len(recipients)} recipient(s)", None)

    async def close(self) -> None:
        return None


class RoutingTransport:
    """``mailto:`` URLs to the mail transport, ``slack+https:`` ones (the workspace's Slack
    alerts) to the Slack one over HTTP, everything else to the HTTP one."""

    def __init__(self, http: Transport, mail: MailTransport) -> None:
        self.http = http
        self.mail = mail
        self.slack = SlackTransport(http)

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> TransportResponse:
        if url.startswith(MAILTO):
            return await self.mail.post(url, body, headers, timeout)
        if url.startswith(SLACK_PREFIX):
            return await self.slack.post(url, body, headers, timeout)
        return await self.http.post(url, body, headers, timeout)

    async def close(self) -> None:
        await self.http.close()
        await self.mail.close()
