"""Sans-I/O connection logic for both ends of an AIOS v2 WebSocket.

Like python-websockets' protocol objects, these classes do no I/O and never sleep: the I/O layer
feeds them frames and the time, and sends what they queue. The client (``client.py``) and the
reference server (``server/``) run the very same rules, so they cannot drift apart, and most of the
protocol is tested without a socket.

Client side::

    session = ClientSession(subscriptions)
    session.connection_opened(token)          # queues auth, then the subscriptions
    for text in session.data_to_send(): send(text)
    for event in session.receive(frame):       # Delivered, Duplicate, Malformed, GapDetected ...
        ...
    if session.check_alive(now) is not None:  # ConnectionDead: stale heartbeat
        reconnect()

Server side::

    session = ServerSession(client_id="c1", token_check=check)
    session.opened()                           # queues connected
    for request in session.receive(frame):     # ResyncRequest, DagRunRequest, CloseRequest ...
        ...
    session.tick()                             # heartbeat pings, auth timeout
    if session.wants(event, data): send(frame)
"""

from __future__ import annotations

import hmac
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Self

from ..clock import Clock, WallClock, as_clock
from .codec import Decoded, Message, decode, encode, format_timestamp, parse_timestamp
from .dialects import AUTO, Dialect, Translated, detect_dialect, get_dialect
from .models import (
    CLIENT_EVENTS,
    CLOSE_AUTH_FAILED,
    CLOSE_AUTH_TIMEOUT,
    CLOSE_GOING_AWAY,
    CLOSE_TOO_BIG,
    DEFAULT_HEARTBEAT,
    MAX_FRAME_BYTES,
    PROTOCOL_NAME,
    SERVER_CAPABILITIES,
    STREAM_EVENTS,
    TYPE_OF_EVENT,
)
from .subscriptions import Filters, Subscriptions

__all__ = [
    "AuthFailed",
    "AuthRejected",
    "Authenticated",
    "ClientSession",
    "CloseRequest",
    "ConnectionDead",
    "ConnectionInfo",
    "DagRunRequest",
    "Delivered",
    "Duplicate",
    "GapDetected",
    "Malformed",
    "ResyncFinished",
    "ResyncRequest",
    "ResyncState",
    "ServerNotice",
    "ServerSession",
    "SubscriptionChanged",
    "Translation",
]

class ResyncState(str, Enum):
    """Where the session stands in catching up after a reconnect."""

    LIVE = "live"  #: nothing to catch up on
    AWAITING_GREETING = "awaiting_greeting"  #: reconnected; the greeting says whether the server can resync
    REPLAYING = "replaying"  #: a resync was asked for; its replay is under way until resync_complete

    def __str__(self) -> str:
        return self.value


_LIVE = ResyncState.LIVE  # read for every frame: a module global is cheaper than the class attribute
_ONCE = frozenset({"unknown_event", "field_type"})  # a foreign frame's problems described once each
_SEEN_WINDOW = 200_000  # seqs remembered for de-duplication; older ones count as already seen
STALE_FACTOR = 2.5


# ----------------------------------------------------------------------------------------------
# what the client session reports
class _Frame:
    """An event frame as the session saw it: its name and seq, and its data decoded only when asked.

    The session reads a well-formed frame's envelope alone (event name and seq, from the text):
    the store decodes and checks every frame once, in its batch parse, so decoding it here too
    would parse each frame twice on the receiving thread.
    """

    __slots__ = ("_decoded", "event", "replayed", "seq", "text")

    def __init__(self, decoded: Decoded | str, replayed: bool = False, *, event: str = "",
                 seq: int | None = None) -> None:
        if isinstance(decoded, Decoded):
            assert decoded.message is not None
            self._decoded: Decoded | None = decoded
            self.text = decoded.text
            self.event = decoded.message.event
            self.seq = decoded.message.seq
        else:
            self._decoded = None
            self.text = decoded
            self.event = event
            self.seq = seq
        self.replayed = replayed

    @classmethod
    def of_text(cls, text: str, event: str, seq: int | None, replayed: bool = False) -> Self:
        """A frame read by its envelope alone (the receiving thread's fast path: no checks to run)."""
        frame = cls.__new__(cls)
        frame._decoded = None
        frame.text = text
        frame.event = event
        frame.seq = seq
        frame.replayed = replayed
        return frame

    @property
    def decoded(self) -> Decoded:
        if self._decoded is None:
            self._decoded = decode(self.text, check=False)
        return self._decoded

    @property
    def message(self) -> Message:
        message = self.decoded.message
        assert message is not None
        return message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.event!r}, seq={self.seq}, replayed={self.replayed})"


class Delivered(_Frame):
    """A new event of the stream (or an unknown but readable event): hand it to the store."""

    __slots__ = ()


class Duplicate(_Frame):
    """An event whose seq was already delivered (resync replay overlapping the live stream)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame with problems. ``decoded.message`` may still be usable (then it is also Delivered)."""

    decoded: Decoded


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """The server's greeting: who we are, what the server can do, and the dialect it speaks.

    ``protocol`` is the dialect's name (``"aios-v2"``, ``"autopilot"`` ...); ``stream_id`` the
    server's stream identity (an extension of the reference server: a new one per process).
    """

    client_id: str | None
    capabilities: frozenset[str]
    heartbeat_interval: float | None
    server_time: Any = None
    protocol: str | None = None
    stream_id: str | None = None


@dataclass(frozen=True, slots=True)
class Translation:
    """A frame of a foreign dialect, as the store should keep it (reported first for such a frame)."""

    translated: Translated


@dataclass(frozen=True, slots=True)
class Authenticated:
    client_id: str | None


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The server refused the token (error auth_failed or close 4401): do not reconnect."""

    reason: str


@dataclass(frozen=True, slots=True)
class ServerNotice:
    """A connection-scoped error reply or connection_error from the server."""

    event: str
    code: str | None
    message: str
    decoded: Decoded


@dataclass(frozen=True, slots=True)
class GapDetected:
    """Part of the stream is missing: event time ``start`` to ``end`` (aware datetimes or None)."""

    start: Any
    end: Any
    reason: str
    since_seq: int | None = None
    until_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ResyncFinished:
    from_seq: int | None
    to_seq: int | None
    replayed: int
    complete: bool


@dataclass(frozen=True, slots=True)
class ConnectionDead:
    """No frame for longer than the heartbeat allows: close and reconnect."""

    silent_for: float
    limit: float


ClientEvent = (
    Delivered | Duplicate | Malformed | ConnectionInfo | Authenticated | AuthFailed | ServerNotice
    | GapDetected | ResyncFinished | Translation
)


class ClientSession:
    """The client's side of the protocol, across reconnects.

    It remembers what the user subscribed to (types, filters, legacy DAG runs) and restores it on every
    new connection, after auth; then asks for a resync from the last seq when the server offers it, and
    reports a gap when it does not or cannot fill the range. Messages asked for while disconnected are
    kept and sent in order after the subscriptions.

    Time: ``clock`` is a :class:`~aios_notebook.clock.Clock` (the wall clock by default; a function
    of monotonic seconds is still taken): staleness and keepalives run on its ``monotonic()``, the
    pong's timestamp on its ``time()``.

    Dialect: ``dialect`` is a :class:`~.dialects.Dialect`, its name, or ``"auto"`` (the default:
    the first frame of each connection, the server's greeting, picks one; an unknown greeting
    means the published protocol). With a foreign dialect each frame is translated into published
    events (reported as ``Translation`` first, then ``Delivered`` for each event the
    subscriptions keep: such servers do not filter, so the session does).
    """

    def __init__(
        self,
        subscriptions: Subscriptions | None = None,
        *,
        clock: Clock | Callable[[], float] | None = None,
        default_heartbeat: float = DEFAULT_HEARTBEAT,
        stale_factor: float = STALE_FACTOR,
        dialect: Dialect | str = AUTO,
    ) -> None:
        self.dialect_setting: Dialect | str = dialect if dialect == AUTO else get_dialect(dialect)
        #: the dialect of the current connection (None until the greeting says, with "auto")
        self.dialect: Dialect | None = None if dialect == AUTO else get_dialect(dialect)
        self.subscriptions = subscriptions or Subscriptions()
        self._clock = as_clock(clock)
        self.default_heartbeat = default_heartbeat
        self.stale_factor = stale_factor
        self._outgoing: list[str] = []
        self._pending: list[str] = []  # asked for while disconnected
        self.open = False
        self.auth_failed = False
        self.connections = 0
        self.info: ConnectionInfo | None = None
        self.heartbeat_interval: float | None = None  # known once advertised or a ping arrived
        self.last_frame_at: float | None = None
        self.last_seq: int | None = None
        self._last_event_time: Any = None  # event time (aware datetime) of the newest event read
        self._newest: _Frame | None = None  # the newest delivered event, its time not read yet
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._seen_floor = -1
        self._open_gap: tuple[Any, str, int | None] | None = None  # (start, reason, since_seq)
        self.resync = ResyncState.LIVE
        self._resync_requested_from: int | None = None  # the since_seq asked for while REPLAYING
        self._unfinished_resync: int | None = None  # since_seq of a replay cut short by a disconnect
        self._skip_resync: str | None = None  # why the next connection must not ask for a resync
        self._check_numbering = False  # the first seq of a new connection tells if the server restarted
        self._stream_id: str | None = None  # the server's stream identity, once it said one
        self._described: set[tuple[str | None, str, str | None]] = set()  # (event, kind, field) described once
        self._next_keepalive: float | None = None

    # -- what the user asks for -------------------------------------------------------------
    def subscribe(self, types: Iterable[str], filters: Mapping[str, Any] | Filters | None = None) -> list[str]:
        """Subscribe to ``types`` (sent now if connected, else on connect); returns unknown types."""
        types = list(types)
        parsed = filters if isinstance(filters, Filters) else Filters.parse(filters)[0]
        unknown = self.subscriptions.subscribe(types, parsed)
        data: dict[str, Any] = {"types": types}
        if parsed.to_wire():
            data["filters"] = parsed.to_wire()
        self._send_or_keep("subscribe", data)
        return unknown

    def unsubscribe(self, types: Iterable[str]) -> list[str]:
        types = list(types)
        unknown = self.subscriptions.unsubscribe(types)
        self._send_or_keep("unsubscribe", {"types": types})
        return unknown

    def subscribe_dag_run(self, run_id: str) -> None:
        self.subscriptions.add_dag_run(run_id)
        dialect = self.dialect
        if dialect is not None and not dialect.native:
            frame = dialect.subscribe_run_frame(run_id)
            if frame is not None and self.open:
                self._outgoing.append(frame)
            return  # a server without it: the subscription is the session's filter alone
        self._send_or_keep("subscribe_dag_run", {"run_id": run_id})

    def send(self, event: str, data: Mapping[str, Any] | None = None) -> None:
        """Any other client message: sent now if connected, else kept for the next connection."""
        self._send_or_keep(event, dict(data or {}))

    def _send_or_keep(self, event: str, data: dict[str, Any]) -> None:
        text = encode(event, data)
        if self.open:
            self._outgoing.append(text)
        elif event not in ("subscribe", "unsubscribe", "subscribe_dag_run"):
            # subscription changes are already in self.subscriptions and restored on connect
            self._pending.append(text)

    # -- connection lifecycle ---------------------------------------------------------------
    def connection_opened(self, token: str | None) -> None:
        """A new socket is open: queue auth (unless ``token`` is None), the subscriptions, then
        what was kept while offline. A foreign dialect gets only what it understands."""
        reconnect = self.connections > 0
        self.connections += 1
        self.open = True
        self.auth_failed = False
        self.info = None
        self.heartbeat_interval = None
        self.last_frame_at = self._clock.monotonic()
        self._next_keepalive = None
        if self.dialect_setting == AUTO:
            self.dialect = None  # each connection's greeting says again
        dialect = self.dialect
        if dialect is not None and not dialect.native:
            self._outgoing = self._foreign_opening(dialect)
        else:
            self._outgoing = [] if token is None else [encode("auth", {"token": token})]
            self._outgoing.extend(encode(e, d) for e, d in self.subscriptions.to_messages())
            self._outgoing.extend(self._pending)
            self._pending = []
        if self.resync is ResyncState.REPLAYING:
            # the connection closed before resync_complete: live events that overtook the replay may
            # have moved last_seq past events never replayed, so the next resync starts where this one did
            self._unfinished_resync = self._resync_requested_from
        self._resync_requested_from = None
        # the resync (or the gap) is decided when the server says what it can do
        self.resync = ResyncState.AWAITING_GREETING if reconnect else ResyncState.LIVE
        self._check_numbering = reconnect

    def connection_closed(self, code: int | None = None, reason: str = "") -> list[ClientEvent]:
        """The socket closed. Returns AuthFailed for close 4401."""
        self.open = False
        self._outgoing = []
        if code == CLOSE_AUTH_FAILED:
            self.auth_failed = True
            return [AuthFailed(reason or "the server closed the connection with 4401 (wrong token)")]
        return []

    def data_to_send(self) -> list[str]:
        """The frames to send now, in order."""
        out, self._outgoing = self._outgoing, []
        return out

    def skip_resync(self, reason: str) -> None:
        """Do not ask for a resync on the next connection: what was missed becomes a gap.

        For a replay that cannot succeed, e.g. it holds a frame larger than the client accepts.
        """
        self._skip_resync = reason

    def _foreign_opening(self, dialect: Dialect) -> list[str]:
        """What a foreign dialect is sent on connect: its own DAG-run subscriptions, a keepalive."""
        self._pending = []  # published messages it would not understand
        out = [f for f in map(dialect.subscribe_run_frame, sorted(self.subscriptions.dag_runs)) if f is not None]
        if dialect.keepalive.send is not None:
            # our own keepalive is answered: silence past the stale limit means a dead connection
            self.heartbeat_interval = dialect.keepalive.every
            self._next_keepalive = self._clock.monotonic() + dialect.keepalive.every
        return out

    def tick(self, now: float | None = None) -> None:
        """Queue the dialect's keepalive when it is due (call about once a second)."""
        dialect = self.dialect
        if not self.open or dialect is None or self._next_keepalive is None or dialect.keepalive.send is None:
            return
        now = self._clock.monotonic() if now is None else now
        if now >= self._next_keepalive:
            self._next_keepalive = now + dialect.keepalive.every
            self._outgoing.append(dialect.keepalive.send)

    def check_alive(self, now: float | None = None) -> ConnectionDead | None:
        """Stale heartbeat check: only for servers that showed they send pings."""
        if not self.open or self.heartbeat_interval is None or self.last_frame_at is None:
            return None
        now = self._clock.monotonic() if now is None else now
        limit = self.stale_factor * self.heartbeat_interval
        silent = now - self.last_frame_at
        return ConnectionDead(silent, limit) if silent > limit else None

    def next_check(self) -> float | None:
        """Monotonic time at which ``check_alive`` could next report a dead connection, or
        ``tick`` has a keepalive to send, whichever comes first."""
        stale = None
        if self.heartbeat_interval is not None and self.last_frame_at is not None:
            stale = self.last_frame_at + self.stale_factor * self.heartbeat_interval
        keepalive = self._next_keepalive if self.open else None
        if stale is None or keepalive is None:
            return stale if keepalive is None else keepalive
        return min(stale, keepalive)

    # -- frames in ----------------------------------------------------------------------------
    def receive(self, frame: str | bytes, received_at: float | None = None) -> list[ClientEvent]:
        """Feed one frame; returns what happened.

        ``received_at`` (epoch seconds) is when it arrived: a foreign dialect's frames without a
        usable event time take it.
        """
        self.last_frame_at = self._clock.monotonic()
        if self.dialect is None:
            self._pick_dialect(frame)
        dialect = self.dialect
        if dialect is not None and not dialect.native:
            return self._receive_foreign(dialect, frame, received_at)
        if type(frame) is str:
            envelope = _envelope(frame)
            if envelope is not None:  # a well-formed event of the stream: its name and seq suffice
                event, seq = envelope
                if (seq is not None and seq > self._seen_floor and seq not in self._seen
                        and self.resync is _LIVE and self._open_gap is None and not self._check_numbering):
                    # the usual frame, live and new: what _accept does, in the fewest steps (it runs
                    # for every frame on the receiving thread; the tests hold it to _accept)
                    self._remember(seq)
                    if self.last_seq is None or seq > self.last_seq:
                        self.last_seq = seq
                    delivered = Delivered.of_text(frame, event, seq)
                    self._newest = delivered
                    return [delivered]
                accepted: list[ClientEvent] = []
                self._accept(event, seq, frame, None, accepted)
                return accepted
        decoded = decode(frame)
        message = decoded.message
        events: list[ClientEvent] = []
        if decoded.problems:
            events.append(Malformed(decoded))
        if message is None:
            return events
        handler = _CLIENT_HANDLERS.get(message.event)
        if handler is not None:
            handler(self, decoded, message, events)
        else:
            self._deliver(decoded, message, events)
        return events

    def _pick_dialect(self, frame: str | bytes) -> None:
        """"auto": the connection's first frame, the greeting, names the dialect."""
        dialect = detect_dialect(frame) or get_dialect("aios-v2")
        self.dialect = dialect
        if not dialect.native:
            # what connection_opened queued in the published protocol is not understood here
            self._outgoing = self._foreign_opening(dialect)

    def _receive_foreign(self, dialect: Dialect, frame: str | bytes, received_at: float | None) -> list[ClientEvent]:
        translated = dialect.translate(frame, received_at)
        role = translated.role
        events: list[ClientEvent] = []
        # an event name without a mapping, or a field that is never right (a server's clock as
        # event time), is described once, not on every frame
        problems = []
        for problem in translated.problems:
            key = (translated.event, problem.kind, problem.field)
            if translated.event is None or problem.kind not in _ONCE:
                problems.append(problem)
            elif key not in self._described:
                self._described.add(key)
                problems.append(problem)
        kept: list[Message] = []
        if role == "event":
            for message in translated.messages:
                if dialect.server_filters or self.subscriptions.matches(message.event, message.data):
                    kept.append(message)
        translated = Translated(translated.text, translated.event, role, tuple(kept), tuple(problems), translated.when)
        events.append(Translation(translated))
        if problems:
            events.append(Malformed(Decoded(translated.text, None, tuple(problems))))
        if role == "greeting":
            self._foreign_greeting(dialect, translated, received_at, events)
        elif role == "keepalive":
            if self.heartbeat_interval is None:
                self.heartbeat_interval = self.default_heartbeat
        elif role == "reply":
            try:
                body = json.loads(translated.text)
            except ValueError:
                body = {}
            text = body.get("message") if isinstance(body, dict) else None
            code = body.get("code") if isinstance(body, dict) else None
            events.append(ServerNotice(translated.event or "error", code if isinstance(code, str) else None,
                                       text if isinstance(text, str) else "",
                                       Decoded(translated.text, None)))
        for message in kept:
            self._deliver(Decoded(translated.text, message), message, events)
        return events

    def _foreign_greeting(self, dialect: Dialect, translated: Translated, received_at: float | None,
                          events: list[ClientEvent]) -> None:
        self.info = ConnectionInfo(None, frozenset(), self.heartbeat_interval, None, dialect.name)
        events.append(self.info)
        if self.resync is ResyncState.AWAITING_GREETING:
            # a server without resync: what was sent while we were away is a gap, from our last
            # event to this reconnect (there may be no event for a long time to close it with)
            self.resync = ResyncState.LIVE
            self._check_numbering = False
            end = parse_timestamp(received_at) if received_at is not None else None
            events.append(GapDetected(self.last_event_time, end, "reconnected to a server without resync",
                                      self.last_seq, None))

    def _deliver(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        self._accept(message.event, message.seq, decoded.text, decoded, events)

    def _accept(self, event: str, seq: int | None, text: str, decoded: Decoded | None,
                events: list[ClientEvent]) -> None:
        """Deliver one event (or report it a duplicate): resync, restarts and gaps by its seq."""
        stream = event in STREAM_EVENTS
        if self.resync is ResyncState.AWAITING_GREETING and stream:
            # a reconnect to a server that never said it can resync: what we missed is a gap
            self.resync = ResyncState.LIVE
            self._start_gap("reconnected to a server without resync")
        if (seq is not None and self._check_numbering and stream
                and self.resync is not ResyncState.REPLAYING):
            # not during a resync replay: a server may replay from before since_seq (an overlap),
            # and those seqs are duplicates, not a restart. A server that names its stream
            # (stream_id) was already told apart at its greeting.
            self._check_numbering = False
            resume = self.last_seq
            if resume is not None and seq <= resume:
                # on a new connection the stream can only go on past what we had: a seq at or below it
                # means a new server process numbering from 1 again, whose events would all look seen
                self._start_gap(f"the server restarted its numbering (seq {seq} after {self.last_seq})")
                self._forget_seqs()
        if seq is not None:
            if seq <= self._seen_floor or seq in self._seen:
                events.append(Duplicate(decoded or text, event=event, seq=seq))
                return
            self._remember(seq)
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
        delivered = Delivered(decoded or text, self.resync is ResyncState.REPLAYING, event=event, seq=seq)
        if self._open_gap is not None and stream:
            start, reason, since = self._open_gap
            self._open_gap = None
            events.append(GapDetected(start, _event_time(delivered), reason, since, seq))
        self._newest = delivered  # its event time is read only when a gap needs it
        events.append(delivered)

    @property
    def last_event_time(self) -> Any:
        """Event time (aware datetime) of the newest delivered event: read from its frame only
        when asked (a gap's start), never on the receiving thread's every frame."""
        newest, self._newest = self._newest, None
        if newest is not None:
            when = _event_time(newest)
            if when is not None and (self._last_event_time is None or when > self._last_event_time):
                self._last_event_time = when
        return self._last_event_time

    @last_event_time.setter
    def last_event_time(self, value: Any) -> None:
        self._newest = None
        self._last_event_time = value

    @property
    def has_data_to_send(self) -> bool:
        """Whether ``data_to_send`` has anything (the I/O layer wakes its writer only then)."""
        return bool(self._outgoing)

    def _forget_seqs(self) -> None:
        """A new server process numbers from 1 again: what we saw says nothing of its seqs."""
        self._seen.clear()
        self._seen_order.clear()
        self._seen_floor = -1
        self._unfinished_resync = None
        self.last_seq = None

    def _remember(self, seq: int) -> None:
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > _SEEN_WINDOW:
            old = self._seen_order.popleft()
            self._seen.discard(old)
            self._seen_floor = max(self._seen_floor, old)

    def _start_gap(self, reason: str) -> None:
        if self._open_gap is None:
            self._open_gap = (self.last_event_time, reason, self.last_seq)

    def _on_connected(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        data = message.data
        caps = data.get("capabilities")
        capabilities = frozenset(c for c in caps if isinstance(c, str)) if isinstance(caps, list) else frozenset()
        interval = data.get("heartbeat_interval")
        if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
            self.heartbeat_interval = float(interval)
        else:
            interval = None
        stream_id = data.get("stream_id") if isinstance(data.get("stream_id"), str) else None
        self.info = ConnectionInfo(
            data.get("client_id") if isinstance(data.get("client_id"), str) else None,
            capabilities,
            float(interval) if interval is not None else None,
            data.get("server_time"),
            self.dialect.name if self.dialect is not None else (
                data.get("protocol") if isinstance(data.get("protocol"), str) else None),
            stream_id,
        )
        events.append(self.info)
        restarted = stream_id is not None and self._stream_id is not None and stream_id != self._stream_id
        if stream_id is not None:
            self._stream_id = stream_id
            # the stream is named: a restart is known for certain here, never guessed from seqs
            self._check_numbering = False
        if restarted and self.resync is ResyncState.AWAITING_GREETING:
            self.resync = ResyncState.LIVE
            self._start_gap(f"the server restarted its numbering (a new stream {stream_id})")
            self._forget_seqs()
            return
        if self.resync is ResyncState.AWAITING_GREETING:
            self.resync = ResyncState.LIVE
            if self._skip_resync is not None:
                self._unfinished_resync = None
                self._start_gap(self._skip_resync)
                self._skip_resync = None
            elif "resync" in capabilities and self.last_seq is not None:
                since = self.last_seq if self._unfinished_resync is None else min(self._unfinished_resync, self.last_seq)
                self._resync_requested_from = since
                self.resync = ResyncState.REPLAYING
                self._outgoing.append(encode("resync", {"since_seq": since}))
            else:
                self._start_gap("reconnected to a server without resync")

    def _on_ping(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        if self.heartbeat_interval is None:
            self.heartbeat_interval = self.default_heartbeat
        if self.info is not None and "pong" in self.info.capabilities:
            self._outgoing.append(encode("pong", {"timestamp": format_timestamp(self._clock.time())}))

    def _on_authenticated(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        client_id = message.data.get("client_id")
        events.append(Authenticated(client_id if isinstance(client_id, str) else None))

    def _on_error(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        code = message.data.get("code")
        code = code if isinstance(code, str) else None
        text = message.data.get("message")
        text = text if isinstance(text, str) else ""
        if code == "auth_failed":
            self.auth_failed = True
            events.append(AuthFailed(text or "the server refused the token"))
            return
        if message.seq is not None or code == "processing_error":
            self._deliver(decoded, message, events)  # part of the stream
            return
        events.append(ServerNotice("error", code, text, decoded))

    def _on_connection_error(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        code = message.data.get("code")
        text = message.data.get("message")
        events.append(
            ServerNotice("connection_error", code if isinstance(code, str) else None,
                         text if isinstance(text, str) else "", decoded)
        )

    def _on_resync_complete(self, decoded: Decoded, message: Message, events: list[ClientEvent]) -> None:
        data = message.data
        complete = data.get("complete") is not False
        from_seq = data.get("from_seq") if isinstance(data.get("from_seq"), int) else None
        to_seq = data.get("to_seq") if isinstance(data.get("to_seq"), int) else None
        replayed = data.get("replayed")
        if not isinstance(replayed, int):
            replayed = 0
        since = self._resync_requested_from
        self._resync_requested_from = None
        self.resync = ResyncState.LIVE
        self._unfinished_resync = None
        if not complete:
            # the buffer no longer held the start of the range: the events between what we had
            # and the first replayed one are lost; the gap closes at the next delivered event
            gap = GapDetected(self.last_event_time, None, "resync incomplete: the server's buffer had moved on", since, from_seq)
            events.append(gap)
        events.append(ResyncFinished(from_seq, to_seq, replayed, complete))


_CLIENT_HANDLERS: dict[str, Callable[[ClientSession, Decoded, Message, list[Any]], None]] = {
    "connected": ClientSession._on_connected,
    "ping": ClientSession._on_ping,
    "authenticated": ClientSession._on_authenticated,
    "error": ClientSession._on_error,
    "connection_error": ClientSession._on_connection_error,
    "resync_complete": ClientSession._on_resync_complete,
}


# ----------------------------------------------------------------------------------------------
# the envelope of a well-formed frame, read without decoding it
_ENVELOPE_HEAD = re.compile(r'\{"event":"([a-z_]+)","data":\{')
_FAST_EVENTS = frozenset(TYPE_OF_EVENT)  # events of the stream with no session meaning of their own
_SEQ_TAIL = '},"seq":'


def _envelope(frame: str) -> tuple[str, int | None] | None:
    """``(event, seq)`` of a frame written as the reference server writes them
    (``{"event":"name","data":{...},"seq":N}``, compact), for the stream's own events; None for
    anything else (the session then decodes it whole: connection events, odd frames)."""
    head = _ENVELOPE_HEAD.match(frame)
    if head is None:
        return None
    event = head.group(1)
    if event not in _FAST_EVENTS:
        return None
    at = frame.rfind(_SEQ_TAIL)
    if at > 0:
        number = frame[at + 8 : -1]
        if frame[-1] == "}" and number.isdigit() and number.isascii() and len(number) < 19:
            return event, int(number)
        return None
    return (event, None) if frame.endswith("}}") and '"seq"' not in frame else None


def _event_time(frame: _Frame) -> Any:
    message = frame.decoded.message
    return parse_timestamp(message.data.get("timestamp")) if message is not None else None


# ----------------------------------------------------------------------------------------------
# what the server session asks its I/O layer to do
@dataclass(frozen=True, slots=True)
class AuthRejected:
    """A wrong token: the error reply is queued; close with ``CloseRequest`` that follows."""


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    """The connection's subscriptions changed (the server may regroup it by signature)."""


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """Replay buffered events with seq > ``since_seq`` that match, then call ``resync_complete``."""

    since_seq: int


@dataclass(frozen=True, slots=True)
class DagRunRequest:
    """Legacy subscribe_dag_run: send the run's dag_run_status and dag_run_progress now, or
    ``session.error("not_found", ...)`` when the run is unknown."""

    run_id: str


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: int
    reason: str = ""


ServerRequest = AuthRejected | SubscriptionChanged | ResyncRequest | DagRunRequest | CloseRequest


@dataclass
class ServerSession:
    """The server's side of one connection: auth, subscriptions, heartbeat, error replies.

    Frames of the shared stream are not queued here (the server encodes each event once per group of
    connections with the same ``subscriptions.signature()``); ``wants`` says whether this connection
    gets an event.
    """

    client_id: str
    token_check: Callable[[str], bool]
    heartbeat: float = DEFAULT_HEARTBEAT
    auth_timeout: float = 10.0
    capabilities: tuple[str, ...] = SERVER_CAPABILITIES
    #: a Clock (a function of monotonic seconds is still taken): heartbeat and auth timeout run on
    #: its monotonic(), the times the session writes (server_time, timestamps) on its time()
    clock: Clock | Callable[[], float] = field(default_factory=WallClock)
    #: (older form) a function of the epoch seconds to write, overriding clock.time()
    wall_clock: Callable[[], float] | None = None
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    #: the stream's identity, sent in ``connected`` (an extension: a restart is then told for certain)
    stream_id: str | None = None
    authenticated: bool = False
    closed: bool = False
    _outgoing: list[str] = field(default_factory=list)
    _opened_at: float = 0.0
    _next_ping: float = 0.0

    def __post_init__(self) -> None:
        self._time = as_clock(self.clock)

    def _now(self) -> float:
        return self._time.monotonic()

    def _wall(self) -> float:
        return self.wall_clock() if self.wall_clock is not None else self._time.time()

    def opened(self) -> None:
        """The socket is open: queue ``connected``."""
        now = self._now()
        self._opened_at = now
        self._next_ping = now + self.heartbeat
        self._outgoing.append(
            encode(
                "connected",
                {
                    "client_id": self.client_id,
                    "server_time": format_timestamp(self._wall()),
                    "protocol": PROTOCOL_NAME,
                    "capabilities": list(self.capabilities),
                    "heartbeat_interval": self.heartbeat,
                    **({"stream_id": self.stream_id} if self.stream_id is not None else {}),
                },
            )
        )

    def data_to_send(self) -> list[str]:
        out, self._outgoing = self._outgoing, []
        return out

    def wants(self, event: str, data: Mapping[str, Any]) -> bool:
        return self.authenticated and not self.closed and self.subscriptions.matches(event, data)

    def error(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        """Queue an error reply (connection-scoped, no seq)."""
        data: dict[str, Any] = {"code": code, "message": message, "timestamp": format_timestamp(self._wall())}
        if details:
            data["details"] = dict(details)
        self._outgoing.append(encode("error", data))

    def send(self, event: str, data: Mapping[str, Any], seq: int | None = None) -> None:
        """Queue any message for this connection only (e.g. the subscribe_dag_run snapshot)."""
        self._outgoing.append(encode(event, dict(data), seq))

    def resync_complete(self, from_seq: int, to_seq: int, replayed: int, complete: bool) -> None:
        self._outgoing.append(
            encode("resync_complete", {"from_seq": from_seq, "to_seq": to_seq, "replayed": replayed, "complete": complete})
        )

    def shutdown(self) -> CloseRequest:
        """Server going away: queue connection_error server_shutdown; close with 1001."""
        self._outgoing.append(
            encode("connection_error", {"code": "server_shutdown", "message": "the server is shutting down",
                                        "timestamp": format_timestamp(self._wall())})
        )
        self.closed = True
        return CloseRequest(CLOSE_GOING_AWAY, "server shutdown")

    def tick(self) -> list[ServerRequest]:
        """Call at least at ``next_deadline()``: pings, and the auth timeout."""
        if self.closed:
            return []
        now = self._now()
        if not self.authenticated and now - self._opened_at >= self.auth_timeout:
            self.error("auth_timeout", f"no auth within {self.auth_timeout:g} s")
            self.closed = True
            return [CloseRequest(CLOSE_AUTH_TIMEOUT, "auth timeout")]
        if now >= self._next_ping:
            self._next_ping = now + self.heartbeat
            self._outgoing.append(encode("ping", {"timestamp": format_timestamp(self._wall())}))
        return []

    def next_deadline(self) -> float:
        if not self.authenticated:
            return min(self._next_ping, self._opened_at + self.auth_timeout)
        return self._next_ping

    def receive(self, frame: str | bytes) -> list[ServerRequest]:
        """Feed one client frame; error replies are queued, requests for the I/O layer returned."""
        if self.closed:
            return []
        size = len(frame.encode("utf-8") if isinstance(frame, str) else frame)
        if size > MAX_FRAME_BYTES:
            self.closed = True
            return [CloseRequest(CLOSE_TOO_BIG, "frame over 1 MiB")]
        decoded = decode(frame, sender="client", check=False)
        message = decoded.message
        if message is None or message.event not in CLIENT_EVENTS:
            why = decoded.describe() or "unknown message"
            self.error("invalid_message", why[:200])
            return []
        if not self.authenticated:
            if message.event != "auth":
                self.error("not_authenticated", f"send auth before {message.event}")
                return []
            return self._auth(message)
        handler = _SERVER_HANDLERS[message.event]
        return handler(self, message)

    def _auth(self, message: Message) -> list[ServerRequest]:
        token = message.data.get("token")
        if isinstance(token, str) and self.token_check(token):
            self.authenticated = True
            self._outgoing.append(
                encode("authenticated", {"client_id": self.client_id, "timestamp": format_timestamp(self._wall())})
            )
            return []
        self.error("auth_failed", "invalid token")
        self.closed = True
        return [AuthRejected(), CloseRequest(CLOSE_AUTH_FAILED, "auth failed")]

    def _on_auth(self, message: Message) -> list[ServerRequest]:
        return []  # already authenticated: a second auth is harmless

    def _types_of(self, message: Message) -> list[str] | None:
        types = message.data.get("types")
        if isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            self.error("invalid_message", f"{message.event}: 'types' must be a list of strings")
            return None
        return types

    def _on_subscribe(self, message: Message) -> list[ServerRequest]:
        types = self._types_of(message)
        if types is None:
            return []
        filters, problems = Filters.parse(message.data.get("filters"))
        if problems:
            self.error("invalid_subscription", "; ".join(problems), {"filters": message.data.get("filters")})
        unknown = self.subscriptions.subscribe(types, filters)
        if unknown:
            self.error("invalid_subscription", f"unknown subscription types {unknown}", {"types": unknown})
        return [SubscriptionChanged()]

    def _on_unsubscribe(self, message: Message) -> list[ServerRequest]:
        types = self._types_of(message)
        if types is None:
            return []
        unknown = self.subscriptions.unsubscribe(types)
        if unknown:
            self.error("invalid_subscription", f"unknown subscription types {unknown}", {"types": unknown})
        return [SubscriptionChanged()]

    def _on_subscribe_dag_run(self, message: Message) -> list[ServerRequest]:
        run_id = message.data.get("run_id")
        if not isinstance(run_id, str) or not run_id:
            self.error("invalid_message", "subscribe_dag_run needs a run_id string")
            return []
        return [DagRunRequest(run_id)]

    def _on_pong(self, message: Message) -> list[ServerRequest]:
        return []

    def _on_resync(self, message: Message) -> list[ServerRequest]:
        since = message.data.get("since_seq")
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            self.error("invalid_message", "resync needs since_seq, a non-negative integer")
            return []
        return [ResyncRequest(since)]


_SERVER_HANDLERS: dict[str, Callable[[ServerSession, Message], list[ServerRequest]]] = {
    "auth": ServerSession._on_auth,
    "subscribe": ServerSession._on_subscribe,
    "unsubscribe": ServerSession._on_unsubscribe,
    "subscribe_dag_run": ServerSession._on_subscribe_dag_run,
    "pong": ServerSession._on_pong,
    "resync": ServerSession._on_resync,
}


def constant_time_equal(expected: str) -> Callable[[str], bool]:
    """A token check that compares in constant time."""
    expected_bytes = expected.encode("utf-8")

    def check(token: str) -> bool:
        return hmac.compare_digest(token.encode("utf-8"), expected_bytes)

    return check


__all__ += ["constant_time_equal"]
