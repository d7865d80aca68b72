"""The one mailer: plain SMTP (``smtp://``, STARTTLS when the server offers it) or SMTP over
TLS (``smtps://``), user and password in the URL (``smtp://user:pass@host:587``).

Anything that emails goes through ``Mailer.send`` (lead notifications today; operational
alerts can use the same object). It raises ``MailError`` with a short reason; callers that
must not lose a message send it as a delivery, which the worker retries and records.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import unquote, urlsplit

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class MailError(Exception):
    """The message was not accepted by the SMTP server; ``str()`` says why in a few words."""


@dataclass(frozen=True)
class Message:
    to: tuple[str, ...]
    subject: str
    text: str
    reply_to: str | None = None


@dataclass(frozen=True)
class SmtpServer:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(
                f"REX_SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465, "
                f"got scheme {parts.scheme!r}"
            )
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Mailer:
    """Sends ``Message``s from ``mail_from`` through ``smtp_url`` (``None``: not configured,
    every send fails with a ``MailError`` saying so)."""

    def __init__(self, smtp_url: str | None, mail_from: str, *, timeout: float = 15.0) -> None:
        self.server = SmtpServer.parse(smtp_url) if smtp_url else None
        self.mail_from = mail_from
        self.timeout = timeout

    @property
    def configured(self) -> bool:
        return self.server is not None

    def build(self, message: Message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.mail_from
        email["To"] = ", ".join(message.to)
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False, usegmt=True)
        email["Message-ID"] = make_msgid(domain=self.mail_from.rpartition("@")[2] or None)
        if message.reply_to:
            email["Reply-To"] = message.reply_to
        email.set_content(message.text)
        return email

    async def send(self, message: Message, *, timeout: float | None = None) -> None:
        """Hand ``message`` to the SMTP server (smtplib, on a thread: it blocks)."""
        if self.server is None:
            raise MailError("REX_SMTP_URL is not set: no way to send email")
        email = self.build(message)
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._send_blocking, self.server, email, timeout),
                (timeout or self.timeout) + 1,
            )
        except MailError:
            raise
        except TimeoutError:
            raise MailError("SMTP server timed out") from None
        except smtplib.SMTPResponseException as exc:
            error = exc.smtp_error
            text = (error.decode("utf-8", "replace") if isinstance(error, bytes) else error)[:200]
            raise MailError(f"SMTP {exc.smtp_code}: {text}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"SMTP: {type(exc).__name__}: {str(exc)[:200]}") from None

    def _send_blocking(
        self, server: SmtpServer, email: EmailMessage, timeout: float | None
    ) -> None:
        seconds = timeout or self.timeout
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if server.scheme == "smtps":
            client = smtplib.SMTP_SSL(server.host, server.port, timeout=seconds, context=context)
        else:
            client = smtplib.SMTP(server.host, server.port, timeout=seconds)
        with client:
            client.ehlo()
            if server.scheme == "smtp" and client.has_extn("starttls"):
                client.starttls(context=context)
                client.ehlo()
            if server.username:
                client.login(server.username, server.password or "")
            refused = client.send_message(email)
            if refused:
                raise MailError(f"recipients refused: {', '.join(sorted(refused))}")
