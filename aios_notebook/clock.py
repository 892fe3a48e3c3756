"""Clocks: the wall clock, and a manual clock that tests and backtests advance by hand.

Everything that reasons about time (session staleness, the simulator, the rule engine) takes a
``Clock`` so that it can run on simulated time without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "WallClock", "as_clock", "utc_from_epoch"]


def utc_from_epoch(seconds: float) -> datetime:
    """Epoch seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time in epoch seconds (``time``) and monotonic seconds."""

    def time(self) -> float:
        """Epoch seconds (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go backwards."""
        ...


class WallClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "WallClock()"


class _MonotonicFunction:
    """A zero-argument function of monotonic seconds (the older way to give a clock) as a Clock:
    its ``time()`` is the wall clock's, as it was with such a function."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return self._monotonic()

    def __repr__(self) -> str:
        return f"as_clock({self._monotonic!r})"


def as_clock(clock: Clock | Callable[[], float] | None) -> Clock:
    """A ``Clock`` from what a caller gave: a Clock as it is, None as the wall clock, a function
    of monotonic seconds wrapped (kept for callers written before every component took a Clock)."""
    if clock is None:
        return WallClock()
    if isinstance(clock, Clock):
        return clock
    if callable(clock):
        return _MonotonicFunction(clock)
    raise TypeError(f"a clock must be a Clock (time() and monotonic()) or a function, got {type(clock).__name__}")


class ManualClock:
    """A clock that only moves when told to: ``clock.advance(5)`` or ``clock.set(t)``."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._origin = float(start)

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._origin

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self._now += seconds
        return self._now

    def set(self, epoch_seconds: float) -> float:
        if epoch_seconds < self._now:
            raise ValueError("a clock cannot go backwards")
        self._now = float(epoch_seconds)
        return self._now

    def __repr__(self) -> str:
        return f"ManualClock({utc_from_epoch(self._now).isoformat()})"
