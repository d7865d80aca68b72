"""Email syntax validation and the one normal form contacts are keyed by."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


def normalize_email(raw: str) -> str:
    """Trim, validate syntax (no DNS), and lower-case; IDN domains are kept in Unicode form.

    Raises ``ValueError`` with a message a person can act on.
    """
    candidate = raw.strip()
    if not candidate:
        raise ValueError("email is required")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{candidate!r} is not a valid email address: {exc}") from None
    return result.normalized.lower()
