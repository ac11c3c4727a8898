"""Capped exponential backoff with jitter: the one retry schedule for devices and the upstream."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Pure schedule; the caller owns the loop and passes the RNG (seeded in tests)."""

    base: float = 1.0
    cap: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or not 0 <= self.jitter < 1:
            raise ValueError("need 0 < base <= cap and 0 <= jitter < 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failure number `attempt` (1-based): min(cap, base·2^(attempt-1))
        scaled by a uniform factor in [1 - jitter, 1 + jitter], never above `cap`."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        raw = min(self.cap, self.base * 2.0 ** min(attempt - 1, 64))
        return min(self.cap, raw * (1.0 + self.jitter * rng.uniform(-1.0, 1.0)))
