"""The settings every CLI command reads (the environment, or a `.env` file)."""

from __future__ import annotations

from rex.cli._errors import CliError
from rex.logging import configure_logging
from rex.settings import Settings


def load_settings() -> Settings:
    """Rex's settings, with logging configured from them; bad settings are one CLI error."""
    try:
        settings = Settings()
    except Exception as exc:
        raise CliError(f"bad settings: {exc}".replace("\n", " ")) from None
    configure_logging(settings.log_level, json=settings.log_json)
    return settings
