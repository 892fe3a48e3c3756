"""Handing events from the I/O thread to user code: ``on()`` callbacks and ``events()`` iterators.

Neither ever runs user code on the I/O thread, so a slow callback or a slow ``async for`` body
cannot stall the connection (its keepalive pings, heartbeat answers and frame reading). Both buffer
at most ``maxsize`` events; past that the oldest are dropped and counted, so a consumer that falls
behind costs memory up to a bound, never the stream itself (the store still gets every event).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["CallbackDispatcher", "Event", "EventQueue", "Handle"]

log = logging.getLogger("aios_notebook.client")


@dataclass(frozen=True, slots=True)
class Event:
    """One new event of the stream, as given to ``on()`` callbacks and ``events()`` iterators.

    Attributes:
        event: the event name, e.g. ``"processing_job_completed"``.
        data: the event's ``data`` object.
        seq: the server's sequence number, None when the server sends none.
        received_at: when the frame arrived (aware UTC datetime).
        replayed: True when it came from a resync replay after a reconnect.
    """

    event: str
    data: dict[str, Any] = field(repr=False)
    seq: int | None
    received_at: datetime
    replayed: bool = False


class Handle:
    """Returned by ``on()`` and ``add_frame_listener()``: ``close()`` removes the callback."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close: Callable[[], None] | None = close

    def close(self) -> None:
        """Remove the callback (safe to call twice)."""
        if self._close is not None:
            close, self._close = self._close, None
            close()

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventQueue:
    """The buffer behind one ``events()`` iterator: filled on the I/O thread, read on the consumer's loop.

    The consumer's loop is woken once per batch, not per event (``call_soon_threadsafe`` writes to the
    loop's self-pipe: one write per event would cost a syscall each at thousands of events a second).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:
        self._loop = loop
        self._maxsize = maxsize
        self._items: deque[Event] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._wake_scheduled = False
        self._end: BaseException | bool = False  # True: ended cleanly; an exception: ended by it
        self.dropped = 0
        self.dead = False  # the consumer's loop is gone
        self.claimed = True  # False for the queue 'async with' fills before events() is called

    def put(self, item: Event) -> bool:
        """Add an event (I/O thread). Returns False when one had to be dropped."""
        kept = True
        with self._lock:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
                kept = False
            self._items.append(item)
            self._wake()
        return kept

    def end(self, error: BaseException | None = None) -> None:
        """No more events: the iterator stops after the buffered ones (or raises ``error``)."""
        with self._lock:
            self._end = error if error is not None else True
            self._wake()

    def _wake(self) -> None:  # called with the lock held
        if self._wake_scheduled or self.dead:
            return
        self._wake_scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the consumer's loop was closed: nobody will read this queue
            self.dead = True

    async def get(self) -> Event | None:
        """The next event; None once ended cleanly; raises the error the stream ended with."""
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._end is True:
                    return None
                if isinstance(self._end, BaseException):
                    raise self._end
                self._wake_scheduled = False
                self._ready.clear()
            await self._ready.wait()


class CallbackDispatcher:
    """Runs ``on()`` callbacks on one thread of their own, in arrival order.

    Exceptions in a callback are caught, counted (``failures``) and kept in ``errors`` (one line
    each, last 100); the first one of each callback is also logged as one warning line. A traceback
    is never printed from this thread.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self._callbacks: dict[str, tuple[Callable[[Event], Any], ...]] = {}
        self._items: deque[Event] = deque()
        self._cond = threading.Condition()
        self._maxsize = maxsize
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._logged: set[int] = set()
        self.errors: deque[str] = deque(maxlen=100)
        self.dropped = 0
        self.failures = 0

    def add(self, name: str, callback: Callable[[Event], Any]) -> Handle:
        with self._cond:
            self._callbacks[name] = (*self._callbacks.get(name, ()), callback)
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="aios-callbacks", daemon=True)
                self._thread.start()

        def remove() -> None:
            with self._cond:
                rest = tuple(c for c in self._callbacks.get(name, ()) if c is not callback)
                if rest:
                    self._callbacks[name] = rest
                else:
                    self._callbacks.pop(name, None)

        return Handle(remove)

    def wants(self, name: str) -> bool:
        """Whether any callback listens to ``name`` (checked on the I/O thread, lock-free)."""
        callbacks = self._callbacks
        return bool(callbacks) and (name in callbacks or "*" in callbacks)

    def put(self, item: Event) -> None:
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> None:
        """Run what is queued, then end the thread (not waited for when called from a callback)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    return
                item = self._items.popleft()
                callbacks = self._callbacks.get(item.event, ()) + self._callbacks.get("*", ())
            for callback in callbacks:
                try:
                    callback(item)
                except Exception as exc:
                    self._failed(callback, item, exc)

    def _failed(self, callback: Callable[[Event], Any], item: Event, exc: Exception) -> None:
        name = getattr(callback, "__qualname__", None) or repr(callback)
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        at = f" ({where[0].filename}:{where[0].lineno})" if where else ""
        line = f"callback {name} on {item.event} (seq {item.seq}) raised {type(exc).__name__}: {exc}{at}"
        self.errors.append(line)
        self.failures += 1
        if id(callback) not in self._logged:
            self._logged.add(id(callback))
            log.warning("AIOS: %s; further errors of this callback are counted in client.stats", line)
