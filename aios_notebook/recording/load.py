"""Loading a recording into an EventStore: exactly the tables the live client built.

What the live client does with each frame (``client/connection.py``): the protocol session reads
it; a ``Duplicate`` (a resync replay overlapping the live stream) is dropped, every other frame
goes to ``store.ingest_frame`` (malformed ones too: the store describes them), and a
``GapDetected`` adds a gap row after the frame that revealed it. Loading does the same with the
same ``ClientSession``, the recorded receive times standing in for the clock.

Most recordings are one connection: one ``connected`` frame first, seqs rising, no resync. There
the session has nothing to do but deliver, so the frames go to the store in large batches
(``EventStore.ingest_frames``, the store's own parser) after a vectorised check of each batch.
When a batch shows a reconnect, a resync or a seq out of order, the load starts again with the
session reading every frame (at most the work done so far is repeated).

Not in a recording, so not in a loaded store: the rows the client writes about the connection
itself (reconnect attempts, connection errors, an auth failure), which come from the socket, not
from frames; and reconnects to a server that sends no ``connected`` frame, which frames alone
cannot reveal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..protocol.codec import parse_timestamp
from ..protocol.session import ClientSession, Duplicate, GapDetected
from .reader import FrameBatch, OnError, RecordingReader

__all__ = ["load_into", "load_store"]

_EVENT = r'^\s*\{\s*"event"\s*:\s*"(?P<event>[A-Za-z0-9_]+)"'
_SEQ_LAST = r'"seq"\s*:\s*(?P<seq>[0-9]{1,18})\s*\}\s*$'  # where the protocol's encoder puts it
_SESSION_EVENTS = ("connected", "resync_complete")
_MENTION = '"(connected|resync_complete)"'
_CHUNK = 65_536  # frames per store batch on the exact path
_TS = pa.timestamp("ns", tz="UTC")


class _NeedsSession(Exception):
    """A batch the session must read frame by frame (reconnect, resync, seq out of order)."""


def load_store(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
               on_error: OnError = "raise", *, factory: Callable[[], Any] | None = None) -> Any:
    """A new store holding a recording (what ``EventStore.load`` returns).

    Args:
        source: a recording, a glob of rotated parts or days, or a list of them.
        on_error: ``"raise"``: ``CorruptLog`` at the first damaged line; ``"skip"``: load around
            damage, one ``AIOSWarning`` per damaged file.
        factory: makes the empty store (``EventStore`` by default).
    """
    if factory is None:
        from ..store import EventStore

        factory = EventStore
    reader = RecordingReader(source, on_error, quiet=True)
    store = factory()
    try:
        try:
            _load_fast(store, reader)
        except _NeedsSession:
            store.close()
            reader = RecordingReader(source, on_error, quiet=True)
            store = factory()
            _load_exact(store, reader)
        store.flush()
    except BaseException:
        store.close()
        raise
    reader.warn_problems()
    return store


def load_into(store: Any, source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
              on_error: OnError = "raise") -> Any:
    """Add a recording to an existing store, frame by frame through the session; returns it."""
    reader = RecordingReader(source, on_error, quiet=True)
    _load_exact(store, reader)
    store.flush()
    reader.warn_problems()
    return store


# ----------------------------------------------------------------------------------------------
def _receive_ns(batch: FrameBatch, reader: RecordingReader) -> np.ndarray:
    """The batch's receive times as int64 ns (the reader hands them out in one ISO form)."""
    try:
        return pa.array(batch.received_at, pa.string()).cast(_TS).cast(pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # a well-shaped but impossible time (month 13): find it, report it, keep the frame in place
    times = np.empty(len(batch), np.int64)
    last = 0
    for index, text in enumerate(batch.received_at):
        moment = parse_timestamp(text)
        if moment is None:
            reader._problem(batch.path, 0, f"unreadable receive time {text!r} (near line {batch.first_line + index})")
            times[index] = last
        else:
            last = times[index] = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
    return times


def _text_array(frames: list[str | bytes]) -> pa.Array:
    try:
        return pa.array(frames, pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):  # binary frames: scanned as text, stored as sent
        return pa.array([f.decode("utf-8", "replace") if isinstance(f, bytes) else f for f in frames], pa.string())


def _top_level_seq(frame: str) -> int | None:
    try:
        obj = json.loads(frame)
    except ValueError:
        return None
    seq = obj.get("seq") if isinstance(obj, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _top_level_event(frame: str) -> str | None:
    try:
        obj = json.loads(frame)
    except ValueError:
        return None
    event = obj.get("event") if isinstance(obj, dict) else None
    return event if isinstance(event, str) else None


def _group(matches: pa.StructArray, name: str) -> pa.Array:
    """A regex group per row, null where the row did not match (the struct's children do not say)."""
    return pc.if_else(matches.is_valid(), matches.field(name), pa.scalar(None, pa.string()))


class _Check:
    """What the session would do with a recording, checked a batch at a time, vectorised."""

    def __init__(self) -> None:
        self.last_seq = -1
        self.frames = 0

    def start_recording(self) -> None:
        self.last_seq = -1
        self.frames = 0

    def batch(self, frames: list[str | bytes]) -> None:
        """Raise _NeedsSession unless the session would only deliver these frames."""
        texts = _text_array(frames)
        events = _group(pc.extract_regex(texts, _EVENT), "event")
        session = pc.is_in(events, pa.array(_SESSION_EVENTS)).fill_null(False)
        # a session event written with its keys in another order still counts
        odd = pc.and_(pc.match_substring_regex(texts, _MENTION), pc.is_null(events))
        for index in np.flatnonzero(odd.to_numpy(zero_copy_only=False)):
            if _top_level_event(texts[int(index)].as_py()) in _SESSION_EVENTS:
                raise _NeedsSession
        positions = np.flatnonzero(session.to_numpy(zero_copy_only=False))
        if len(positions):
            # only the connection's own `connected`, as the recording's very first frame
            if len(positions) > 1 or self.frames + int(positions[0]) != 0:
                raise _NeedsSession
            if events[int(positions[0])].as_py() != "connected":
                raise _NeedsSession
        seqs = _group(pc.extract_regex(texts, _SEQ_LAST), "seq").cast(pa.int64()).fill_null(-1).to_numpy().copy()
        elsewhere = pc.and_(pc.match_substring(texts, '"seq"'), pc.equal(seqs, -1)).to_numpy(zero_copy_only=False)
        for index in np.flatnonzero(elsewhere):
            seq = _top_level_seq(texts[int(index)].as_py())
            seqs[index] = -1 if seq is None else seq
        present = seqs[seqs >= 0]
        if len(present):
            if present[0] <= self.last_seq or (len(present) > 1 and (np.diff(present) <= 0).any()):
                raise _NeedsSession  # a duplicate, or a replay: the session decides
            self.last_seq = int(present[-1])
        self.frames += len(frames)


def _load_fast(store: Any, reader: RecordingReader) -> None:
    check = _Check()
    for batch in reader.batches():
        if batch.starts_recording:
            check.start_recording()
        check.batch(batch.frames)
        store.ingest_frames(batch.frames, _receive_ns(batch, reader))


def _is_connected(frame: str | bytes) -> bool:
    if isinstance(frame, bytes) or '"connected"' not in frame:
        return False
    return _top_level_event(frame) == "connected"


def _load_exact(store: Any, reader: RecordingReader) -> None:
    session: ClientSession | None = None
    first = True
    pending: list[str | bytes] = []
    times: list[int] = []

    def flush() -> None:
        if pending:
            store.ingest_frames(pending, np.array(times, np.int64))
            pending.clear()
            times.clear()

    for batch in reader.batches():
        if batch.starts_recording or session is None:
            flush()
            session = ClientSession()  # a new recording: a new client
            session.connection_opened("")
            first = True
        for frame, moment in zip(batch.frames, _receive_ns(batch, reader), strict=True):
            if not first and _is_connected(frame):
                session.connection_opened("")  # the socket the recorder saw reopen
            first = False
            events = session.receive(frame)
            session.data_to_send()  # what the client would answer (auth, pong, resync): not needed
            if any(isinstance(event, Duplicate) for event in events):
                continue
            pending.append(frame)
            times.append(int(moment))
            gaps = [event for event in events if isinstance(event, GapDetected)]
            if gaps:
                flush()  # the client ingests the frame first, then writes the gap row
                for gap in gaps:
                    store.add_gap(gap.start, gap.end, gap.reason)
            elif len(pending) >= _CHUNK:
                flush()
    flush()
