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


def _renderer(json: bool) -> Any:
    if json:
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


# The loggers of the libraries whose lines reach the console: routed to the root handler
# below, so that they are rendered (JSON or not) and redacted like Rex's own.
_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "asyncio", "aiohttp")


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """Rex's lines (structlog) and every standard-library logger's (uvicorn, Alembic) go to
    stderr through one renderer: with ``json`` every line is one JSON object. The request
    id bound by the request middleware is added to every line logged while serving it."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            # The traceback becomes text here, so that _redact sees it.
            structlog.processors.format_exc_info,
            _redact,
            _renderer(json),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact,
            _renderer(json),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_RedactRecords())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_rex", False)]:
        root.removeHandler(old)
    handler._rex = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        # uvicorn's own dictConfig (when it ran) gave these handlers of their own.
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(numeric)
        if not any(isinstance(f, _RedactRecords) for f in logger.filters):
            logger.addFilter(_RedactRecords())
    # Alembic announces its plugins and its dialect at every start: only its "Running
    # upgrade" lines (and its warnings) matter.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(numeric, logging.WARNING))
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(f, _AlembicChatter) for f in migration.filters):
        migration.addFilter(_AlembicChatter())


class _AlembicChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not str(record.msg).startswith(
            ("Context impl", "Will assume")
        )
