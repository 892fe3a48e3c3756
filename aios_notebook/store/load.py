"""Loading a recording into an EventStore: exactly the tables the live client built.

What the live client does with each frame (``client/connection.py``): the protocol session reads
it; a ``Duplicate`` (a resync replay overlapping the live stream) is dropped, every other frame
goes to ``store.ingest_frame`` (malformed ones too: the store describes them), and a
``GapDetected`` adds a gap row after the frame that revealed it. Loading does the same with the
same ``ClientSession``, the recorded receive times standing in for the clock.

Most recordings are one connection: one ``connected`` frame first, seqs rising, no resync. There
the session has nothing to do but deliver, so the frames go to the store in large batches, on three
threads (read, parse, apply: Arrow's reading and parsing release the GIL), and before each batch is
applied the event names and seqs the store parsed are checked (``_Check.parsed``). When a batch
shows a reconnect, a resync or a seq out of order, the load starts again with the session reading
every frame (at most the work done so far is repeated).

Not in a recording, so not in a loaded store: the rows the client writes about the connection
itself (reconnect attempts, connection errors, an auth failure), which come from the socket, not
from frames; and reconnects to a server that sends no ``connected`` frame, which frames alone
cannot reveal.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from queue import Empty, Full, Queue
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..arrow_pool import BULK_POOL
from ..protocol.codec import parse_timestamp
from ..protocol.dialects import AUTO, DIALECTS, Dialect, Translated, detect_dialect, get_dialect
from ..protocol.models import SUBSCRIPTION_TYPES
from ..protocol.session import ClientSession, Duplicate, GapDetected, Translation
from ..recording.reader import FrameBatch, OnError, RecordingReader
from . import bulk

if TYPE_CHECKING:  # store.py imports this module: the name only, for the checker
    from .store import EventStore

_Store = TypeVar("_Store", bound="EventStore")

__all__ = ["GREETING_WITHIN", "FrameTranslator", "foreign_dialect", "load_into", "load_store"]

_SESSION_EVENTS = ("connected", "resync_complete")
_CHUNK = 65_536  # frames per store batch on the exact path
_TS = pa.timestamp("ns", tz="UTC")
_SESSION_ARRAY = pa.array(_SESSION_EVENTS, pa.string())


class _NeedsSession(Exception):
    """A batch the session must read frame by frame (reconnect, resync, seq out of order)."""


def load_store(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
               on_error: OnError = "raise", *, factory: Callable[[], _Store]) -> _Store:
    """A new store holding a recording (what ``EventStore.load`` returns).

    Args:
        source: a recording, a glob of rotated parts or days, or a list of them.
        on_error: ``"raise"``: ``CorruptLog`` at the first damaged line; ``"skip"``: load around
            damage, one ``AIOSWarning`` per damaged file.
        factory: makes the empty store (``EventStore.load`` passes itself with its options).
    """
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


def load_into(store: _Store, source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
              on_error: OnError = "raise") -> _Store:
    """Add a recording to an existing store, frame by frame through the session; returns it."""
    reader = RecordingReader(source, on_error, quiet=True)
    _load_exact(store, reader)
    store.flush()
    reader.warn_problems()
    return store


# ----------------------------------------------------------------------------------------------
def _receive_ns(batch: FrameBatch, reader: RecordingReader) -> np.ndarray:
    """The batch's receive times as int64 ns (the reader hands them out in one ISO form)."""
    texts = batch.time_array if batch.time_array is not None else pa.array(batch.received_at, pa.string())
    try:
        return texts.cast(_TS).cast(pa.int64()).to_numpy()
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


def _top_level(frame: str) -> dict[str, Any]:
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _seq_of(frame: str) -> int | None:
    """The frame's top-level seq, as the session reads it (None when it has none)."""
    at = frame.rfind('"seq"')
    if at < 0:
        return None
    # where the protocol's encoders put it: ..."seq":N} at the very end
    tail = frame[at + 5 :].lstrip()
    if tail.startswith(":"):
        rest = tail[1:].strip()
        if rest.endswith("}"):
            number = rest[:-1].rstrip()
            if number.isascii() and number.isdigit():
                return int(number)
    seq = _top_level(frame).get("seq")  # anywhere else: read the frame properly
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


class _Check:
    """Whether the session would do anything but deliver a recording's frames, a batch at a time."""

    def __init__(self) -> None:
        self.last_seq = -1
        self.frames = 0

    def start_recording(self) -> None:
        self.last_seq = -1
        self.frames = 0

    def batch(self, frames: list[str | bytes]) -> None:
        """Raise _NeedsSession for a reconnect, a resync, or a seq that does not rise."""
        last = self.last_seq
        for index, frame in enumerate(frames):
            if isinstance(frame, bytes):  # the session reads binary frames that hold UTF-8 JSON
                frame = frame.decode("utf-8", "replace")
            if '"connected"' in frame or '"resync_complete"' in frame:
                event = _top_level(frame).get("event")
                # a session event other than the connection's own `connected` as the very first frame
                if event in _SESSION_EVENTS and (event != "connected" or self.frames + index != 0):
                    raise _NeedsSession
            # inline the common case (``..."seq":123}``): this loop sees every frame of the file
            at = frame.rfind('"seq":')
            if at >= 0 and frame.endswith("}") and (number := frame[at + 6 : -1]).isdigit() and number.isascii():
                seq: int | None = int(number)
            else:
                seq = _seq_of(frame) if '"seq"' in frame else None
            if seq is not None:
                if seq <= last:
                    raise _NeedsSession  # a duplicate or a replay: the session decides
                last = seq
        self.last_seq = last
        self.frames += len(frames)

    def parsed(self, names: Any, seqs: np.ndarray) -> None:
        """``batch`` for frames the store has parsed (``bulk.ingest_frames``' check): the
        same decisions from the event names and seqs the store read, before it applies them."""
        if not isinstance(names, pa.Array):
            names = pa.array(names, pa.string())
        session = pc.fill_null(pc.is_in(names, _SESSION_ARRAY), False).to_numpy(zero_copy_only=False)
        for index in np.flatnonzero(session).tolist():
            if names[index].as_py() != "connected" or self.frames + index != 0:
                raise _NeedsSession
        present = seqs[seqs >= 0]
        if present.size:
            if present[0] <= self.last_seq or (present.size > 1 and bool((np.diff(present) <= 0).any())):
                raise _NeedsSession  # a duplicate or a replay: the session decides
            self.last_seq = int(present[-1])
        self.frames += len(seqs)


def _chunks(reader: RecordingReader) -> Iterator[tuple[bool, Any, np.ndarray]]:
    """``(starts_recording, frames, receive ns)`` in the store's batch size: a reader's columnar
    batches (a few thousand frames each) are joined up to ``_CHUNK`` frames, as the store's
    batched parsing costs milliseconds per call whatever the batch's size; batches read line by
    line (Python lists) go as they are."""
    waiting: list[tuple[list[pa.Array], np.ndarray]] = []
    size = 0
    fresh = False

    def joined() -> tuple[bool, Any, np.ndarray]:
        pieces = [piece for chunks, _ in waiting for piece in chunks]  # as Arrow's reader made them
        # one copy: the frames of a chunk go on to be the raw table's text, a bulk buffer
        frames = pieces[0] if len(pieces) == 1 else pa.concat_arrays(pieces, memory_pool=BULK_POOL)
        return fresh, frames, np.concatenate([t for _, t in waiting])

    for batch in reader.batches():
        if batch.starts_recording and _foreign(reader, batch) is not None:
            raise _NeedsSession  # another dialect: each frame is translated by the session
        if waiting and (batch.starts_recording or batch.frame_chunks is None):
            yield joined()  # the frames waiting belong to the recording before
            waiting, size = [], 0
        times = _receive_ns(batch, reader)
        if batch.frame_chunks is None:
            yield batch.starts_recording, batch.frames, times
            continue
        if not waiting:
            fresh = batch.starts_recording
        waiting.append((batch.frame_chunks, times))
        size += len(batch)
        if size >= _CHUNK:
            yield joined()
            waiting, size = [], 0
    if waiting:
        yield joined()


def _ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, produced on another thread up to ``depth`` ahead (in order, errors included).

    Reading and Arrow's parsing release the GIL: with the store applying one batch while the
    next is read, loading uses the second core. Closing this generator stops the producer."""
    queue: Queue[tuple[str, Any]] = Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put(("item", item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(("end", None))
        except BaseException as exc:  # handed to the consumer, in order
            queue.put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # an earlier stage on its own thread stops now, not when collected
                close()

    thread = threading.Thread(target=produce, name="aios-load-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # let a producer blocked on a full queue see the stop
            with contextlib.suppress(Empty):
                queue.get(timeout=0.05)
        thread.join()


def _parsed(store: EventStore, chunks: Iterator[tuple[bool, Any, np.ndarray]]) -> Iterator[tuple[bool, Any, Any]]:
    """The columnar chunks parsed by the store (``(fresh, None, Parsed)``); lists as they are."""
    for fresh, frames, times in chunks:
        if isinstance(frames, list):
            yield fresh, frames, times
        else:
            yield fresh, None, bulk.parse_frames(store, frames, times)


def _load_fast(store: EventStore, reader: RecordingReader) -> None:
    check = _Check()
    # three stages on three threads: read, parse, apply (Arrow's reading and parsing release the GIL)
    for fresh, frames, item in _ahead(_parsed(store, _ahead(_chunks(reader)))):
        if fresh:
            check.start_recording()
        if frames is not None:
            check.batch(frames)
            bulk.ingest_frames(store, frames, item)
        else:
            bulk.ingest_parsed(store, item, check=check.parsed)


def _recorded_dialect(reader: RecordingReader, batch: FrameBatch) -> Dialect | str:
    """The dialect the recording's header names (``"auto"`` when none, or one this process does
    not know: then its greeting says, as it did live)."""
    header = reader.header_of(batch.path)
    name = header.extra.get("dialect") if header is not None else None
    if not isinstance(name, str) or name == AUTO or name not in DIALECTS:
        return AUTO
    return get_dialect(name)


def _foreign(reader: RecordingReader, batch: FrameBatch) -> Dialect | None:
    """The foreign dialect a recording starting with ``batch`` was made in, or None for the
    published protocol (the fast path's)."""
    dialect = _recorded_dialect(reader, batch)
    if dialect == AUTO and len(batch):
        first = batch.frames[0] if batch.frame_chunks is None else next(c for c in batch.frame_chunks if len(c))[0].as_py()
        dialect = detect_dialect(first) or AUTO
    return dialect if isinstance(dialect, Dialect) and not dialect.native else None


def _greets(frame: str | bytes, session: ClientSession) -> bool:
    """Whether ``frame`` is the greeting of a new connection (the socket the recorder saw reopen)."""
    dialect = session.dialect
    if dialect is None or isinstance(frame, bytes) or (dialect.greeting or "") not in frame:
        return False
    return dialect.greets(_top_level(frame))


class FrameTranslator:
    """Frames as received, in order, -> what live ingestion handed the store (the client's own
    ``ClientSession``, the receive times standing in for its clock): a foreign dialect's frames
    with their translation, duplicates of a resync replay left out, the gaps the session found.

    Args:
        dialect: the dialect the frames were received in (``"auto"``: the greeting says).
        types: what the client subscribed to (a server that ignores subscriptions sends more,
            and the session filters it as the client did).
    """

    def __init__(self, dialect: Dialect | str = AUTO, types: Iterable[str] = SUBSCRIPTION_TYPES) -> None:
        self.session = ClientSession(dialect=dialect)
        self.session.subscribe(list(types))
        self.session.connection_opened(None)
        self._first = True

    def receive(self, frame: str | bytes, moment: int) -> tuple[str | bytes | Translated | None, list[GapDetected]]:
        """One frame received at ``moment`` (ns): what the store takes of it (None: a duplicate),
        and the gaps it revealed (the client adds them after the frame)."""
        session = self.session
        if not self._first and _greets(frame, session):
            session.connection_opened(None)  # the socket the client saw reopen
        self._first = False
        events = session.receive(frame, moment / 1e9)
        session.data_to_send()  # what the client would answer (auth, pong, resync): not needed
        gaps = [event for event in events if isinstance(event, GapDetected)]
        if any(isinstance(event, Duplicate) for event in events):
            return None, gaps
        # a foreign dialect's frame goes with its translation, as live
        translated = events[0].translated if events and isinstance(events[0], Translation) else None
        return (frame if translated is None else translated), gaps

    def batch(self, frames: Iterable[str | bytes], moments: Iterable[int]) -> tuple[list[str | bytes | Translated], np.ndarray]:
        """:meth:`receive` over frames that reveal no gap worth a row (an archive's, which keeps
        its gaps as rows of its own): what the store takes, and when each was received."""
        items: list[str | bytes | Translated] = []
        kept: list[int] = []
        for frame, moment in zip(frames, moments, strict=True):
            item, _ = self.receive(frame, int(moment))
            if item is not None:
                items.append(item)
                kept.append(int(moment))
        return items, np.array(kept, np.int64)


#: the first frames of a stream among which its greeting is looked for
GREETING_WITHIN = 16


def foreign_dialect(frames: Iterable[str | bytes | None]) -> Dialect | None:
    """The foreign dialect whose greeting is among the first :data:`GREETING_WITHIN` frames
    (None: the published protocol's greeting, or none)."""
    for frame in itertools.islice(frames, GREETING_WITHIN):
        dialect = detect_dialect(frame) if isinstance(frame, str) else None
        if dialect is not None:
            return None if dialect.native else dialect
    return None


def _load_exact(store: EventStore, reader: RecordingReader) -> None:
    translator: FrameTranslator | None = None
    pending: list[str | bytes | Translated] = []
    times: list[int] = []

    def flush() -> None:
        if pending:
            bulk.ingest_frames(store, pending, np.array(times, np.int64))
            pending.clear()
            times.clear()

    for batch in reader.batches():
        if batch.starts_recording or translator is None:
            flush()
            # a new recording: a new client, in the dialect it was made in, subscribed as it was
            header = reader.header_of(batch.path)
            translator = FrameTranslator(_recorded_dialect(reader, batch),
                                         header.types if header is not None and header.types is not None
                                         else SUBSCRIPTION_TYPES)
        for frame, moment in zip(batch.frames, _receive_ns(batch, reader), strict=True):
            item, gaps = translator.receive(frame, int(moment))
            if item is None:
                continue
            pending.append(item)
            times.append(int(moment))
            if gaps:
                flush()  # the client ingests the frame first, then writes the gap row
                for gap in gaps:
                    store.add_gap(gap.start, gap.end, gap.reason)
            elif len(pending) >= _CHUNK:
                flush()
    flush()
