"""How often and how long a command is retried (each command's spec names its policy).

Delays grow exponentially with full jitter between ``min_backoff_ms`` and ``max_backoff_ms``; the
panel's Retry-After, when given, is honoured as a floor. Permanent failures are never retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    #: Attempts in all, crashes included; the next failure after the last one dead-letters.
    max_attempts: int = 8
    min_backoff_ms: int = 500
    max_backoff_ms: int = 5 * 60_000
    #: Seconds after ``issued_at`` past which a command is dead-lettered instead of retried.
    max_age_s: float = 24 * 3600

    def delay_ms(self, attempt: int, *, retry_after_s: float | None = None, rng: random.Random | None = None) -> int:
        """Delay before attempt ``attempt + 1``: exponential, full jitter, Retry-After as a floor."""
        ceiling = min(self.max_backoff_ms, self.min_backoff_ms * (2 ** max(0, attempt - 1)))
        delay = (rng or random).uniform(self.min_backoff_ms, max(self.min_backoff_ms, ceiling))
        if retry_after_s is not None:
            delay = max(delay, retry_after_s * 1000)
        return int(min(delay, self.max_backoff_ms))


#: Policy of every command whose spec names none (``CommandSpec.retry``).
DEFAULT_POLICY = RetryPolicy()

#: Urgent abuse actions retry sooner and more often.
URGENT_POLICY = RetryPolicy(max_attempts=10, min_backoff_ms=250, max_backoff_ms=60_000)
