"""RetryPolicy: exponential backoff with full jitter, capped, with the panel's Retry-After as a floor."""

from __future__ import annotations

import random

import pytest

from schemas.commands import COMMANDS
from workers.attempt.retry_policy import DEFAULT_POLICY, RetryPolicy

pytestmark = pytest.mark.unit


def test_delays_grow_exponentially_within_their_jitter_range_and_stop_at_the_cap() -> None:
    # Given a policy of 100 ms .. 2 s and a seeded dice
    policy, rng = RetryPolicy(min_backoff_ms=100, max_backoff_ms=2000), random.Random(7)
    # When delays are drawn for attempts 1..8, many times
    for attempt in range(1, 9):
        delays = [policy.delay_ms(attempt, rng=rng) for _ in range(200)]
        ceiling = min(2000, 100 * 2 ** (attempt - 1))
        # Then each lies between the minimum and that attempt's ceiling, and they are spread out
        assert all(100 <= d <= ceiling for d in delays)
        if ceiling > 200:
            assert max(delays) - min(delays) > ceiling / 4


def test_retry_after_from_the_panel_is_a_floor_but_never_beyond_the_cap() -> None:
    policy = RetryPolicy(min_backoff_ms=100, max_backoff_ms=5000)
    assert policy.delay_ms(1, retry_after_s=3) == 3000
    assert policy.delay_ms(1, retry_after_s=60) == 5000


def test_the_urgent_suspension_declares_a_sooner_and_longer_retry_than_its_release() -> None:
    urgent = COMMANDS["suspend_outgoing"].retry
    assert urgent.min_backoff_ms < DEFAULT_POLICY.min_backoff_ms
    assert urgent.max_attempts > DEFAULT_POLICY.max_attempts
    assert COMMANDS["unsuspend_outgoing"].retry is DEFAULT_POLICY
