"""Reconnect delays: exponential backoff with jitter, reset after a healthy connection.

Kept apart from the I/O so it can be tested without sleeping: ``next_delay()`` only computes.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..exceptions import ConfigurationError

__all__ = ["Backoff"]


class Backoff:
    """Delays before reconnect attempts: ``initial`` seconds doubling up to ``cap``, with jitter.

    Each delay is the nominal one (``initial * factor**n``, at most ``cap``) times a random factor in
    ``[1 - jitter, 1 + jitter]``, and never more than ``cap``: clients that lost the same server at
    the same moment do not come back in lock step. ``reset()`` after a healthy connection starts the
    sequence again from ``initial``.

    Args:
        initial: first delay in seconds (1 s by default).
        cap: longest delay in seconds (30 s by default).
        factor: growth per attempt (2: doubling).
        jitter: relative spread, 0 to 1 (0.2: +-20 %).
        rng: a ``random()`` function returning floats in [0, 1); tests pass a seeded one.
    """

    def __init__(
        self,
        initial: float = 1.0,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not initial > 0:
            raise ConfigurationError(f"reconnect delay must be > 0 s, got {initial!r}")
        if not cap >= initial:
            raise ConfigurationError(f"max reconnect delay ({cap!r} s) must be >= the first delay ({initial!r} s)")
        if not factor >= 1:
            raise ConfigurationError(f"backoff factor must be >= 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be in [0, 1), got {jitter!r}")
        self.initial = float(initial)
        self.cap = float(cap)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self._rng = rng
        self.attempt = 0  # delays handed out since the last reset

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        nominal = min(self.cap, self.initial * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        spread = 1.0 + self.jitter * (2.0 * self._rng() - 1.0)
        return min(self.cap, nominal * spread)

    def reset(self) -> None:
        """A connection stayed healthy: the next delay starts from ``initial`` again."""
        self.attempt = 0

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial:g}, cap={self.cap:g}, factor={self.factor:g}, "
                f"jitter={self.jitter:g}, attempt={self.attempt})")
