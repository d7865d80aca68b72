"""Rex's settings: one typed object, read from ``REX_*`` environment variables or ``.env``.

Built once at start-up (``Settings()``) and passed to whatever needs it; nothing imports a
module-level instance.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(second|minute|hour)\s*$")
_PERIODS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def parse_rate_limit(value: str) -> tuple[int, float] | None:
    """``"60/minute"`` -> ``(60, 60.0)``; ``"off"`` -> ``None``."""
    if value.strip().lower() in {"off", "none", "0", ""}:
        return None
    match = _RATE.match(value.lower())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"rate limit must look like 60/minute or be 'off', got {value!r}")
    return int(match.group(1)), _PERIODS[match.group(2)]


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob Rex reads. Environment names are the field names upper-cased with ``REX_``."""

    model_config = SettingsConfigDict(env_prefix="REX_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./rex.db"
    allow_private_destinations: bool = False
    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = 0.2
    delivery_timeout: float = 15.0
    delivery_lease: float = 30.0
    delivery_poll_interval: float = 1.0
    worker_concurrency: int = 64
    endpoint_disable_after: float = 5 * 24 * 3600.0
    retention_days: int = 30
    # `rex listen`: how long a disconnected session keeps its secret and queues its events,
    # and the longest pause between two heartbeats of a connected one.
    listen_grace_period: float = Field(600.0, gt=0)
    listen_keepalive: float = Field(15.0, gt=0)
    capture_rate_limit: str = "60/minute"
    capture_workspace_rate_limit: str = "off"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    base_domain: str | None = None
    max_body_bytes: int = 64 * 1024
    # Every request's body (the authenticated API's limit; /capture has its own, smaller one).
    max_request_bytes: int = 1024 * 1024
    # Lead notifications (and any other email): smtp:// or smtps://, user and password in it.
    smtp_url: str | None = None
    mail_from: str = "Rex <rex@localhost>"
    # Server-side CAPTCHA checks of forms; tests point these at a fake verifier.
    turnstile_verify_url: str = "https://challenges.cloudflare.com/turnstile/v0/siteverify"
    hcaptcha_verify_url: str = "https://api.hcaptcha.com/siteverify"
    recaptcha_verify_url: str = "https://www.google.com/recaptcha/api/siteverify"
    captcha_timeout: float = 10.0
    log_level: str = "info"
    log_json: bool = False

    @field_validator("allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return _csv(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"trusted proxies are IP addresses or CIDRs like 10.0.0.0/8, got {entry!r}"
                ) from None
        return value

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        parts = _csv(value)
        if isinstance(parts, list | tuple):
            delays = tuple(float(p) for p in parts)
            if any(d < 0 for d in delays):
                raise ValueError("retry schedule delays must be >= 0")
            return delays
        return value

    @field_validator("capture_rate_limit", "capture_workspace_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        parse_rate_limit(value)
        return value

    @property
    def listen_heartbeat(self) -> float:
        """Seconds between heartbeats of a `rex listen` stream: well inside the grace period."""
        return min(self.listen_keepalive, self.listen_grace_period / 4)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
