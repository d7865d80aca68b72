"""structlog set-up: one line per event on stderr, JSON when ``REX_LOG_JSON=1``.

Keys and secrets are never passed to a logger; ``redact`` is a last line of defence. It also
covers exceptions: a traceback is rendered as plain text (never with the frames' local
variables, which hold request headers and bodies) before it is redacted, and the SQL
parameters that SQLAlchemy's error messages quote (a webhook secret being inserted, a lead's
fields) are cut out, in Rex's own log lines and in uvicorn's "Exception in ASGI application".
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET = re.compile(r"(rex_sk_|whsec_)[A-Za-z0-9_\-+/=]+")
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
_MARKERS = ("rex_sk_", "whsec_", "[parameters: ")


def redact(text: str) -> str:
    """``text`` without API keys, ``whsec_`` secrets and quoted SQL parameters."""
    if not any(marker in text for marker in _MARKERS):
        return text
    text = _SECRET.sub(r"\1[redacted]", text)
    return _SQL_PARAMETERS.sub("[parameters: redacted]", text)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


class _RedactRecords(logging.Filter):
    """Redacts a standard-library record's message and traceback (uvicorn's own logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # The traceback becomes text here, so that _redact sees it.
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactRecords) for f in logger.filters):
            logger.addFilter(_RedactRecords())
