"""Coalesced, throttled redraws: each view redraws at most ``max_rate`` times a second.

The store calls back on the thread that ingests (the client's I/O thread); the callback only marks
the view dirty (a flag under a lock, O(1)), so ingestion never waits for a redraw. One daemon
thread per scheduler does the redraws: a dirty view is redrawn as soon as its last redraw is at
least ``1 / max_rate`` seconds old, so a burst of change batches costs one redraw at the start and
one at the end (leading and trailing edge), never more than the rate allows. A redraw reads the
store's newest snapshot, so a view that was skipped never falls behind: the next redraw shows
everything. A redraw that takes longer than the interval simply lowers the rate; nothing queues.

Drawing is also capped in CPU time: after redraws that used ``d`` seconds of the thread's CPU
(``time.thread_time``: waiting for the store's lock or for the GIL does not count) the thread
rests ``d * (1 - max_busy) / max_busy`` seconds before the next, so it burns at most
``max_busy`` of a core (half, by default) however many views are live and however large the
tables grow: under a firehose the views redraw less often instead of taking a core
(auto-refresh that eats the CPU is a known pain of live dashboards).

Tests drive a scheduler by hand: ``RedrawScheduler(clock=ManualClock(), start=False)`` and
:meth:`RedrawScheduler.run_due`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..clock import Clock, WallClock
from ..exceptions import ConfigurationError

__all__ = ["DEFAULT_MAX_BUSY", "DEFAULT_MAX_RATE", "RedrawScheduler", "Redrawable", "default_scheduler"]

#: redraws per second per view unless a view is told otherwise
DEFAULT_MAX_RATE = 4.0
#: the share of the time a scheduler may spend redrawing
DEFAULT_MAX_BUSY = 0.5

log = logging.getLogger("aios_notebook.views")


class Redrawable(Protocol):
    """What a scheduler redraws: anything with a ``redraw()`` method."""

    def redraw(self) -> None:
        """Read the newest data and update the widgets."""
        ...


@dataclass
class _Entry:
    target: Redrawable
    interval: float
    every: float | None  # periodic redraw (e.g. a clock in a badge), seconds
    dirty: bool = False
    active: bool = True
    last: float | None = None  # monotonic time of the last redraw's start
    redraws: int = 0
    errors: int = 0


def check_rate(max_rate: float) -> float:
    """Validate a redraw rate (redraws per second) and return it as a float."""
    try:
        rate = float(max_rate)
    except (TypeError, ValueError):
        raise ConfigurationError(f"max_redraws_per_second must be a number, not {max_rate!r}") from None
    if not rate > 0 or rate == float("inf"):
        raise ConfigurationError(f"max_redraws_per_second must be a positive finite number, not {max_rate!r}")
    return rate


class RedrawScheduler:
    """Redraws registered views when they are dirty, each at most ``rate`` times a second.

    Args:
        clock: monotonic time source (a ``ManualClock`` in tests).
        start: start the background thread at once (False: call :meth:`run_due` yourself).
        max_busy: the largest share of a core the redraws may burn (0 < max_busy <= 1).
    """

    def __init__(self, *, clock: Clock | None = None, start: bool = True, max_busy: float = DEFAULT_MAX_BUSY) -> None:
        if not (isinstance(max_busy, int | float) and 0 < max_busy <= 1):
            raise ConfigurationError(f"max_busy must be a share of the time in (0, 1], not {max_busy!r}")
        self.max_busy = float(max_busy)
        self._rest_until: float | None = None  # monotonic time before which nothing is redrawn
        self._clock: Clock = clock or WallClock()
        # the CPU time of the calling thread; a test's manual clock stands for it
        self._cpu_time: Callable[[], float] = time.thread_time if clock is None else self._clock.monotonic
        self._cond = threading.Condition()
        self._entries: dict[int, _Entry] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        if start:
            self.start()

    # ---- registration (any thread)
    def register(self, target: Redrawable, *, max_rate: float = DEFAULT_MAX_RATE, every: float | None = None,
                 dirty: bool = True) -> None:
        """Watch ``target``; ``every`` (seconds) also redraws it periodically while it is active."""
        interval = 1.0 / check_rate(max_rate)
        if every is not None and not every > 0:
            raise ConfigurationError(f"every must be a positive number of seconds, not {every!r}")
        with self._cond:
            self._entries[id(target)] = _Entry(target, interval, every, dirty=dirty)
            self._cond.notify()

    def unregister(self, target: Redrawable) -> None:
        """Forget ``target`` (a redraw already running finishes)."""
        with self._cond:
            self._entries.pop(id(target), None)

    def mark_dirty(self, target: Redrawable) -> None:
        """Ask for a redraw of ``target``; cheap and safe from any thread (the store's callback)."""
        with self._cond:
            entry = self._entries.get(id(target))
            if entry is not None and not entry.dirty:
                entry.dirty = True
                self._cond.notify()

    def set_active(self, target: Redrawable, active: bool) -> None:
        """Pause (False) or resume redraws of ``target``; a paused view keeps its dirty flag."""
        with self._cond:
            entry = self._entries.get(id(target))
            if entry is not None:
                entry.active = bool(active)
                self._cond.notify()

    def redraws(self, target: Redrawable) -> int:
        """How many redraws of ``target`` this scheduler has run."""
        with self._cond:
            entry = self._entries.get(id(target))
            return entry.redraws if entry else 0

    # ---- running
    def _delay_locked(self, now: float) -> float | None:
        """Seconds until the next redraw is due (0: now), None when nothing is waiting."""
        best: float | None = None
        for entry in self._entries.values():
            if not entry.active:
                continue
            due: float | None = None
            if entry.dirty:
                due = now if entry.last is None else entry.last + entry.interval
            elif entry.every is not None:
                due = now if entry.last is None else entry.last + max(entry.every, entry.interval)
            if due is not None and (best is None or due < best):
                best = due
        if best is None:
            return None
        if self._rest_until is not None:
            best = max(best, self._rest_until)
        return max(0.0, best - now)

    def _take_due_locked(self, now: float) -> list[_Entry]:
        due: list[_Entry] = []
        if self._rest_until is not None and now < self._rest_until:
            return due
        for entry in self._entries.values():
            if not entry.active:
                continue
            elapsed = None if entry.last is None else now - entry.last
            wanted = entry.dirty or (entry.every is not None and (elapsed is None or elapsed >= entry.every))
            if wanted and (elapsed is None or elapsed >= entry.interval - 1e-9):
                entry.dirty = False  # changes from now on mark it again
                entry.last = now
                due.append(entry)
        return due

    def run_due(self) -> float | None:
        """Redraw every view that is due now; return seconds until the next is due (None: none)."""
        with self._cond:
            entries = self._take_due_locked(self._clock.monotonic())
        cpu_began = self._cpu_time()
        for entry in entries:
            try:
                entry.target.redraw()
            except Exception:  # a failing view must not stop the others
                entry.errors += 1
                log.exception("redrawing %r failed", entry.target)
            finally:
                entry.redraws += 1
        spent = self._cpu_time() - cpu_began
        with self._cond:
            now = self._clock.monotonic()
            if entries and spent > 0:
                self._rest_until = now + spent * (1 - self.max_busy) / self.max_busy
            return self._delay_locked(now)

    def start(self) -> None:
        """Start the background redraw thread (idempotent)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="aios-views-redraw", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread (views stay registered; :meth:`start` resumes)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    delay = self._delay_locked(self._clock.monotonic())
                    if delay == 0:
                        break
                    self._cond.wait(delay)  # None: until something is marked dirty
                if self._stopping:
                    return
            self.run_due()

    def __repr__(self) -> str:
        with self._cond:
            views = len(self._entries)
        return f"RedrawScheduler(views={views}, running={self.running})"


_default: RedrawScheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> RedrawScheduler:
    """The process's shared scheduler (its thread started on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RedrawScheduler()
        elif not _default.running:
            _default.start()
        return _default
