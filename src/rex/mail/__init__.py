"""Outgoing email: one ``Mailer`` (``REX_SMTP_URL``, ``REX_MAIL_FROM``) and the transport that
sends ``mailto:`` deliveries through it."""

from rex.mail.mailer import Mailer, MailError, Message

__all__ = ["MailError", "Mailer", "Message"]
