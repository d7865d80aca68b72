"""Rate limits for ``POST /capture``: per client IP and per workspace, in this process.

The algorithm is GCRA (the "generic cell rate algorithm", a token bucket that stores one
number per key): ``60/minute`` lets a burst of 60 through, then one more every second.

Each Rex process keeps its own counters in memory. With several API processes behind a load
balancer, a client can get up to N times the limit through N processes; the README says so.
Counters live in a bounded LRU map, so a flood of distinct addresses cannot grow memory
without bound (the least recently seen keys are forgotten first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from rex.settings import Settings, parse_rate_limit


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: float

    @classmethod
    def parse(cls, text: str | None) -> Rate | None:
        """``"60/minute"`` -> ``Rate(60, 60.0)``; ``"off"`` or ``None`` -> ``None``."""
        if text is None:
            return None
        parsed = parse_rate_limit(text)
        return cls(*parsed) if parsed else None

    @property
    def interval(self) -> float:
        return self.period / self.count


@lru_cache(maxsize=1024)
def _parsed(text: str) -> Rate | None:
    return Rate.parse(text)


@dataclass(frozen=True)
class CaptureLimits:
    """The capture rate limits, parsed once at start-up: per client IP, and per workspace
    for workspaces without a limit of their own (``None``: no limit)."""

    per_ip: Rate | None
    per_workspace: Rate | None

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptureLimits:
        return cls(
            per_ip=Rate.parse(settings.capture_rate_limit),
            per_workspace=Rate.parse(settings.capture_workspace_rate_limit),
        )

    def for_workspace(self, own_limit: str | None) -> Rate | None:
        """The limit of a workspace whose own setting is ``own_limit`` (each text parsed once)."""
        return self.per_workspace if own_limit is None else _parsed(own_limit)


class RateLimiter:
    """In-memory GCRA limiter. Not thread-safe: use it from one event loop (no awaits inside)."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._max_keys = max_keys
        self._clock = clock
        # key -> theoretical arrival time: when the bucket will be full again.
        self._tat: OrderedDict[str, float] = OrderedDict()

    def hit(self, key: str, rate: Rate) -> int:
        """Count one request against ``key``. Returns 0 when allowed, else the whole seconds
        to wait before the next request would be (for ``Retry-After``)."""
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        # Allowed while the bucket holds less than (count - 1) intervals of debt. Comparing
        # durations (not absolute times) keeps float rounding from refusing a fresh key.
        wait = (tat - now) - (rate.period - rate.interval)
        if wait > 1e-9:
            return max(1, math.ceil(wait))
        self._tat[key] = tat + rate.interval
        self._tat.move_to_end(key)
        while len(self._tat) > self._max_keys:
            self._tat.popitem(last=False)
        return 0

    def __len__(self) -> int:
        return len(self._tat)
