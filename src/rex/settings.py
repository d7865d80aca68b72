"""Rex's settings: one typed object, read from ``REX_*`` environment variables or ``.env``.

Built once at start-up (``Settings()``) and passed to whatever needs it; nothing imports a
module-level instance.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import urllib.parse
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rex.policies import DeliveryConfig, ListenConfig, RetryPolicy
from rex.tracing import TracingMode

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

    database_url: str = Field(
        "sqlite:///./rex.db",
        description=(
            "Where Rex keeps everything: `sqlite:///./rex.db` (a file relative to the working "
            "directory; `sqlite:////abs/path.db` for an absolute path) or "
            "`postgresql://user@host/db`. On SQLite `rex serve` runs the delivery worker "
            "as a process beside the API; on PostgreSQL run `rex worker` processes beside "
            "`rex serve --no-worker`."
        ),
    )
    database_pool_size: int | None = Field(
        None,
        ge=1,
        le=500,
        description=(
            "Database connections each Rex process keeps open (as many again may open under "
            "a burst). Unset: four per CPU core, at least 10. On PostgreSQL mind the server's "
            "`max_connections`: every `rex serve` process (`--workers N`) and every "
            "`rex worker` holds its own pool."
        ),
    )
    database_timeout: float = Field(
        5.0,
        gt=0,
        le=600,
        description=(
            "Seconds Rex waits for the database at most: to connect, to get a pooled "
            "connection, and for each statement (PostgreSQL), or for another process's write "
            "lock (SQLite's busy timeout, at least 10 s). Past it a request answers 503 with "
            "`Retry-After` instead of hanging (a database that went silent, a network "
            "partition), and a dead connection is replaced. Migrations are not bound by it."
        ),
    )
    allow_private_destinations: bool = Field(
        False,
        description=(
            "Let webhooks reach loopback, private, link-local and other non-public addresses. "
            "For local development only: leave it off in production (the SSRF guard)."
        ),
    )
    allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated CIDRs (`10.1.0.0/16,fd00:1::/64`) that webhooks may reach even "
            "though they are private, when `REX_ALLOW_PRIVATE_DESTINATIONS` is off."
        ),
    )
    proxy_url: str | None = Field(
        None,
        description=(
            "An HTTP CONNECT egress proxy every delivery goes through "
            "(`http://[user:password@]host:port`; Stripe's smokescreen, Squid...): `CONNECT` "
            "for https endpoints, absolute-form requests for http ones. Rex still resolves "
            "each endpoint's name and refuses non-public destinations before sending; the "
            "proxy itself may be on a private or loopback address. Unset: direct connections."
        ),
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_RETRY_SCHEDULE,
        description=(
            "Seconds to wait before each retry of a failed delivery, comma-separated: one "
            "number per retry, so the default (Svix's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, "
            "10 h; about 27 hours in all) makes 8 attempts. Then the delivery is `failed`."
        ),
    )
    retry_jitter: float = Field(
        0.2,
        description=(
            "Spread of each retry pause, as a fraction: 0.2 waits between 80% and 120% of the "
            "scheduled pause, so a burst of failures does not come back as a burst."
        ),
    )
    delivery_timeout: float = Field(
        15.0,
        description=(
            "Seconds one delivery attempt may take in all (DNS, connect, request, response) "
            "before it counts as failed."
        ),
    )
    delivery_lease: float = Field(
        30.0,
        description=(
            "Seconds a worker holds a claimed delivery before another worker may take it "
            "over (how long a crashed worker's deliveries wait)."
        ),
    )
    delivery_poll_interval: float = Field(
        1.0,
        description=(
            "Seconds an idle worker waits before looking for due deliveries again: the safety "
            "net, since a commit that queues deliveries (NOTIFY on PostgreSQL) wakes it first."
        ),
    )
    worker_concurrency: int = Field(
        64,
        description="Deliveries one worker sends at the same time (`rex worker --concurrency`).",
    )
    endpoint_disable_after: float = Field(
        5 * 24 * 3600.0,
        description=(
            "Seconds (default 432000: 5 days) an endpoint may go without a successful delivery, "
            "while its deliveries keep failing, before Rex disables it and emits "
            "`endpoint.disabled`. `0` never disables for that reason."
        ),
    )
    endpoint_failing_after: float = Field(
        3600.0,
        description=(
            "Seconds (default 3600: 1 hour) an endpoint may go without a successful delivery, "
            "while its deliveries keep failing, before Rex emits `endpoint.failing` (once, "
            "until it recovers) and alerts the workspace's `notify_emails` and "
            "`notify_slack_url`. `0` never emits it."
        ),
    )
    retention_days: int = Field(
        30,
        description=(
            "Days after which events with no pending delivery are pruned, with their "
            "deliveries and attempts (hourly, by every worker). `0` keeps everything."
        ),
    )
    retention_interval: float = Field(
        3600.0,
        gt=0,
        description=(
            "Seconds between two retention runs of a worker (the first runs when it starts)."
        ),
    )
    # `rex listen`: how long a disconnected session keeps its secret and queues its events,
    # and the longest pause between two heartbeats of a connected one.
    listen_grace_period: float = Field(
        600.0,
        gt=0,
        description=(
            "Seconds (default 10 minutes) a disconnected `rex listen` session keeps its secret "
            "and queues its events, so that a restarted `rex listen` resumes it."
        ),
    )
    listen_keepalive: float = Field(
        15.0,
        gt=0,
        description="Most seconds between two heartbeats on a `rex listen` event stream.",
    )
    capture_rate_limit: str = Field(
        "60/minute",
        description=(
            "Captures allowed per client IP (IPv6: per /64) and per process, as `N/second`, "
            "`N/minute`, `N/hour` or `off`; `60/minute` allows a burst of 60, then one a second. "
            "Over it: `429` with `Retry-After`."
        ),
    )
    capture_workspace_rate_limit: str = Field(
        "off",
        description=(
            "Captures allowed per workspace and per process (`N/second`, `N/minute`, `N/hour` "
            "or `off`). A workspace's own `capture_rate_limit` replaces it."
        ),
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma-separated IPs or CIDRs of your reverse proxies: only their "
            "`X-Forwarded-For` is believed (read from the right, through trusted hops). "
            "With none, the header is ignored."
        ),
    )
    base_domain: str | None = Field(
        None,
        description=(
            "With `rexgtm.com`, a capture posted to `acme.rexgtm.com` lands in workspace "
            "`acme`. Unset: every capture lands in the workspace `default`."
        ),
    )
    max_body_bytes: int = Field(
        64 * 1024,
        description="Largest `/capture` body, in bytes (default 64 KiB); larger gets `413`.",
    )
    # Every request's body (the authenticated API's limit; /capture has its own, smaller one).
    max_request_bytes: int = Field(
        1024 * 1024,
        description=(
            "Largest request body any endpoint accepts, in bytes (default 1 MiB); larger gets "
            "`413`. `/capture` has its own, smaller limit."
        ),
    )
    max_contact_metadata_bytes: int = Field(
        16 * 1024,
        gt=0,
        description=(
            "Largest metadata an anonymous capture may leave on a contact, in bytes of compact "
            "JSON (default 16 KiB): bounds every contact event a capture can cause."
        ),
    )
    max_endpoints_per_workspace: int = Field(
        100, gt=0, description="Webhook endpoints one workspace may have (`409` beyond)."
    )
    max_listen_sessions_per_workspace: int = Field(
        10, gt=0, description="Open `rex listen` sessions one workspace may have (`409` beyond)."
    )
    max_streams_per_workspace: int = Field(
        10,
        gt=0,
        description="`rex listen` streams one workspace may have connected at once (`429` beyond).",
    )
    max_connections: int = Field(
        1000,
        gt=0,
        description="`rex serve`: connections and requests at once before it answers `503`.",
    )
    request_read_timeout: float = Field(
        30.0,
        gt=0,
        description=(
            "`rex serve`: seconds a request may take to arrive; slower clients (slowloris) "
            "are disconnected."
        ),
    )
    keep_alive_timeout: int = Field(
        5, gt=0, description="`rex serve`: seconds an idle keep-alive connection stays open."
    )
    log_level: str = Field(
        "info", description="Least severe log level printed: `debug`, `info`, `warning`, `error`."
    )
    log_json: bool = Field(
        False, description="Log one JSON object per line instead of human-readable lines."
    )
    tracing: TracingMode = Field(
        "off",
        description=(
            "OpenTelemetry traces (needs `pip install 'rexgtm[otel]'`): `otlp` exports spans "
            "over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard `OTEL_*` variables "
            "apply, e.g. `OTEL_SERVICE_NAME`), `console` prints them, `off` records none."
        ),
    )
    metrics_token: str | None = Field(
        None,
        description=(
            "When set, `/metrics` (on `rex serve` and on `rex worker --http-port`) asks for "
            "`Authorization: Bearer <token>`; unset, it is open to whoever reaches it."
        ),
    )
    smtp_url: str | None = Field(
        None,
        description=(
            "Where Rex sends email (forms' new-lead notifications): `smtp://` (STARTTLS when "
            "offered) or `smtps://`, with user and password in the URL "
            "(`smtp://user:pass@mail.example.com:587`). Unset: no email is sent."
        ),
    )
    mail_from: str = Field("Rex <rex@localhost>", description="The `From:` of the email Rex sends.")
    turnstile_verify_url: str = Field(
        "https://challenges.cloudflare.com/turnstile/v0/siteverify",
        description="Where Cloudflare Turnstile tokens of forms are verified.",
    )
    hcaptcha_verify_url: str = Field(
        "https://api.hcaptcha.com/siteverify",
        description="Where hCaptcha tokens of forms are verified.",
    )
    recaptcha_verify_url: str = Field(
        "https://www.google.com/recaptcha/api/siteverify",
        description="Where Google reCAPTCHA (v2 and v3) tokens of forms are verified.",
    )
    captcha_timeout: float = Field(
        10.0,
        description=(
            "Seconds a CAPTCHA verification may take; a provider slower than that (or "
            "unreachable) leaves the submission `rejected` and answers `503`."
        ),
    )

    public_url: str | None = Field(
        None,
        description=(
            "The address people reach Rex at (`https://rex.example.com`). Over `https://`, "
            "the console's session cookie is `Secure` (sent only over HTTPS) and its forms "
            "accept only that origin. Unset: the address of each request."
        ),
    )
    console_session_idle: float = Field(
        12 * 3600.0,
        gt=0,
        description=(
            "Seconds (default 12 hours) a console session may go unused before it ends and "
            "its user signs in again."
        ),
    )
    console_session_lifetime: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Seconds (default 7 days) a console session lasts at most, used or not.",
    )
    sign_in_max_failures: int = Field(
        5,
        gt=0,
        description=(
            "Failed console sign-ins one account may have within `REX_SIGN_IN_LOCKOUT` "
            "before its sign-ins are refused (`429`) until that much time has passed."
        ),
    )
    sign_in_max_failures_per_address: int = Field(
        30,
        gt=0,
        description=(
            "Failed console sign-ins one client address (IPv6: its /64) may have within "
            "`REX_SIGN_IN_LOCKOUT`, whatever the accounts, before it is refused (`429`)."
        ),
    )
    sign_in_lockout: float = Field(
        900.0,
        gt=0,
        description=(
            "Seconds (default 15 minutes): the window failed sign-ins are counted in, and "
            "how long an account or address stays refused once over its limit."
        ),
    )

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+$", value):
            raise ValueError(
                "the public URL is a scheme and a host, like https://rex.example.com, "
                f"got {value!r}"
            )
        return value

    @field_validator("allowed_networks", "trusted_proxies", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        return _csv(value)

    @field_validator("proxy_url")
    @classmethod
    def _check_proxy_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                "REX_PROXY_URL must look like http://host:port (an HTTP CONNECT proxy), "
                f"got {value!r}"
            )
        return value.strip()

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
    def secure_cookies(self) -> bool:
        """Console cookies are ``Secure`` when Rex is served over HTTPS."""
        return bool(self.public_url and self.public_url.startswith("https://"))

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pool_size(self) -> int:
        """``REX_DATABASE_POOL_SIZE``, or four connections per core (at least 10)."""
        return self.database_pool_size or max(10, 4 * (os.cpu_count() or 1))

    # The typed policies, built once from the fields above (the code that uses them takes
    # the policy it needs, never the whole Settings).

    @functools.cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(schedule=self.retry_schedule, jitter=self.retry_jitter)

    @functools.cached_property
    def delivery(self) -> DeliveryConfig:
        return DeliveryConfig(
            retry=self.retry_policy,
            timeout=self.delivery_timeout,
            lease=self.delivery_lease,
            poll_interval=self.delivery_poll_interval,
            concurrency=self.worker_concurrency,
            disable_after=self.endpoint_disable_after or None,
            failing_after=self.endpoint_failing_after or None,
            retention_days=self.retention_days,
            retention_interval=self.retention_interval,
        )

    @functools.cached_property
    def listen(self) -> ListenConfig:
        return ListenConfig(
            retry=self.retry_policy,
            grace_period=self.listen_grace_period,
            heartbeat=self.listen_heartbeat,
            timeout=self.delivery_timeout,
            lease=self.delivery_lease,
            poll_interval=self.delivery_poll_interval,
            max_sessions_per_workspace=self.max_listen_sessions_per_workspace,
        )
