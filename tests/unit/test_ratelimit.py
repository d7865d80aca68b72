"""The capture rate limiter (GCRA), on a clock the test moves."""

from __future__ import annotations

import pytest

from rex.capture.ratelimit import CaptureLimits, Rate, RateLimiter
from rex.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    rate = Rate.parse("5/minute")
    assert rate is not None

    assert [limiter.hit("a", rate) for _ in range(5)] == [0, 0, 0, 0, 0]
    assert limiter.hit("a", rate) == 12  # one more every 60/5 seconds
    clock.now += 11.5
    assert limiter.hit("a", rate) == 1  # Retry-After is whole seconds, at least 1
    clock.now += 0.5
    assert limiter.hit("a", rate) == 0
    assert limiter.hit("a", rate) == 12


def test_keys_are_independent_and_refused_hits_cost_nothing() -> None:
    limiter = RateLimiter(clock=Clock())
    rate = Rate(1, 3600.0)
    assert limiter.hit("a", rate) == 0
    assert limiter.hit("a", rate) == 3600
    assert limiter.hit("a", rate) == 3600  # refusals did not push the wait further
    assert limiter.hit("b", rate) == 0


def test_memory_is_bounded_by_forgetting_the_least_recent_keys() -> None:
    limiter = RateLimiter(max_keys=3, clock=Clock())
    rate = Rate(1, 60.0)
    for key in "abcd":
        limiter.hit(key, rate)
    assert len(limiter) == 3
    assert limiter.hit("a", rate) == 0  # forgotten, so allowed again
    assert limiter.hit("d", rate) == 60


@pytest.mark.parametrize(
    ("text", "rate"),
    [("60/minute", Rate(60, 60.0)), ("2/second", Rate(2, 1.0)), ("off", None), (None, None)],
)
def test_parse(text: str | None, rate: Rate | None) -> None:
    assert Rate.parse(text) == rate


def test_capture_limits_are_parsed_once_from_settings() -> None:
    limits = CaptureLimits.from_settings(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            capture_rate_limit="10/second",
            capture_workspace_rate_limit="100/hour",
        )
    )
    assert limits.per_ip == Rate(10, 1.0)
    assert limits.per_workspace == Rate(100, 3600.0)
    # A workspace's own limit wins over the default, "off" included.
    assert limits.for_workspace(None) == Rate(100, 3600.0)
    assert limits.for_workspace("5/minute") == Rate(5, 60.0)
    assert limits.for_workspace("off") is None
    off = CaptureLimits.from_settings(
        Settings(_env_file=None, capture_rate_limit="off")  # type: ignore[call-arg]
    )
    assert off.per_ip is None
    assert off.per_workspace is None


def test_parse_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="60/minute"):
        Rate.parse("lots")


def test_a_fresh_key_is_allowed_whatever_the_clock_reads() -> None:
    # now + period - period is not always now in floating point.
    clock = Clock()
    for now in (1000.0, 1234.567, 98765.4321, 0.1 + 0.2, 1e9 + 0.3):
        clock.now = now
        limiter = RateLimiter(clock=clock)
        assert limiter.hit("k", Rate(1, 3600.0)) == 0
        assert limiter.hit("k", Rate(1, 3600.0)) == 3600
        assert limiter.hit("j", Rate(3, 1.0)) == 0
