"""Clocks: the wall clock, and a manual clock that tests and backtests advance by hand.

Everything that reasons about time (session staleness, the simulator, the rule engine) takes a
``Clock`` so that it can run on simulated time without sleeping.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "WallClock", "utc_from_epoch"]


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
