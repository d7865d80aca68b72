"""What one running app holds besides its routes: ``Runtime``, built once by ``create_app``.

Handlers reach it through ``rex.api.deps.RuntimeDep`` (or the narrower ``SettingsDep`` and
``DbDep``), never through string-keyed ``app.state`` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rex.capture.ratelimit import CaptureLimits, RateLimiter
from rex.client_ip import ProxyTrust
from rex.clock import SYSTEM_CLOCK, Clock
from rex.db.engine import Database
from rex.listen.stream import ListenHub, StreamQuota
from rex.ops.keys import UsageRecorder
from rex.settings import Settings
from rex.worker.ssrf import DestinationPolicy
from rex.workspaces.service import WorkspaceCache


def destination_policy(settings: Settings) -> DestinationPolicy:
    """Where webhooks may be sent (checked when an endpoint is saved and at connect)."""
    return DestinationPolicy(
        allow_private=settings.allow_private_destinations,
        allowed_networks=settings.allowed_networks,
    )


@dataclass(eq=False)
class Runtime:
    """The app's settings, the policies built from them, and its in-process state.

    Everything but the database is made with the app; the database opens at start-up
    (``open``) and closes at shutdown, so ``db`` is only there while the app runs.
    """

    settings: Settings
    capture_limits: CaptureLimits
    destination_policy: DestinationPolicy
    proxy_trust: ProxyTrust
    capture_limiter: RateLimiter = field(default_factory=RateLimiter)
    workspace_cache: WorkspaceCache = field(default_factory=WorkspaceCache)
    # `rex listen` streams of this process; servers call close_threadsafe() when they begin
    # to shut down (see `rex serve`), so open streams do not hold the shutdown up.
    listen_hub: ListenHub = field(default_factory=ListenHub)
    # `rex listen` streams connected at once, per workspace, in this process.
    stream_quota: StreamQuota = field(default_factory=StreamQuota)
    # The time the app and its worker decide durations by (``rex.clock``; tests shift it).
    clock: Clock = SYSTEM_CLOCK
    # Set at start-up: "last used" of API keys (rex.ops.keys), and the embedded worker's id
    # (its heartbeat is what /readyz checks).
    key_usage: UsageRecorder | None = None
    worker_id: str | None = None
    _db: Database | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        return cls(
            settings=settings,
            clock=clock or SYSTEM_CLOCK,
            capture_limits=CaptureLimits.from_settings(settings),
            destination_policy=destination_policy(settings),
            proxy_trust=ProxyTrust(settings.trusted_proxies),
        )

    @property
    def database(self) -> Database | None:
        """The database while the app runs, else None (for probes that must not raise)."""
        return self._db

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the database opens when the app starts (its lifespan)")
        return self._db

    def open(self, db: Database) -> None:
        """Attach the database opened at start-up."""
        self._db = db


def runtime_of(app: Any) -> Runtime:
    """The ``Runtime`` of a Rex app (``create_app`` sets it)."""
    runtime: Runtime = app.state.runtime
    return runtime
