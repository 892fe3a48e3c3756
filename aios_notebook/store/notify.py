"""Change notifications and the store's background thread.

Applying a batch only adds row counts to a pending dict. The :class:`Worker` thread parses
waiting frames off the I/O thread and, every ``notify_interval`` seconds, delivers one coalesced
:class:`ChangeBatch` per subscriber, so a subscriber sees at most one call per interval however
fast events arrive. ``store.flush()`` delivers at once, in the calling thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..clock import Clock, WallClock

__all__ = ["ChangeBatch", "Notifier", "Subscription", "Worker"]

log = logging.getLogger("aios_notebook.store")


@dataclass(frozen=True)
class ChangeBatch:
    """What changed since the subscriber's previous batch.

    Attributes:
        version: the store's version after the changes.
        tables: table -> rows added or updated (only the tables the subscriber asked for).
    """

    version: int
    tables: Mapping[str, int]

    @property
    def rows(self) -> int:
        """Rows added or updated, over all tables of the batch."""
        return sum(self.tables.values())

    def __contains__(self, table: object) -> bool:
        return table in self.tables

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)


class Subscription:
    """A handle on one subscriber; ``close()`` (or leaving a ``with`` block) stops deliveries."""

    def __init__(self, notifier: Notifier, callback: Callable[[ChangeBatch], Any],
                 tables: frozenset[str] | None) -> None:
        self.callback = callback
        self.tables = tables
        self.failures = 0
        self.closed = False
        self._notifier = notifier

    def close(self) -> None:
        """Stop deliveries to this subscriber (idempotent)."""
        if not self.closed:
            self.closed = True
            self._notifier.remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        name = getattr(self.callback, "__qualname__", repr(self.callback))
        tables = "all tables" if self.tables is None else ", ".join(sorted(self.tables))
        return f"<Subscription {name} on {tables}{' closed' if self.closed else ''}>"


class Notifier:
    """Holds subscribers and the changes not yet delivered to them.

    Args:
        report: called with (subscription, exception) when a callback raises.
    """

    def __init__(self, report: Callable[[Subscription, BaseException], None]) -> None:
        self._report = report
        self._subscriptions: list[Subscription] = []
        self._pending: dict[str, int] = {}
        self._version = 0
        self._lock = threading.Lock()
        self._deliver_lock = threading.Lock()  # one delivery at a time: callbacks never overlap
        self.on_subscribe: Callable[[], None] = lambda: None

    @property
    def active(self) -> bool:
        """True while anyone is subscribed."""
        return bool(self._subscriptions)

    def add(self, callback: Callable[[ChangeBatch], Any], tables: frozenset[str] | None) -> Subscription:
        subscription = Subscription(self, callback, tables)
        with self._lock:
            self._subscriptions.append(subscription)
        self.on_subscribe()
        return subscription

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def record(self, changes: Mapping[str, int], version: int) -> None:
        """Add changes (called by the store, under its lock, after each applied batch)."""
        if not self._subscriptions:
            return
        with self._lock:
            pending = self._pending
            for table, rows in changes.items():
                pending[table] = pending.get(table, 0) + rows
            self._version = version

    def deliver(self) -> int:
        """Deliver pending changes now; returns the number of callbacks made."""
        with self._deliver_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                version = self._version
                subscriptions = list(self._subscriptions)
            if not pending:
                return 0
            calls = 0
            for subscription in subscriptions:
                if subscription.closed:
                    continue
                wanted = pending if subscription.tables is None else {
                    t: n for t, n in pending.items() if t in subscription.tables
                }
                if not wanted:
                    continue
                calls += 1
                try:
                    subscription.callback(ChangeBatch(version, MappingProxyType(wanted)))
                except Exception as exc:  # a failing subscriber never stops the others or ingestion
                    subscription.failures += 1
                    self._report(subscription, exc)
            return calls


class Worker:
    """The store's background thread: parses waiting frames and delivers changes.

    It parses when ``batch_size`` frames wait (``wake()``), when waiting frames are older than
    ``max_delay``, and before each delivery to subscribers (every ``notify_interval``). It
    starts with the first frame or subscription and ends by itself after ``idle_exit`` seconds
    with nothing to do, so stores that are only read never hold a thread.

    Those seconds are the store's clock's (``clock.monotonic()``), as every time the store
    reads: on a ``ManualClock`` the thread still looks every tick, but waiting frames age,
    deliveries fall due and the idle thread ends only as the clock is advanced (reads and
    ``flush()`` still parse and deliver at once).

    Args:
        pending: how many frames wait.
        flush: parse the waiting frames.
        notifier: the subscribers.
        batch_size: parse as soon as this many frames wait.
        max_delay: parse frames that have waited this long (seconds).
        notify_interval: seconds between deliveries to subscribers.
        idle_exit: end the thread after this long with nothing to do.
        clock: what those durations are measured on (the wall clock if None).
    """

    def __init__(self, pending: Callable[[], int], flush: Callable[[], None], notifier: Notifier, *,
                 batch_size: int, max_delay: float, notify_interval: float, idle_exit: float = 2.0,
                 clock: Clock | None = None) -> None:
        self._pending = pending
        self._clock: Clock = clock if clock is not None else WallClock()
        self._flush = flush
        self._notifier = notifier
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.notify_interval = notify_interval
        self.idle_exit = idle_exit
        self.running = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ensure(self) -> None:
        """Start the thread unless it runs."""
        with self._start_lock:
            if self.running:
                return
            self.running = True
            # each thread has its own stop event: one still winding down never blocks this one
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name="aios-store-worker", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Parse now (many frames wait)."""
        # called for every frame while a batch waits: setting an Event takes a lock and
        # notifies, reading its flag does not (the worker clears it before it looks)
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Stop the thread and wait for it (it starts again with the next frame)."""
        with self._start_lock:
            self.running = False
            self._stop.set()
            self._wake.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        tick = max(0.001, min(0.02, self.max_delay, self.notify_interval or 0.02))
        clock = self._clock.monotonic
        waiting_since: float | None = None
        seen = 0  # frames waiting at the previous tick
        last_delivery = idle_since = clock()
        while not stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            if stop.is_set():
                break
            now = clock()
            try:
                waiting = self._pending()
                listening = self._notifier.active
                if waiting < seen:  # parsed meanwhile (a read): those waiting now came since, at most a tick ago
                    waiting_since = None
                seen = waiting
                if waiting:
                    waiting_since = waiting_since or now
                    delivery_due = listening and now - last_delivery >= self.notify_interval
                    if waiting >= self.batch_size or now - waiting_since >= self.max_delay or delivery_due:
                        self._flush()
                        waiting_since = None
                        seen = 0
                if listening and now - last_delivery >= self.notify_interval:
                    self._notifier.deliver()
                    last_delivery = now
                if waiting or listening:
                    idle_since = now
                elif now - idle_since >= self.idle_exit:
                    with self._start_lock:
                        if self._pending() == 0 and not self._notifier.active and self._stop is stop:
                            self.running = False
                            return
                    idle_since = now
            except Exception:  # keep going: the next tick may well succeed
                log.exception("store worker tick failed")

