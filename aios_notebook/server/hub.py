"""The shared stream: global ``seq``, the bounded replay buffer, and fan-out to the connections.

Fan-out is the server's hot path, so it does as little per client as it can:

- each event is encoded once, JSON and WebSocket framing included (a server's frames are not
  masked, so the bytes on the wire do not depend on who receives them);
- connections are grouped by ``Subscriptions.signature()``: a group's filters are checked once
  per event, then the frame is appended to every member's send queue (a plain ``deque``);
- a routing table (event name -> groups that may want it) is rebuilt only when someone joins,
  leaves or changes subscriptions, so an event meets only the groups subscribed to its type;
- nothing awaits per client per event: after a batch each connection with frames waiting is woken
  once, and its writer task writes what has gathered in one ``transport.write`` (see
  ``connection.py``).
"""

from __future__ import annotations

import itertools
import json
import struct
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from ..protocol.models import SUBSCRIPTION_TYPES
from ..protocol.subscriptions import Subscriptions

__all__ = ["Hub", "Member", "encode_frame", "text_frame"]

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one instance: json.dumps(**kw) rebuilds it per call
_DAG_EVENTS = SUBSCRIPTION_TYPES["dags"]


def encode_frame(event: str, data: dict[str, Any], seq: int | None = None) -> bytes:
    """The JSON text of one message, as UTF-8 bytes."""
    message: dict[str, Any] = {"event": event, "data": data}
    if seq is not None:
        message["seq"] = seq
    return _ENCODER.encode(message).encode()


_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame (RFC 6455 section 5.2: FIN, opcode 1) of ``payload``."""
    size = len(payload)
    if size < 126:
        return _SHORT.pack(0x81, size) + payload
    if size < 65536:
        return _MEDIUM.pack(0x81, 126, size) + payload
    return _LONG.pack(0x81, 127, size) + payload


class Member(Protocol):
    """What the hub needs of a connection."""

    queue: deque[bytes]

    # read-only: the hub never replaces it, and Connection exposes its session's as a property
    @property
    def subscriptions(self) -> Subscriptions: ...

    def flush(self) -> None:
        """Frames were queued: wake the writer (or cut the connection off if it is too far behind)."""


#: (seq, event, data.run_id, data.agent_id, wire frame): what resync needs to filter and resend
ReplayEntry = tuple[int, str, Any, Any, bytes]


class Hub:
    """Sequences the events of the simulation and routes them to authenticated connections.

    Args:
        replay_size: how many recent events ``replay`` can resend (older ones are forgotten).
    """

    def __init__(self, replay_size: int = 100_000) -> None:
        self.seq = 0
        #: the identity of this numbering of the stream (``stream_id`` in ``connected``): a new hub
        #: numbers from 1 again, and a reconnecting client must know its old seqs mean nothing here
        self.stream_id = uuid.uuid4().hex[:16]
        self.replay_buffer: deque[ReplayEntry] = deque(maxlen=max(1, replay_size))
        self.members: set[Member] = set()
        self.delivered = 0  # frames queued for clients so far (the benchmark reads it)
        self._routes: dict[str, list[tuple[Subscriptions | None, list[deque[bytes]]]]] = {}
        self._dirty = False

    # -- membership -----------------------------------------------------------------------------
    def join(self, member: Member) -> None:
        """An authenticated connection starts receiving the stream."""
        self.members.add(member)
        self._dirty = True

    def leave(self, member: Member) -> None:
        self.members.discard(member)
        self._dirty = True

    def regroup(self) -> None:
        """Someone's subscriptions changed: rebuild the routes before the next event."""
        self._dirty = True

    def _rebuild(self) -> None:
        groups: dict[Any, tuple[Subscriptions, list[deque[bytes]]]] = {}
        for member in self.members:
            signature = member.subscriptions.signature()
            if signature not in groups:
                groups[signature] = (member.subscriptions.copy(), [])
            groups[signature][1].append(member.queue)
        routes: dict[str, list[tuple[Subscriptions | None, list[deque[bytes]]]]] = {}
        for subscriptions, queues in groups.values():
            wanted: dict[str, Subscriptions | None] = {"error": None}  # processing_error: everyone
            for kind, filters in subscriptions.types.items():
                for event in SUBSCRIPTION_TYPES[kind]:
                    wanted[event] = None if filters.empty else subscriptions
            if subscriptions.dag_runs:
                for event in _DAG_EVENTS:
                    if wanted.get(event, subscriptions) is not None:  # unless already all of them
                        wanted[event] = subscriptions
            for event, matcher in wanted.items():
                routes.setdefault(event, []).append((matcher, queues))
        self._routes = routes
        self._dirty = False

    # -- the stream ------------------------------------------------------------------------------
    def publish(self, events: Iterable[tuple[float, str, dict[str, Any]]]) -> int:
        """Give each event the next seq, buffer it and queue it for the connections that want it.

        Returns the number of events published.
        """
        if self._dirty:
            self._rebuild()
        routes = self._routes
        remember = self.replay_buffer.append
        encode = _ENCODER.encode
        seq = start = self.seq
        delivered = 0
        for _, event, data in events:
            seq += 1
            frame = text_frame(encode({"event": event, "data": data, "seq": seq}).encode())
            remember((seq, event, data.get("run_id"), data.get("agent_id"), frame))
            for matcher, queues in routes.get(event, ()):
                if matcher is None or matcher.matches(event, data):
                    for queue in queues:
                        queue.append(frame)
                    delivered += len(queues)
        self.seq = seq
        self.delivered += delivered
        if delivered:
            for member in list(self.members):
                if member.queue:
                    member.flush()
        return seq - start

    def replay(self, member: Member, since_seq: int) -> tuple[int, int, int, bool]:
        """Queue the buffered events after ``since_seq`` that ``member`` subscribes to, in order.

        Returns ``(from_seq, to_seq, replayed, complete)`` for ``resync_complete``: ``complete``
        is False when part of the range had already left the buffer.
        """
        buffer = self.replay_buffer
        first = buffer[0][0] if buffer else self.seq + 1
        complete = since_seq + 1 >= first or since_seq >= self.seq
        start = max(0, since_seq + 1 - first)
        subscriptions = member.subscriptions
        queue = member.queue
        replayed = 0
        for _, event, run_id, agent_id, frame in itertools.islice(buffer, start, None):
            if subscriptions.matches(event, {"run_id": run_id, "agent_id": agent_id}):
                queue.append(frame)
                replayed += 1
        return max(since_seq + 1, first), self.seq, replayed, complete
