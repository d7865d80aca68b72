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

from rex.settings import parse_rate_limit


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
