"""Backoff delays: 1 s doubling to 30 s, jitter within bounds, reset after a healthy connection."""

from __future__ import annotations

import random

import pytest

from aios_notebook.client import Backoff
from aios_notebook.exceptions import ConfigurationError


def test_without_jitter_the_delays_double_from_one_second_to_a_thirty_second_cap() -> None:
    backoff = Backoff(jitter=0.0)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_jitter_spreads_each_delay_within_its_bounds_and_never_past_the_cap() -> None:
    backoff = Backoff(jitter=0.2, rng=random.Random(3).random)
    for _ in range(200):
        backoff.reset()
        delays = [backoff.next_delay() for _ in range(8)]
        nominal = [1, 2, 4, 8, 16, 30, 30, 30]
        assert all(0.8 * n <= d <= min(30, 1.2 * n) for d, n in zip(delays, nominal, strict=True))
    spread = {round(Backoff(rng=random.Random(seed).random).next_delay(), 6) for seed in range(20)}
    assert len(spread) == 20  # clients that lost the same server do not come back in lock step


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(0.5, 10, jitter=0.0)
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 1, 2]
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() == 0.5


def test_a_long_outage_does_not_overflow() -> None:
    backoff = Backoff(jitter=0.0)
    for _ in range(10_000):
        delay = backoff.next_delay()
    assert delay == 30


@pytest.mark.parametrize(("args", "message"), [
    ((0, 30), "reconnect delay must be > 0"),
    ((5, 1), "must be >= the first delay"),
    ((1, 30, 0.5), "factor must be >= 1"),
])
def test_bad_settings_are_named(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Backoff(args[0], args[1], factor=args[2] if len(args) > 2 else 2.0)


def test_jitter_must_be_a_fraction() -> None:
    with pytest.raises(ConfigurationError, match="jitter must be in"):
        Backoff(jitter=1.5)
