"""Backoff: capped exponential growth with bounded jitter, deterministic for a seeded RNG."""

from __future__ import annotations

import random

import pytest

from hall_controller.backoff import Backoff


class FixedRng(random.Random):
    """uniform() always returns one end of the range, to pin the jitter bounds exactly."""

    def __init__(self, end: float) -> None:
        super().__init__(0)
        self.end = end

    def uniform(self, a: float, b: float) -> float:
        return b if self.end > 0 else a


def test_without_jitter_doubles_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=300.0, jitter=0.0)
    rng = random.Random(1)
    assert [backoff.delay(n, rng) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff.delay(10_000, rng) == 300  # no overflow for huge attempt counts


def test_jitter_extremes():
    backoff = Backoff(base=1.0, cap=300.0, jitter=0.2)
    high, low = FixedRng(+1), FixedRng(-1)
    assert backoff.delay(1, high) == pytest.approx(1.2)
    assert backoff.delay(1, low) == pytest.approx(0.8)
    assert backoff.delay(4, high) == pytest.approx(9.6)
    assert backoff.delay(4, low) == pytest.approx(6.4)
    assert backoff.delay(9, high) == 300  # 256 * 1.2 = 307.2, capped
    assert backoff.delay(20, low) == pytest.approx(240)  # 300 * 0.8


def test_seeded_rng_is_deterministic_and_within_bounds():
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(42)) for n in range(1, 15)]
    second = [backoff.delay(n, random.Random(42)) for n in range(1, 15)]
    assert first == second
    rng = random.Random(42)
    expected_u = rng.uniform(-1.0, 1.0)
    assert first[0] == pytest.approx(1.0 * (1 + 0.2 * expected_u))
    rng = random.Random(123)
    for n in range(1, 40):
        raw = min(300.0, 2.0 ** (n - 1))
        for _ in range(20):
            d = backoff.delay(n, rng)
            assert 0.8 * raw - 1e-9 <= d <= min(300.0, 1.2 * raw) + 1e-9


@pytest.mark.parametrize("kwargs", [{"base": 0}, {"base": 10, "cap": 5}, {"jitter": 1.0}, {"jitter": -0.1}])
def test_invalid_parameters(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_attempt_counts_from_one():
    with pytest.raises(ValueError):
        Backoff().delay(0, random.Random(0))
