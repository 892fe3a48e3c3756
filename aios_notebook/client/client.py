"""``AIOSClient``: the public, thread-safe face of the client (the I/O is in ``connection.py``)."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import ssl as ssl_module
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from ..exceptions import SHORT_SECRET, AIOSWarning, ConfigurationError, ConnectionLost, redact
from ..protocol.dialects import AUTO, Dialect, get_dialect
from ..protocol.models import SERVER_EVENTS, SUBSCRIPTION_TYPES
from ..protocol.session import ClientSession, ConnectionInfo
from ..protocol.subscriptions import Filters
from ..storelike import StoreLike, StreamSink
from .connection import (
    DEFAULT_MAX_SIZE,
    ConnectionLoop,
    ConnectionOptions,
    ConnectionState,
    TokenSource,
)
from .delivery import CallbackDispatcher, Event, EventQueue, Handle
from .stats import ClientStats

if TYPE_CHECKING:  # pragma: no cover
    from ..store import EventStore

__all__ = ["DEFAULT_TYPES", "STATES", "AIOSClient"]

DEFAULT_TYPES: tuple[str, ...] = ("processing_jobs", "agents", "knowledge", "insights", "dags")
STATES = tuple(state.value for state in ConnectionState)

_running: weakref.WeakSet[AIOSClient] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # the I/O threads are daemons: close their sockets cleanly before the interpreter goes
    for client in list(_running):
        client.stop(timeout=2.0)


def _check_types(types: Iterable[str] | str, what: str = "types") -> list[str]:
    if isinstance(types, str):
        types = [types]
    try:
        names = list(types)
    except TypeError:
        raise ConfigurationError(f"{what} must be a list of subscription types, got {type(types).__name__}") from None
    unknown = [t for t in names if t not in SUBSCRIPTION_TYPES]
    if unknown:
        raise ConfigurationError(f"unknown subscription types {unknown}; known types: {sorted(SUBSCRIPTION_TYPES)}")
    return names


def _check_filters(filters: Mapping[str, Any] | None) -> Filters:
    parsed, problems = Filters.parse(filters)
    if problems:
        raise ConfigurationError("bad filters: " + "; ".join(problems))
    return parsed


class AIOSClient:
    """A live connection to an AIOS v2 WebSocket that feeds an ``EventStore``.

    Args:
        url: ``ws://`` or ``wss://`` address of the server's WebSocket, e.g. ``ws://host:8000/ws``.
        token: the auth token, or a function (plain or async) returning it, called at every
            (re)connect so that an expiring token can be refreshed. Never shown anywhere.
        types: subscription types to subscribe to on every connection.
        filters: filters for those types (``{"run_id": ...}``, ``{"agent_ids": [...]}``).
        store: the ``EventStore`` to feed (any ``StoreLike``; a ``StreamSink`` that only takes
            frames, such as a recorder's, gets no REST snapshots); a new one when None.
        ssl: an ``ssl.SSLContext`` for ``wss://`` (certificates are verified by default).
        max_size: largest frame accepted from the server, in bytes (16 MiB; None: no limit).
        max_reconnects: give up after this many attempts in a row that gave no healthy
            connection (None: forever). Then ``state`` is ``"closed"`` and ``wait_for`` raises
            ``ConnectionLost``.
        reconnect_delay, max_reconnect_delay, jitter: backoff: the first delay, the cap, and the
            relative random spread of each delay.
        healthy_after: seconds a connection must last to reset the backoff.
        open_timeout: seconds allowed for the TCP/TLS/WebSocket handshake.
        ping_interval, ping_timeout: the WebSocket protocol's own keepalive (None: off); this is
            what finds a dead connection on servers that never send the ``ping`` event.
        close_timeout: seconds to wait for the closing handshake.
        websocket_options: more keyword arguments for ``websockets.asyncio.client.connect``
            (e.g. ``additional_headers``, ``proxy``).
        rest_url: the REST API's base URL (default: from ``url``, ``ws://h:p/ws`` -> ``http://h:p``).
        snapshots: fetch the current state over REST on connect and after a gap (issue 8).
        snapshot_wait: the longest the first connection waits for its snapshot, in seconds.
        rest_timeout: seconds per REST request.
        dialect: how the server speaks: ``"auto"`` (the default: its greeting says, and
            ``server_info.protocol`` shows which), ``"aios-v2"`` (the published protocol),
            ``"autopilot"``, ``"autopilot-dag-updates"``, a name given to
            ``aios_notebook.register_dialect``, or a ``Dialect``.
    """

    def __init__(
        self,
        url: str,
        token: TokenSource,
        types: Iterable[str] = DEFAULT_TYPES,
        filters: Mapping[str, Any] | None = None,
        store: StreamSink | None = None,
        *,
        ssl: ssl_module.SSLContext | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_reconnects: int | None = None,
        reconnect_delay: float = 1.0,
        max_reconnect_delay: float = 30.0,
        jitter: float = 0.2,
        healthy_after: float = 5.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 5.0,
        websocket_options: Mapping[str, Any] | None = None,
        rest_url: str | None = None,
        snapshots: bool = True,
        snapshot_wait: float = 5.0,
        rest_timeout: float = 10.0,
        dialect: Dialect | str = AUTO,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            shown = redact(url) if isinstance(url, str) else type(url).__name__
            raise ConfigurationError(f"url must start with ws:// or wss://, got {shown!r}")
        if ssl is not None and not url.startswith("wss://"):
            raise ConfigurationError("an ssl context was given for a ws:// url: use wss://")
        if (isinstance(token, str) and not token) or not (token is None or isinstance(token, str) or callable(token)):
            raise ConfigurationError("token must be a non-empty string, a function returning one, or None "
                                     "for a server without auth (pass token=... or set AIOS_TOKEN)")
        if isinstance(token, str) and len(token) < SHORT_SECRET:
            warnings.warn(f"the token has fewer than {SHORT_SECRET} characters: it is masked in messages only "
                          f"where it stands as a whole word, and is easy to guess", AIOSWarning, stacklevel=2)
        try:
            chosen: Dialect | str = dialect if dialect == AUTO else get_dialect(dialect)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        options = ConnectionOptions(
            ssl=ssl, max_size=max_size, open_timeout=open_timeout, ping_interval=ping_interval,
            ping_timeout=ping_timeout, close_timeout=close_timeout, reconnect_delay=reconnect_delay,
            max_reconnect_delay=max_reconnect_delay, jitter=jitter, healthy_after=healthy_after,
            max_reconnects=max_reconnects, websocket_options=dict(websocket_options or {}),
        )
        options.check()
        session = ClientSession(dialect=chosen)
        session.subscribe(_check_types(types), _check_filters(filters))
        if store is None:
            from ..store import EventStore  # pandas: imported only when a client is made

            store = EventStore()
        self._lock = threading.RLock()
        self._changed = threading.Condition(threading.Lock())
        self._version = 0  # bumped by the I/O thread after each frame or state change
        self._waiters = 0  # wait_for() calls waiting on _changed
        self._notified = 0.0  # when they were last woken (monotonic)
        self._dispatcher = CallbackDispatcher()
        self._engine = ConnectionLoop(url, token, session, store, options, self._dispatcher, self._notify)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._first_queue: EventQueue | None = None
        self._on_stop: list[Callable[[], Any]] = []
        self.simulator: Any = None  # the embedded reference server, when connect() started one
        from ..rest.service import RestService  # aiohttp: imported only when a client is made

        # snapshots merge into a store of tables; a sink that only takes frames (a recorder) gets none
        self._rest = RestService(url, self._engine.current_token, store, lambda: self._loop, rest_url=rest_url,
                                 dialect=lambda: self._engine.session.dialect,
                                 snapshots=snapshots and isinstance(store, StoreLike), snapshot_wait=snapshot_wait,
                                 timeout=rest_timeout)
        self._engine.rest = self._rest

    # -- read-only views ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The server address (anything that looks like a secret in it masked)."""
        return self._engine.safe_url

    @property
    def state(self) -> ConnectionState:
        """``"connecting"``, ``"connected"``, ``"reconnecting"``, ``"auth_failed"`` or ``"closed"``
        (a :class:`ConnectionState`, which compares equal to those strings)."""
        return self._engine.state

    @property
    def store(self) -> EventStore:
        """The ``EventStore`` this client feeds."""
        return cast("EventStore", self._engine.store)

    @property
    def stats(self) -> ClientStats:
        """A snapshot of the connection's counters (see ``ClientStats``)."""
        dispatcher = self._dispatcher
        return self._engine.stats.snapshot(self.state, callback_errors=dispatcher.failures, dropped=dispatcher.dropped)

    @property
    def server_info(self) -> ConnectionInfo | None:
        """What the server said in its greeting (client_id, capabilities, heartbeat), if anything;
        ``server_info.protocol`` is the dialect it speaks."""
        return self._engine.session.info

    @property
    def dialect(self) -> str:
        """The dialect of the current connection (``"auto"`` until the server's greeting says)."""
        session = self._engine.session
        if session.dialect is not None:
            return session.dialect.name
        setting = session.dialect_setting
        return setting if isinstance(setting, str) else setting.name

    @property
    def subscriptions(self) -> dict[str, Any]:
        """The current subscriptions: ``{"types": {type: filters}, "dag_runs": [...]}``."""
        subs = self._engine.session.subscriptions
        return {"types": {k: f.to_wire() for k, f in subs.types.items()}, "dag_runs": sorted(subs.dag_runs)}

    @property
    def callback_errors(self) -> list[str]:
        """The last exceptions raised by ``on()`` callbacks, one line each."""
        return list(self._dispatcher.errors)

    @property
    def running(self) -> bool:
        """Whether the I/O thread is running (connected or trying to be)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> AIOSClient:
        """Start the connection on a background thread and return at once (the client itself).

        Safe in a notebook cell, IPython, a plain script or inside a running asyncio loop: the I/O
        has its own thread and loop, and the caller's loop is not touched. Calling it again while
        running does nothing; after ``stop()`` or an auth failure it starts again (the
        subscriptions are kept and the missed range is resynced).
        """
        with self._lock:
            if self.running:
                return self
            self._engine.accepted.clear()
            self._engine.state = ConnectionState.CONNECTING
            # the loop is made here, under the lock, so subscribe() etc. can schedule on it at once
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._thread_main, args=(self._loop,), name="aios-client-io", daemon=True)
            self._thread.start()
            _running.add(self)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close the connection and end the I/O thread (waits up to ``timeout`` seconds)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop is already closing
                    loop.call_soon_threadsafe(self._engine.request_stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._dispatcher.stop(timeout)
        _running.discard(self)
        for stop in self._on_stop:
            with contextlib.suppress(Exception):  # an embedded server failing to stop must not hide ours
                stop()

    def _thread_main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._engine.run())
        except BaseException as exc:  # never a traceback from this thread: keep it for the caller
            self._engine.failure = ConnectionLost(f"the client's I/O loop failed: {type(exc).__name__}: {exc}")
            self._engine.state = ConnectionState.CLOSED
        finally:
            with self._lock:
                self._loop = None
            # run what other threads scheduled before they saw the loop go (subscribe() ...)
            loop.run_until_complete(asyncio.sleep(0))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._notify()

    def __enter__(self) -> AIOSClient:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> AIOSClient:
        # buffer from the start so the first ``events()`` misses nothing
        self._first_queue = EventQueue(asyncio.get_running_loop(), 10_000)
        self._first_queue.claimed = False
        self._add_queue(self._first_queue)
        return self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- subscriptions ----------------------------------------------------------------------------
    def _call(self, method: Callable[..., Any], *args: Any) -> None:
        """Run a session method on the I/O loop and wait for it (directly when no loop runs).

        Waiting (a few microseconds of loop time) means ``client.subscriptions`` read right after
        ``subscribe()`` already shows the change.
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            try:
                self._engine.apply(method, args)
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)

        with self._lock:
            loop = self._loop
            if loop is None or threading.current_thread() is self._thread:
                run()
            else:
                try:
                    loop.call_soon_threadsafe(run)
                except RuntimeError:  # the loop closed under us: nothing else touches the session now
                    run()
        # the I/O thread runs what was scheduled even while it shuts down (see _thread_main)
        done.result(timeout=30)

    def subscribe(self, types: Iterable[str] | str, filters: Mapping[str, Any] | None = None) -> None:
        """Subscribe to ``types`` (with ``filters`` replacing theirs); sent now or on reconnect."""
        self._call(self._engine.session.subscribe, _check_types(types), _check_filters(filters))

    def unsubscribe(self, types: Iterable[str] | str) -> None:
        """Stop receiving ``types``; sent now or on reconnect."""
        self._call(self._engine.session.unsubscribe, _check_types(types))

    def subscribe_dag_run(self, run_id: str) -> None:
        """Receive the DAG events of one run (legacy), on top of the other subscriptions."""
        if not isinstance(run_id, str) or not run_id:
            raise ConfigurationError(f"run_id must be a non-empty string, got {run_id!r}")
        self._call(self._engine.session.subscribe_dag_run, run_id)

    # -- user code ----------------------------------------------------------------------------------
    def on(self, event: str, callback: Callable[[Event], Any]) -> Handle:
        """Call ``callback(event)`` for each new ``event`` (``"*"``: every event); returns a Handle.

        Callbacks run on one thread of their own ("aios-callbacks"), in arrival order, after the
        event is in the store, so a slow callback never stalls the connection. An exception in a
        callback is caught, counted in ``stats.callback_errors`` and kept in ``callback_errors``.
        """
        if event != "*" and event not in SERVER_EVENTS:
            raise ConfigurationError(f"unknown event {event!r}: use '*' or one of {sorted(SERVER_EVENTS)}")
        if not callable(callback):
            raise ConfigurationError(f"callback must be callable, got {type(callback).__name__}")
        return self._dispatcher.add(event, callback)

    def add_frame_listener(self, listener: Callable[[str | bytes, Any], Any]) -> Handle:
        """Call ``listener(frame, received_at)`` for every frame as received (on the I/O thread).

        For recorders: ``frame`` is the text (or bytes) exactly as it came, ``received_at`` an
        aware UTC datetime. Keep it fast: it runs on the I/O thread. Returns a Handle.
        """
        if not callable(listener):
            raise ConfigurationError(f"listener must be callable, got {type(listener).__name__}")
        engine = self._engine
        with self._lock:
            engine.frame_listeners = (*engine.frame_listeners, listener)

        def remove() -> None:
            with self._lock:
                engine.frame_listeners = tuple(x for x in engine.frame_listeners if x is not listener)

        return Handle(remove)

    def record(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Record every frame received from now on into ``path`` (JSONL; ``.gz`` compresses).

        Returns a ``Recorder`` (``stop()``, ``path``, ``events``, ``bytes``); options
        (``rotate_bytes``, ``flush_interval``, ``overwrite``) are those of ``RecordingWriter``.
        """
        from ..recording import Recorder  # owned by the recording layer (issue 7)

        options.setdefault("dialect", self.dialect)
        return Recorder(self.add_frame_listener, path, url=self.url,
                        types=list(self.subscriptions["types"]), **options)

    def archive(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Append every frame received from now on to the Parquet archive at ``path``, alongside
        or instead of :meth:`record` (read it with ``aios_notebook.history.Archive``).

        Returns a ``LiveArchiver`` (``stop()``, ``frames``, ``rows``, ``error``); options:
        ``interval`` (seconds between writes, 60), ``rows`` (write sooner at this many frames,
        100,000), ``compact`` (merge a finished day's small files, True).
        """
        from ..store.live_archive import LiveArchiver  # the archive's writer (issue 17)

        return LiveArchiver(self.add_frame_listener, path, source=self.url, dialect=lambda: self.dialect, **options)

    # -- waiting --------------------------------------------------------------------------------
    def _notify(self) -> None:
        # called by the I/O thread for every frame: the version is a plain counter, and waiters
        # (wait_for) are woken at most every millisecond, and only when there are any
        self._version += 1
        if self._waiters:
            now = time.monotonic()
            if now - self._notified >= 0.001:
                self._notified = now
                with self._changed:
                    self._changed.notify_all()

    def _raise_failure(self) -> None:
        failure = self._engine.failure
        if failure is not None:
            raise type(failure)(str(failure))  # a fresh one: re-raising one object grows its traceback

    def wait_for(self, predicate: Callable[[Any], Any], timeout: float = 30.0, *, interval: float = 0.05) -> Any:
        """Block until ``predicate(store)`` is true; return its value.

        Call it from the notebook (main thread) while the I/O thread ingests. The predicate is
        evaluated at once, then after new frames arrive, at most every ``interval`` seconds.

        Raises:
            AuthError: the server refused the token.
            ConnectionLost: the client gave up reconnecting (``max_reconnects``).
            TimeoutError: not true within ``timeout`` seconds.
            ConfigurationError: the client is not running and the predicate is false.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._raise_failure()
            with self._changed:
                version = self._version
            result = predicate(self.store)
            if result:
                return result
            self._raise_failure()
            if not self.running:
                raise ConfigurationError(f"the client is not running (state {self.state}): call client.start()")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout:g} s (state {self.state}, "
                                   f"{self._engine.stats.events_received} events received)")
            with self._changed:
                if self._version == version:
                    # woken by frames (at most every ms) and state changes; the cap covers a wake-up
                    # that raced with the check above and predicates on anything else
                    self._waiters += 1
                    try:
                        self._changed.wait(min(remaining, 0.05))
                    finally:
                        self._waiters -= 1
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until the server accepted the auth; False on timeout (the client keeps trying).

        A server that follows the published document says nothing when the token is right, so a
        connection that saw no refusal within about a second counts as accepted.

        Raises:
            AuthError: the server refused the token.
            ConnectionLost: the client gave up reconnecting.
        """
        deadline = time.monotonic() + timeout
        while not self._engine.accepted.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            self._raise_failure()
            if time.monotonic() >= deadline or not self.running:
                self._raise_failure()
                return False
        self._raise_failure()
        return True

    # -- asyncio ------------------------------------------------------------------------------------
    def _add_queue(self, queue: EventQueue) -> None:
        with self._lock:
            self._engine.queues = (*self._engine.queues, queue)

    def _remove_queue(self, queue: EventQueue) -> None:
        with self._lock:
            self._engine.queues = tuple(q for q in self._engine.queues if q is not queue)

    async def events(self, maxsize: int = 10_000) -> AsyncIterator[Event]:
        """Iterate over new events as they arrive (``async for event in client.events()``).

        Ends when the client stops; raises AuthError or ConnectionLost when it ends by those. At
        most ``maxsize`` events wait for a slow loop body; past that the oldest are dropped and
        counted in ``stats.dropped`` (the store still gets them all).
        """
        queue, self._first_queue = self._first_queue, None
        if queue is None:
            if not self.running:
                self._raise_failure()
                raise ConfigurationError("the client is not running: call client.start() or use 'async with'")
            queue = EventQueue(asyncio.get_running_loop(), maxsize)
            self._add_queue(queue)
        queue.claimed = True
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._remove_queue(queue)

    # -- REST (issue 8): uploads, lookups, snapshots; see aios_notebook.rest ------------------------
    @property
    def rest_url(self) -> str:
        """The REST API's base URL."""
        return self._rest.base_url

    @property
    def last_snapshot(self) -> Any:
        """The last REST snapshot merged into the store (a ``rest.Snapshot``), or None."""
        return self._rest.last_snapshot

    def upload(self, path: str | os.PathLike[str], kind: str | None = None, **options: Any) -> Any:
        """Upload a pdf or audio file (kind from the extension unless given); returns job_id, run_id, status.

        Options are the endpoint's: pdf ``extract_text``, ``generate_summary``; audio ``transcribe``,
        ``summarize``. The file streams in chunks. Raises UploadError (before any request) for a
        missing, unreadable or empty file, an unknown extension or option; AuthError; APIError.
        """
        return self._rest.upload(path, kind, **options)

    def submit_url(self, url: str, **options: Any) -> Any:
        """Submit a web page (options ``full_content``, ``generate_summary``); returns job_id, run_id, status."""
        return self._rest.submit_url(url, **options)

    def watch(self, run_id: str, *, display: str = "auto", interval: float = 0.5,
              timeout: float | None = None) -> Any:
        """Follow one run to completed or failed: a progress bar in a notebook, a text line in a script.

        Returns a ``RunWatch`` at once: ``await`` it or call ``.wait()`` for the final ``RunState``.
        """
        return self._rest.watch(run_id, display=display, interval=interval, timeout=timeout)

    def search_knowledge(self, q: str | None = None, type: str | None = None,
                         tags: str | Iterable[str] | None = None, limit: int = 20) -> Any:
        """Search the knowledge base over REST; a DataFrame, one row per item."""
        return self._rest.search_knowledge(q, type, tags, limit)

    def get_dag_run(self, run_id: str) -> dict[str, Any]:
        """One DAG run with its steps, over REST."""
        return self._rest.get_dag_run(run_id)

    def refresh(self, timeout: float = 60.0) -> Any:
        """Fetch the current state over REST now and merge it into the store; returns the snapshot."""
        return self._rest.refresh(timeout)

    def __repr__(self) -> str:
        stats = self._engine.stats
        return (f"<AIOSClient {self.url} {self.state}: {stats.events_received} events, "
                f"{stats.reconnects} reconnects, {stats.gaps} gaps>")
