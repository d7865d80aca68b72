"""The retry policy: the schedule, its jitter, Retry-After, and the settings that build it."""

from __future__ import annotations

import random

import pytest

from rex.policies import RetryPolicy
from rex.settings import DEFAULT_RETRY_SCHEDULE, Settings

SVIX = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def test_defaults_match_the_issue() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.retry_schedule == SVIX == DEFAULT_RETRY_SCHEDULE
    assert settings.retry_jitter == 0.2
    assert settings.delivery_timeout == 15.0
    assert settings.endpoint_disable_after == 5 * 24 * 3600
    assert settings.retention_days == 30
    assert sum(SVIX) / 3600 > 24  # retried for at least a day


def test_schedule_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REX_RETRY_SCHEDULE", "1, 2.5,10")
    monkeypatch.setenv("REX_ALLOWED_NETWORKS", "10.1.0.0/16, 127.0.0.1/32")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.retry_schedule == (1.0, 2.5, 10.0)
    assert settings.allowed_networks == ["10.1.0.0/16", "127.0.0.1/32"]


def test_negative_delays_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REX_RETRY_SCHEDULE", "5,-1")
    with pytest.raises(ValueError, match=">= 0"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_each_pause_follows_the_schedule_without_jitter() -> None:
    delays = [RetryPolicy(SVIX, jitter=0).delay_after(n) for n in range(1, len(SVIX) + 1)]
    assert delays == list(SVIX)


def test_after_the_last_pause_the_delivery_has_failed() -> None:
    assert RetryPolicy(SVIX).delay_after(len(SVIX) + 1) is None
    assert RetryPolicy(SVIX).delay_after(0) is None
    assert RetryPolicy(()).delay_after(1) is None


def test_jitter_spreads_within_twenty_percent() -> None:
    rng = random.Random(7)
    policy = RetryPolicy(SVIX, jitter=0.2)
    for attempt, base in enumerate(SVIX, start=1):
        samples = [policy.delay_after(attempt, rng=rng) for _ in range(200)]
        assert all(s is not None and 0.8 * base <= s <= 1.2 * base for s in samples)
        assert len(set(samples)) > 100  # actually spread, not one value


def test_retry_after_is_honoured_when_longer_than_the_pause() -> None:
    policy = RetryPolicy(SVIX, jitter=0)
    assert policy.delay_after(1, retry_after=60) == 60
    # A shorter Retry-After does not bring the retry forward.
    assert policy.delay_after(2, retry_after=1) == 300


def test_retry_after_is_bounded_by_the_longest_pause() -> None:
    assert RetryPolicy(SVIX, jitter=0).delay_after(1, retry_after=10**9) == max(SVIX)
    assert RetryPolicy((0.2, 2.0), jitter=0).delay_after(1, retry_after=3600) == 2.0


def test_settings_build_the_policies_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule and jitter reach the worker and `rex listen` as one RetryPolicy, built
    once from the settings (the same object for both)."""
    monkeypatch.setenv("REX_RETRY_SCHEDULE", "1,2.5")
    monkeypatch.setenv("REX_RETRY_JITTER", "0.1")
    monkeypatch.setenv("REX_ENDPOINT_DISABLE_AFTER", "0")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    policy = settings.retry_policy
    assert policy == RetryPolicy((1.0, 2.5), jitter=0.1) and policy.longest == 2.5
    assert settings.delivery.retry is policy and settings.listen.retry is policy
    assert settings.delivery is settings.delivery  # built once
    assert settings.delivery.disable_after is None  # 0 turns automatic disabling off
    assert settings.delivery.timeout == settings.listen.timeout == 15.0
    assert settings.listen.heartbeat == settings.listen_heartbeat
