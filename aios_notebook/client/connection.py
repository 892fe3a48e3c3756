"""The client's I/O: one WebSocket connection after another, around the sans-I/O ``ClientSession``.

Everything here runs on the client's I/O loop (its own thread, see ``client.py``); the session and
the counters are only touched from that loop. The public ``AIOSClient`` reaches in with
``ConnectionLoop.apply`` (scheduled on the loop with ``call_soon_threadsafe``).

Why a loop of our own rather than ``async for ws in websockets.asyncio.client.connect(...)``:
websockets' reconnecting iterator resets its backoff as soon as a handshake succeeds, so a server that
accepts and then drops or refuses us at once (a wrong token seen only after the handshake, an
overloaded server) is retried in a tight loop; its delays (random 0-5 s, then 3.1 s x 1.618 up to
90 s) are not the 1 s -> 30 s the protocol asks for; it cannot be bounded to N attempts; and a
failed attempt is only visible as a log line, while we must count it and describe it in the store.
We still use websockets' ``connect`` for each single connection (handshake, TLS, proxies, size limit
and its keepalive ping/pong, which runs on this loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl as ssl_module
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..clock import utc_from_epoch
from ..exceptions import AuthError, ConfigurationError, ConnectionLost, redact
from ..protocol.models import CLOSE_TOO_BIG
from ..protocol.session import (
    Authenticated,
    AuthFailed,
    ClientSession,
    ConnectionInfo,
    Delivered,
    Duplicate,
    GapDetected,
    Malformed,
    ResyncFinished,
    ServerNotice,
    Translation,
)
from ..storelike import StreamSink
from .backoff import Backoff
from .delivery import CallbackDispatcher, Event, EventQueue
from .stats import StatsCounter

__all__ = ["DEFAULT_MAX_SIZE", "ConnectionLoop", "ConnectionOptions", "ConnectionState", "RedactingLogger", "TokenSource"]

log = logging.getLogger("aios_notebook.client")

DEFAULT_MAX_SIZE = 16 * 2**20  # a big legitimate event (a long extracted text) must not be dropped

#: a token, or a function (plain or async) returning the current one, called at every connect;
#: None for a server without auth (no auth message is sent)
TokenSource = str | Callable[[], Any] | None

_CLOSE_NAMES = {1000: "normal closure", 1001: "going away", 1006: "dropped without a close frame",
                1008: "policy violation", 1009: "frame too big", 1011: "server error",
                4401: "auth failed", 4408: "auth timeout"}


class ConnectionState(str, Enum):
    """Where a client's connection stands (a ``str``: ``client.state == "connected"`` holds)."""

    CONNECTING = "connecting"  #: the first connection is being made
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  #: the connection was lost; backing off, then trying again
    AUTH_FAILED = "auth_failed"  #: refused (token, path): not reconnecting
    CLOSED = "closed"  #: stopped, or gave up (max_reconnects)

    def __str__(self) -> str:
        return self.value


@dataclass
class ConnectionOptions:
    """Connection settings of one client (see ``AIOSClient`` for their meaning)."""

    ssl: ssl_module.SSLContext | None = None
    max_size: int | None = DEFAULT_MAX_SIZE
    open_timeout: float = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
    reconnect_delay: float = 1.0
    max_reconnect_delay: float = 30.0
    jitter: float = 0.2
    healthy_after: float = 5.0
    max_reconnects: int | None = None
    max_queue: int = 1024
    accept_grace: float = 1.0
    websocket_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Raise ConfigurationError naming the first bad setting."""
        Backoff(self.reconnect_delay, self.max_reconnect_delay, jitter=self.jitter)
        for name in ("open_timeout", "close_timeout", "healthy_after", "accept_grace"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be a number of seconds >= 0, got {value!r}")
        for name in ("ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ConfigurationError(f"{name} must be > 0 s or None (off), got {value!r}")
        if self.max_reconnects is not None and (not isinstance(self.max_reconnects, int) or self.max_reconnects < 0):
            raise ConfigurationError(f"max_reconnects must be an int >= 0 or None (forever), got {self.max_reconnects!r}")
        if self.max_size is not None and (not isinstance(self.max_size, int) or self.max_size < 1024):
            raise ConfigurationError(f"max_size must be a byte count >= 1024 or None, got {self.max_size!r}")
        if self.ssl is not None and not isinstance(self.ssl, ssl_module.SSLContext):
            raise ConfigurationError(f"ssl must be an ssl.SSLContext, got {type(self.ssl).__name__}")


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for websockets that masks the tokens (and anything token-like) in every line."""

    def __init__(self, logger: logging.Logger, secrets: Callable[[], list[str]]) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.pop("exc_info", None)  # a traceback could quote the frame: the one line is enough
            self.logger.log(level, "%s", redact(text, *self._secrets()), **kwargs)


class ConnectionLoop:
    """The connection loop, the frame handler and the hand-off to the store and to user code."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        session: ClientSession,
        store: StreamSink,
        options: ConnectionOptions,
        dispatcher: CallbackDispatcher,
        changed: Callable[[], None],
    ) -> None:
        self.url = url
        self.safe_url = redact(url)
        self._token_source = token
        self.session = session
        self.store = store
        self.options = options
        self.dispatcher = dispatcher
        self._changed = changed  # wakes wait_for() in other threads
        self.stats = StatsCounter()
        self.state = ConnectionState.CLOSED
        self.failure: AuthError | ConnectionLost | None = None
        self.accepted = threading.Event()  # the server took our auth (for connect()'s wait)
        self.frame_listeners: tuple[Callable[[str | bytes, Any], Any], ...] = ()
        self.queues: tuple[EventQueue, ...] = ()
        self.tokens: list[str] = []  # tokens used so far, only to redact them from messages
        self._logged: set[int] = set()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._auth_rejection: str | None = None
        self._rejection_in_store = False  # the server's error auth_failed frame is already an errors row
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rest: Any = None  # the client's RestService (issue 8): snapshot hooks, never raise

    # -- called from the client, on the loop ------------------------------------------------
    def apply(self, method: Callable[..., Any], args: tuple[Any, ...]) -> None:
        """Run a session method (subscribe ...) on the loop, then send what it queued."""
        method(*args)
        if self._wake is not None:
            self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        if self._stop is not None:
            self._stop.set()
        if self._ws is not None and self._loop is not None:
            self._loop.create_task(self._ws.close(1000, "client stopped"))

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect with backoff, until stopped, refused or out of attempts."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._auth_rejection = None
        self._rejection_in_store = False
        self.failure = None
        try:
            await self._connect_loop()
        finally:
            if self.state is not ConnectionState.AUTH_FAILED:
                self._set_state(ConnectionState.CLOSED)
            if self.rest is not None:
                await self.rest.close()
            for queue in self.queues:
                queue.end(self.failure)
            self._changed()

    async def _connect_loop(self) -> None:
        options = self.options
        backoff = Backoff(options.reconnect_delay, options.max_reconnect_delay, jitter=options.jitter)
        failures = 0  # attempts in a row that did not give a healthy connection
        while not self._stopping:
            self._set_state(ConnectionState.RECONNECTING if self.stats.connections else ConnectionState.CONNECTING)
            try:
                token = await self._token()
                if self.rest is not None:  # the first connect fetches the REST snapshot first
                    await self.rest.before_connect(token, first=self.stats.connections == 0)
                ws = await ws_connect(self.url, **self._websocket_kwargs())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
                if status == 401:
                    self._fail_auth(f"the handshake was answered with HTTP {status}")
                    return
                if status in (403, 404):
                    # servers refuse a path they do not have with 403 too: not the token's fault alone
                    self._fail_refused(status)
                    return
                self.stats.failed_attempts += 1
                failures += 1
                problem = self._describe(exc)
            else:
                opened = time.monotonic()
                self._ws = ws
                try:
                    await self._serve(ws, token)
                finally:
                    self._ws = None
                if self._auth_rejection is not None:
                    self._fail_auth(self._auth_rejection)
                    return
                if self._stopping:
                    return
                if time.monotonic() - opened >= options.healthy_after:
                    backoff.reset()
                    failures = 0
                else:
                    failures += 1  # a connection that died young: keep backing off
                problem = self._describe_close(ws)
            if self._stopping:
                return
            if options.max_reconnects is not None and failures > options.max_reconnects:
                message = (f"gave up on {self.safe_url} after {failures} failed attempts in a row "
                           f"(max_reconnects={options.max_reconnects}): {problem}")
                self._record("connection_error", message)
                self._finish(ConnectionState.CLOSED, ConnectionLost(message))
                log.warning("AIOS: %s", message)
                return
            delay = backoff.next_delay()
            self._set_state(ConnectionState.RECONNECTING if self.stats.connections else ConnectionState.CONNECTING)
            self._record("connection_error", f"{problem}; reconnecting in {delay:.1f} s")
            assert self._stop is not None
            with contextlib.suppress(asyncio.TimeoutError):  # woken early only by stop()
                await asyncio.wait_for(self._stop.wait(), delay)

    def _websocket_kwargs(self) -> dict[str, Any]:
        options = self.options
        kwargs: dict[str, Any] = {
            "max_size": options.max_size,
            "open_timeout": options.open_timeout or None,
            "ping_interval": options.ping_interval,
            "ping_timeout": options.ping_timeout,
            "close_timeout": options.close_timeout,
            "max_queue": options.max_queue,
            "user_agent_header": f"aios-notebook websockets/{websockets.__version__}",
            # websockets logs every frame at DEBUG level, the auth frame too
            "logger": RedactingLogger(logging.getLogger("websockets.client"), lambda: self.tokens),
        }
        if options.ssl is not None:
            kwargs["ssl"] = options.ssl
        kwargs.update(options.websocket_options)
        return kwargs

    async def current_token(self) -> str | None:
        """The token for REST calls: the last one used, else a fresh one from the source."""
        return self.tokens[-1] if self.tokens else await self._token()

    async def _token(self) -> str | None:
        source = self._token_source
        if source is None:
            return None
        if callable(source):
            # a refresh may do blocking I/O: keep it off the loop
            token = await asyncio.to_thread(source)
            if inspect.isawaitable(token):
                token = await token
        else:
            token = source
        if not isinstance(token, str) or not token:
            raise ConfigurationError(f"the token function returned {type(token).__name__}, not a non-empty string")
        if token not in self.tokens:
            self.tokens = [*self.tokens[-4:], token]
        return token

    # -- one connection ---------------------------------------------------------------------
    async def _serve(self, ws: ClientConnection, token: str | None) -> None:
        session, stats = self.session, self.stats
        assert self._loop is not None and self._wake is not None
        reconnect = stats.connections > 0
        session.connection_opened(token)  # auth, then the subscriptions, then what was queued
        stats.connections += 1
        stats.connected_since = time.time()
        stats.last_error = None  # the connection works again: an old failure is no longer news
        if reconnect:
            stats.reconnects += 1
            self._record("reconnect", f"reconnected to {self.safe_url} (connection {stats.connections})")
        self._set_state(ConnectionState.CONNECTED)
        if self.rest is not None:
            self.rest.connected(reconnect)
        self._wake.set()
        writer = asyncio.create_task(self._write(ws))
        watchdog = asyncio.create_task(self._watch(ws))
        # a server that follows the published document says nothing when the token is right
        grace = self._loop.call_later(self.options.accept_grace, self.accepted.set)
        try:
            while self._auth_rejection is None:
                self._on_frame(await ws.recv())
        except ConnectionClosed:
            pass
        finally:
            grace.cancel()
            writer.cancel()
            watchdog.cancel()
            await asyncio.gather(writer, watchdog, return_exceptions=True)
            stats.connected_since = None
        if self._auth_rejection is not None:
            await ws.close(1000, "auth failed")
        if _closed_too_big(ws):
            # a frame over max_size: a resync would replay it and fail again, forever
            session.skip_resync(f"a frame over max_size ({self.options.max_size} bytes) could not be received")
        for event in session.connection_closed(ws.close_code, ws.close_reason or ""):
            if isinstance(event, AuthFailed) and self._auth_rejection is None:
                self._auth_rejection = event.reason

    async def _write(self, ws: ClientConnection) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            for text in self.session.data_to_send():
                await ws.send(text)

    async def _watch(self, ws: ClientConnection) -> None:
        """Close a connection whose heartbeat went silent (only for servers that send pings)."""
        while True:
            deadline = self.session.next_check()
            wait = 1.0 if deadline is None else max(0.0, deadline - time.monotonic()) + 0.001
            await asyncio.sleep(min(wait, 1.0))
            self.session.tick()  # a dialect's own keepalive (autopilot: the text "ping")
            self._wake_writer()
            dead = self.session.check_alive()
            if dead is not None:
                self.stats.stale_disconnects += 1
                self._record("connection_error", f"no frame for {dead.silent_for:.1f} s (the heartbeat allows "
                             f"{dead.limit:.1f} s): the connection is dead, reconnecting")
                ws.transport.abort()  # no closing handshake with a peer that does not answer
                return

    # -- frames in --------------------------------------------------------------------------
    def _on_frame(self, frame: str | bytes) -> None:
        # the receiving thread's per-frame work, kept to what only it can do: the session reads a
        # well-formed frame's envelope alone and the store parses it once, off this thread
        stats = self.stats
        now = time.monotonic()
        received_ns = time.time_ns() // 1000 * 1000  # microseconds, as recordings keep them
        stats.frames_received += 1
        if isinstance(frame, bytes) or frame.isascii():  # no encoding needed to count its bytes
            stats.bytes_received += len(frame)
        else:
            stats.bytes_received += len(frame.encode())
        received_at = None  # an aware datetime, made only for code that is given one
        if self.frame_listeners:
            received_at = utc_from_epoch(received_ns / 1e9)
            for listener in self.frame_listeners:
                try:
                    listener(frame, received_at)
                except Exception as exc:
                    self._user_code_failed("frame listener", listener, exc)
        events = self.session.receive(frame, received_ns / 1e9)
        if len(events) == 1 and type(events[0]) is Delivered:  # the usual frame: a new event
            self._ingest(frame, received_ns)
            self._delivered(events[0], now, received_ns, received_at)
        else:
            self._events(frame, events, now, received_ns, received_at)
        if self.session.has_data_to_send:
            self._wake_writer()  # pongs, the resync request, a dialect's subscriptions
        self._changed()

    def _ingest(self, frame: Any, received_ns: int) -> None:
        try:
            self.store.ingest_frame(frame, received_ns=received_ns)
        except Exception as exc:
            self.stats.store_errors += 1
            self._log_once(self.store, f"the store failed to ingest a frame: {type(exc).__name__}: {exc}")

    def _events(self, frame: str | bytes, events: list[Any], now: float, received_ns: int, received_at: Any) -> None:
        stats = self.stats
        if any(isinstance(event, Duplicate) for event in events):
            stats.duplicates += 1  # already in the store: a resync replay overlapping the live stream
        else:
            # a foreign dialect's frame goes with its translation: raw keeps it as received
            first = events[0] if events else None
            self._ingest(first.translated if isinstance(first, Translation) else frame, received_ns)
        for event in events:
            if isinstance(event, Delivered):
                self._delivered(event, now, received_ns, received_at)
            elif isinstance(event, Malformed):
                stats.malformed += 1
            elif isinstance(event, GapDetected):
                stats.gaps += 1
                self._store_call("add_gap", event.start, event.end, event.reason)
                if self.rest is not None:
                    self.rest.gap(event)
            elif isinstance(event, AuthFailed):
                self._auth_rejection = event.reason
                self._rejection_in_store = True
            elif isinstance(event, ResyncFinished):
                stats.resyncs += 1
                self.accepted.set()
            elif isinstance(event, Authenticated):
                self.accepted.set()
            elif isinstance(event, ConnectionInfo):
                if self.session.dialect is not None and not self.session.dialect.native:
                    self.accepted.set()  # a server without auth: nothing more to wait for
                if self.rest is not None and self.session.dialect is not None:
                    self.rest.greeted(self.session.dialect)
            elif isinstance(event, ServerNotice):
                stats.last_error = redact(f"server {event.event} {event.code or ''}: {event.message}", *self.tokens)
                if self._token_source is None and event.code in ("not_authenticated", "auth_timeout"):
                    # no token was given (a server without auth was expected): this one wants one
                    self._auth_rejection = (f"wants a token and none was given (it answered {event.code}): "
                                            f"pass one (the token argument, or AIOS_TOKEN)")

    def _delivered(self, delivered: Delivered, now: float, received_ns: int, received_at: Any) -> None:
        self.stats.event(now, delivered.replayed)
        if not self.accepted.is_set():
            self.accepted.set()
        queues = self.queues
        wanted = self.dispatcher.wants(delivered.event)
        if not queues and not wanted:
            return  # nobody reads the event's data here: it is not decoded on this thread
        message = delivered.message
        when = received_at if received_at is not None else utc_from_epoch(received_ns / 1e9)
        item = Event(message.event, message.data, message.seq, when, delivered.replayed)
        if wanted:
            self.dispatcher.put(item)
        for queue in queues:
            if not queue.put(item) and queue.claimed:
                self.stats.dropped += 1

    def _wake_writer(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- bookkeeping ------------------------------------------------------------------------
    def _set_state(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state = state
            self._changed()

    def _finish(self, state: ConnectionState, failure: AuthError | ConnectionLost) -> None:
        # the state first: whoever sees the failure also sees the final state
        self.state = state
        self.failure = failure
        self._changed()

    def _fail_auth(self, reason: str) -> None:
        reason = redact(reason, *self.tokens)
        if self._token_source is None:
            message = f"the server at {self.safe_url} {reason}; not reconnecting"
        else:
            message = (f"the server at {self.safe_url} refused the token ({reason}); not reconnecting: "
                       f"fix the token and call client.start() again")
        self.stats.last_error = message
        if not self._rejection_in_store:  # a close 4401 or HTTP 401 alone: no frame said it
            self._store_call("add_error", "auth_failed", message, code="auth_failed")
        self._finish(ConnectionState.AUTH_FAILED, AuthError(message))
        log.warning("AIOS: %s", message)

    def _fail_refused(self, status: int) -> None:
        path = urlsplit(self.url).path or "/"
        message = (f"{self.safe_url} refused the WebSocket handshake with HTTP {status}: wrong path or token "
                   f"(path {path!r}; AIOS servers listen on /ws, the DAG app on /ws/dag-updates); "
                   f"not reconnecting")
        message = redact(message, *self.tokens)
        self.stats.last_error = message
        self._store_call("add_error", "connection_error", message, code=f"http_{status}")
        self._finish(ConnectionState.AUTH_FAILED, AuthError(message))
        log.warning("AIOS: %s", message)

    def _record(self, kind: str, message: str) -> None:
        message = redact(message, *self.tokens)
        self.stats.last_error = message if kind == "connection_error" else self.stats.last_error
        self._store_call("add_error", kind, message)
        self._changed()

    def _store_call(self, method: str, *args: Any, **kwargs: Any) -> None:
        try:
            getattr(self.store, method)(*args, **kwargs)
        except Exception as exc:
            self.stats.store_errors += 1
            self._log_once(self.store, f"store.{method} failed: {type(exc).__name__}: {exc}")

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no handshake from {self.safe_url} within {self.options.open_timeout:g} s"
        elif isinstance(exc, InvalidStatus):
            text = f"{self.safe_url} answered the handshake with HTTP {exc.response.status_code}"
        else:
            text = f"cannot connect to {self.safe_url}: {type(exc).__name__}: {exc}"
        return redact(text, *self.tokens)

    def _describe_close(self, ws: ClientConnection) -> str:
        if _closed_too_big(ws):
            return f"a frame over max_size ({self.options.max_size} bytes) arrived: closed with 1009"
        code = ws.close_code
        if code is None or code == 1006:
            return f"the connection to {self.safe_url} dropped"
        name = _CLOSE_NAMES.get(code, "")
        reason = f": {ws.close_reason}" if ws.close_reason else ""
        return redact(f"{self.safe_url} closed the connection ({code} {name}{reason})", *self.tokens)

    def _user_code_failed(self, what: str, fn: Any, exc: Exception) -> None:
        self.stats.callback_errors += 1
        name = getattr(fn, "__qualname__", None) or repr(fn)
        self._log_once(fn, f"{what} {name} raised {type(exc).__name__}: {exc}")

    def _log_once(self, key: Any, message: str) -> None:
        if id(key) not in self._logged:
            self._logged.add(id(key))
            log.warning("AIOS: %s (further errors are only counted in client.stats)", redact(message, *self.tokens))


def _closed_too_big(ws: ClientConnection) -> bool:
    """Whether either side closed for a frame over its size limit (we send 1009 ourselves)."""
    sent = ws.protocol.close_sent
    return ws.close_code == CLOSE_TOO_BIG or (sent is not None and sent.code == CLOSE_TOO_BIG)
