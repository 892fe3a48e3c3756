"""Counters of a client's connection, and the snapshot ``client.stats`` returns.

The I/O thread is the only writer of :class:`StatsCounter`; readers on other threads get a
:class:`ClientStats` snapshot (plain ints and floats, so a torn read is at worst one frame old).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..clock import utc_from_epoch

__all__ = ["ClientStats", "StatsCounter"]

_RATE_WINDOW = 10  # seconds over which events/s is measured


@dataclass(frozen=True)
class ClientStats:
    """What the client has seen so far (a snapshot; ``client.stats`` makes a new one each time).

    Attributes:
        state: connecting, connected, reconnecting, auth_failed or closed.
        connected_since: when the current connection opened (UTC), None while disconnected.
        connections: connections opened so far (1 + successful reconnects).
        reconnects: connections opened after a lost one.
        failed_attempts: connection attempts that failed (refused, timed out, bad handshake ...).
        frames_received: every frame, valid or not, including pings and duplicates.
        bytes_received: their total size.
        events_received: new events of the stream handed to the store (duplicates excluded).
        replayed_events: of those, how many came from a resync replay.
        duplicates: events dropped because their seq was already delivered.
        malformed: frames the session could not take as they came (not JSON, no event, an odd
            envelope, a wrong-typed field of a frame it decoded whole); kept in the store's raw
            table. A well-formed frame's fields are checked once, by the store: what it finds is
            in ``store.errors``, the complete account of every problem.
        gaps: ranges of the stream known to be missing (rows of kind "gap" in the errors table).
        resyncs: resync replays the server finished.
        stale_disconnects: connections closed because the heartbeat went silent.
        last_event_age: seconds since the last new event arrived (None before the first).
        events_per_s: new events per second over the last 10 s.
        callback_errors: exceptions raised by ``on()`` callbacks and frame listeners.
        store_errors: frames or error rows the store failed to take (the stream goes on).
        dropped: events an ``events()`` iterator or the callback queue could not keep (too slow).
        last_error: the last connection problem, one line (never the token).
    """

    state: str
    connected_since: datetime | None
    connections: int
    reconnects: int
    failed_attempts: int
    frames_received: int
    bytes_received: int
    events_received: int
    replayed_events: int
    duplicates: int
    malformed: int
    gaps: int
    resyncs: int
    stale_disconnects: int
    last_event_age: float | None
    events_per_s: float
    callback_errors: int
    store_errors: int
    dropped: int
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (e.g. for ``pandas.Series(client.stats.as_dict())``)."""
        return asdict(self)

    def __str__(self) -> str:
        since = self.connected_since.strftime("%H:%M:%S") if self.connected_since else "-"
        age = f"{self.last_event_age:.1f} s" if self.last_event_age is not None else "-"
        return (
            f"{self.state} since {since}: {self.events_received} events ({self.events_per_s:.1f}/s, "
            f"last {age} ago), {self.frames_received} frames, {self.reconnects} reconnects, "
            f"{self.gaps} gaps, {self.malformed} malformed, {self.duplicates} duplicates"
        )


class StatsCounter:
    """The mutable counters behind :class:`ClientStats` (written by the I/O thread only)."""

    def __init__(self) -> None:
        self.connected_since: float | None = None  # epoch seconds
        self.connections = 0
        self.reconnects = 0
        self.failed_attempts = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.events_received = 0
        self.replayed_events = 0
        self.duplicates = 0
        self.malformed = 0
        self.gaps = 0
        self.resyncs = 0
        self.stale_disconnects = 0
        self.callback_errors = 0
        self.store_errors = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_event_at: float | None = None  # monotonic
        # per-second buckets [second, count] for events/s; a deque of at most _RATE_WINDOW + 1
        self._buckets: deque[list[int]] = deque(maxlen=_RATE_WINDOW + 1)

    def event(self, now: float, replayed: bool) -> None:
        """Count one new event received at monotonic time ``now``."""
        self.events_received += 1
        if replayed:
            self.replayed_events += 1
        self.last_event_at = now
        second = int(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += 1
        else:
            buckets.append([second, 1])

    def rate(self, now: float) -> float:
        """New events per second over the last full seconds of the window."""
        current = int(now)
        # copy first: the I/O thread may append while we read
        recent = [count for second, count in list(self._buckets) if current - _RATE_WINDOW < second <= current]
        return sum(recent) / _RATE_WINDOW

    def snapshot(self, state: str, *, callback_errors: int = 0, dropped: int = 0) -> ClientStats:
        """A snapshot; ``callback_errors`` and ``dropped`` add the callback thread's own counts."""
        now = time.monotonic()
        return ClientStats(
            state=state,
            connected_since=utc_from_epoch(self.connected_since) if self.connected_since is not None else None,
            connections=self.connections,
            reconnects=self.reconnects,
            failed_attempts=self.failed_attempts,
            frames_received=self.frames_received,
            bytes_received=self.bytes_received,
            events_received=self.events_received,
            replayed_events=self.replayed_events,
            duplicates=self.duplicates,
            malformed=self.malformed,
            gaps=self.gaps,
            resyncs=self.resyncs,
            stale_disconnects=self.stale_disconnects,
            last_event_age=now - self.last_event_at if self.last_event_at is not None else None,
            events_per_s=self.rate(now),
            callback_errors=self.callback_errors + callback_errors,
            store_errors=self.store_errors,
            dropped=self.dropped + dropped,
            last_error=self.last_error,
        )
