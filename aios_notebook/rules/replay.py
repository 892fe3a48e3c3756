"""The in-memory backtest (:func:`run_backtest`): history fed to a store on a simulated clock,
each rule evaluated exactly when it would have run live, through the very engine that runs live.
``backtest(rules, source)`` (:mod:`.backtest`) calls it, and so does each chunk of a Dask backtest
(:mod:`.chunks`) over its own window; see :mod:`.backtest` for how history is fed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pandas as pd

from ..exceptions import ConfigurationError
from ..protocol.codec import Decoded, Message, encode
from ..protocol.dialects import Dialect, Translated, dialect_of_events
from ..recording import RecordingReader
from ..server.replay_dialect import recording_dialect
from ..store import EventStore, bulk
from ..store.load import FrameTranslator, foreign_dialect
from ..store.schema import EVENT_ROUTES
from ..storelike import StoreLike
from .api import Rule
from .engine import RuleEngine
from .evaluation import as_ns
from .parts import Part
from .windows import EVENT_TABLES, Snapshot

__all__ = ["run_backtest"]

_TIMESTAMP = re.compile(r'"timestamp"\s*:\s*(?:"([^"]*)"|(-?\d+(?:\.\d+)?))')
_EVENT = re.compile(r'"event"\s*:\s*"([^"]*)"')


def _is_store(source: Any) -> TypeGuard[StoreLike]:
    # hasattr, not isinstance(source, StoreLike): a protocol's isinstance reads every property
    return hasattr(source, "ingest") and hasattr(source, "job_events") and hasattr(source, "gaps")


def _frame_of(item: Any) -> tuple[Any, Any]:
    """(time given with the item or None, frame for the store)."""
    if isinstance(item, tuple) and len(item) == 3 and isinstance(item[1], str):
        t, event, data = item
        return t, json.dumps({"event": event, "data": data}, separators=(",", ":"), default=str)
    if isinstance(item, (str, bytes, bytearray)):
        return None, bytes(item) if isinstance(item, bytearray) else item
    if isinstance(item, Mapping):
        if "frame" in item:  # a recording line {"t": ..., "frame": ...}
            return None, item["frame"]
        return None, json.dumps(dict(item), separators=(",", ":"), default=str)
    if isinstance(item, Message):
        return None, encode(item.event, item.data, item.seq)
    if isinstance(item, Decoded):
        return None, item.text
    # the store records what it cannot read as a malformed frame: a bad item never stops a load
    return None, f"<not a message: {type(item).__name__}>"


def _times(given: list[Any], frames: list[Any]) -> np.ndarray:
    """Event time (ns) of every frame: the time given with it, else its data.timestamp; a frame
    without either takes the time of the frame before it (so it keeps its place)."""
    count = len(frames)
    out = np.full(count, np.iinfo(np.int64).min, dtype=np.int64)
    texts: list[str | None] = [None] * count
    numbers: list[float | None] = [None] * count
    for i, (t, frame) in enumerate(zip(given, frames, strict=True)):
        if t is not None:
            if isinstance(t, (int, float)) and not isinstance(t, bool):
                numbers[i] = float(t)
            else:
                texts[i] = t if isinstance(t, str) else str(pd.Timestamp(t))
            continue
        if not isinstance(frame, str):  # binary, or a foreign frame without a time of its own
            continue
        match = _TIMESTAMP.search(frame)
        if match is not None:
            if match.group(1) is not None:
                texts[i] = match.group(1)
            else:
                numbers[i] = float(match.group(2))
    numeric = [i for i, v in enumerate(numbers) if v is not None]
    if numeric:
        out[numeric] = np.round(np.array([numbers[i] for i in numeric]) * 1e9).astype(np.int64)
    textual = [i for i, v in enumerate(texts) if v is not None]
    if textual:
        parsed = pd.to_datetime(pd.Series([texts[i] for i in textual]), utc=True, format="ISO8601", errors="coerce")
        out[textual] = parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)
    # carry the last known time forward, and the first known time back to the start
    known = out != np.iinfo(np.int64).min
    if not known.any():
        return np.zeros(count, dtype=np.int64)
    index = np.where(known, np.arange(count), 0)
    np.maximum.accumulate(index, out=index)
    filled = out[index]
    first = int(np.argmax(known))
    filled[:first] = out[first]
    return filled


def _frames(source: Any) -> tuple[list[Any], list[Any]]:
    """(the time given with each item or None, frames) of a source, in the source's order; an AIOS
    server's own dialect's frames with their translation, as the client's store took them."""
    if _is_store(source):
        raw = source.table("raw")
        frames = raw["text"].tolist()
        # raw keeps a foreign frame under the server's own event name (its greeting may be gone)
        return _translated([None] * len(frames), frames, dialect_of_events(raw["event"].dropna().unique()))
    if isinstance(source, (str, Path)):
        frames = [frame for batch in RecordingReader(source).batches() for frame in batch.frames]
        dialect = recording_dialect(source)
        return _translated([None] * len(frames), frames, None if dialect.native else dialect)
    if isinstance(source, (bytes, Mapping)) or not isinstance(source, Iterable):
        raise ConfigurationError(
            f"backtest source must be a recording path, an EventStore or an iterable of events, "
            f"not {type(source).__name__}"
        )
    given, frames = [], []
    for item in source:
        t, frame = _frame_of(item)
        given.append(t)
        frames.append(frame)
    return _translated(given, frames, None)


def _translated(given: list[Any], frames: list[Any], dialect: Dialect | None) -> tuple[list[Any], list[Any]]:
    """Frames of a foreign dialect (``dialect``, else the greeting among the first frames says)
    through the client's session: each with its translation and its event time, duplicates out.
    The published protocol's frames are returned as they are."""
    if dialect is None:
        dialect = foreign_dialect(frames)
    if dialect is None:
        return given, frames
    translator = FrameTranslator(dialect)
    times, items = [], []
    for t, frame in zip(given, frames, strict=True):
        item, _ = translator.receive(frame, 0)
        if item is None:
            continue
        when = item.when if isinstance(item, Translated) else None
        times.append(t if t is not None else when)
        items.append(item)
    return times, items


def _in_time_order(given: list[Any], frames: list[Any], wanted: frozenset[str] | None) -> tuple[np.ndarray, list[Any]]:
    """(event times, frames) of the frames whose event is ``wanted`` (all if None), sorted by
    time (stable: ties keep their order)."""
    if wanted is not None:
        keep = [i for i, frame in enumerate(frames) if _event_names(frame) & wanted]
        given, frames = [given[i] for i in keep], [frames[i] for i in keep]
    times = _times(given, frames)
    if len(times) > 1 and not bool((times[1:] >= times[:-1]).all()):
        order = np.argsort(times, kind="stable")
        times = times[order]
        frames = [frames[i] for i in order]
    return times, frames


def _feeds(tables: set[str]) -> frozenset[str] | None:
    """Event names whose frames fill ``tables`` (None: every frame may matter)."""
    if tables & {"raw", "errors", "insights"}:
        return None
    return frozenset(e for e, routes in EVENT_ROUTES.items() if any(r.table in tables for r in routes))


def _event_names(frame: Any) -> set[str]:
    """The published events a frame holds (a foreign dialect's: those it maps to)."""
    if isinstance(frame, Translated):
        return {message.event for message in frame.messages}
    match = None if isinstance(frame, bytes) else _EVENT.search(frame)
    return {match.group(1)} if match else set()


def _as_of_store(rules: list[Rule]) -> EventStore:
    """The store that rules over latest-state tables read, fed in time order up to each
    evaluation, with an age limit of their longest window on each such table (so every read
    stays small)."""
    tables = {t for r in rules for t in r.tables}
    longest: dict[str, int] = {}
    for r in rules:
        for table in r.tables:
            longest[table] = max(longest.get(table, 0), r.window_ns + 2 * r.every_ns)
    retention: dict[str, Any] = {t: f"{age / 1e9:.0f}s" for t, age in longest.items()
                                 if t not in ("insights", "errors", "raw")}
    if "raw" not in tables:
        retention["raw"] = 0
    return _store(retention)


def _store(retention: dict[str, Any] | None) -> EventStore:
    return EventStore(retention=retention, background=False)


def _ingest(store: EventStore, frames: list[Any], times: np.ndarray) -> None:
    """Feed frames in one batch; in a backtest a frame is received at its event time."""
    bulk.ingest_frames(store, frames, times)


def run_backtest(rule_list: list[Rule], source: Any, *, start: Any = None, end: Any = None, publish: bool = True,
                 part: Part | None = None) -> pd.DataFrame:
    """The in-memory backtest of :func:`backtest` (rules already collected). ``part``: this run
    is one chunk of a longer history (see :mod:`.chunks`): its span, where the warm-up ends,
    and the first times of the whole history."""
    slow = [r for r in rule_list if not set(r.tables) <= EVENT_TABLES]
    fast = [r for r in rule_list if r not in slow]
    # slow rules that read what the engine writes (insights, errors) must share its store
    shared = any(set(r.tables) & {"insights", "errors"} for r in slow)
    raw_limit = None if any("raw" in r.tables for r in rule_list) else {"raw": 0}

    # the store the engine publishes to and the fast rules read (every event table in full)
    given: list[Any] | None = None
    frames: list[Any] | None = None
    if slow or not (_is_store(source) or isinstance(source, (str, Path))):
        given, frames = _frames(source)
    # the engine's store when this backtest feeds it in time order (None: filled at once, or the source)
    own: EventStore | None = None
    store: StoreLike
    if shared or not fast:
        store = own = _store(raw_limit)  # filled in time order below, or read by no rule
        if _is_store(source):  # gaps are the client's own rows, not frames: carry them over
            for gap in source.gaps.itertuples(index=False):
                store.add_gap(gap.start, gap.end, gap.reason)
    elif _is_store(source):
        store = source
    elif isinstance(source, (str, Path)):
        store = EventStore.load(source, retention=raw_limit, background=False)
    else:
        store = _store(raw_limit)
        store.ingest(frames or [])  # in any order: fast rules' tables are sorted when windowed

    # the history slow rules read, in time order: every frame when they share the engine's
    # store, else only the frames that fill their tables, fed to a store of their own
    feed_times: np.ndarray = np.empty(0, np.int64)
    feed: list[Any] = []
    as_of = own  # slow rules always have one: a store of their own, or the engine's they share
    if slow and given is not None and frames is not None:
        wanted = None if shared else _feeds({t for r in slow for t in r.tables})
        feed_times, feed = _in_time_order(given, frames, wanted)
        as_of = own if shared else _as_of_store(slow)

    engine = RuleEngine(store, rule_list, enforce_timeouts=False, publish=publish)
    fast_tables = [t for r in fast for t in r.tables]
    snapshot = _snapshot(store, fast_tables, part) if fast and not shared else None
    firsts, lasts = ([int(feed_times[0])], [int(feed_times[-1])]) if len(feed_times) else ([], [])
    if snapshot is not None:
        first = snapshot.first_ns(fast_tables)
        if first is not None:
            firsts.append(first)
            lasts.append(as_ns(store.now) or first)
    events = len(frames) if frames is not None else int(getattr(store, "frames", 0))
    if part is not None:  # a chunk: its span is set by the whole history, not by its rows
        firsts, lasts = [part.begin], [part.finish]
    if not firsts:
        return _result(engine, rule_list, as_ns(start), as_ns(end), events)
    begin = min(firsts) if start is None else max(as_ns(start) or min(firsts), min(firsts))
    finish = max(lasts) if end is None else min(as_ns(end) or max(lasts), max(lasts))
    engine.schedule_from(pd.Timestamp(begin, unit="ns", tz="UTC"))
    checkpoint = None if part is None else part.checkpoint

    if slow:
        position = 0
        names = [r.name for r in slow]
        slow_tables = [t for r in slow for t in r.tables]
        assert as_of is not None
        for t in _due_times(slow, begin, finish):
            if checkpoint is not None and t >= checkpoint and part is not None and part.states is None:
                part.mark(engine, names, checkpoint)
            stop = int(feed_times.searchsorted(t, side="right"))
            if stop > position:
                _ingest(as_of, feed[position:stop], feed_times[position:stop])
                position = stop
            engine.run_due(pd.Timestamp(t, unit="ns", tz="UTC"), rules=names,
                           snapshot=None if shared else Snapshot(as_of, slow_tables))
        if part is not None and part.states is None:
            part.mark(engine, names, checkpoint or finish + 1)
        if shared:
            assert own is not None
            _ingest(own, feed[position:], feed_times[position:])
            snapshot = _snapshot(store, fast_tables, part)
    if fast and finish >= begin:
        assert snapshot is not None
        names = [r.name for r in fast]
        if part is not None:  # up to the end of the warm-up, then the chunk itself
            engine.run_due(pd.Timestamp(part.checkpoint - 1, unit="ns", tz="UTC"), rules=names, snapshot=snapshot)
            part.mark(engine, names, part.checkpoint)
        engine.run_due(pd.Timestamp(finish, unit="ns", tz="UTC"), rules=names, snapshot=snapshot)
    if part is not None:
        part.close(engine)
    return _result(engine, rule_list, begin, finish, events)


def _snapshot(store: StoreLike, tables: list[str], part: Part | None) -> Snapshot:
    if part is None:
        return Snapshot(store, tables)
    return _Anchored(store, tables, part.firsts)


class _Anchored(Snapshot):
    """A chunk's tables, whose first rows are those of the whole history (``full_window``
    then decides as it would over the whole history)."""

    def __init__(self, store: StoreLike, tables: Iterable[str], firsts: Mapping[str, int]) -> None:
        super().__init__(store, tables)
        self._firsts = firsts

    def first_ns(self, tables: Iterable[str]) -> int | None:
        known = [self._firsts[name] for name in tables if name in self._firsts]
        own = super().first_ns(tables)
        if own is not None:
            known.append(own)
        return min(known) if known else None


def _due_times(rules: list[Rule], begin: int, finish: int) -> np.ndarray:
    """Every instant at which one of ``rules`` falls due in [begin, finish], sorted."""
    parts = []
    for r in rules:
        first = -(-begin // r.every_ns) * r.every_ns
        if first <= finish:
            parts.append(np.arange(first, finish + 1, r.every_ns, dtype=np.int64))
    if not parts:
        return np.empty(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))


def _result(engine: RuleEngine, rules: list[Rule], begin: int | None, finish: int | None, events: int) -> pd.DataFrame:
    firings = engine.firings
    firings.attrs.update({
        "start": None if begin is None else pd.Timestamp(begin, unit="ns", tz="UTC"),
        "end": None if finish is None else pd.Timestamp(finish, unit="ns", tz="UTC"),
        "rules": {r.name: {"detects": list(r.detects), "every": r.every_ns / 1e9, "window": r.window_ns / 1e9}
                  for r in rules},
        "evaluations": engine.evaluations,
        "errors": engine.errors["message"].tolist(),
        "events": events,
    })
    return firings
