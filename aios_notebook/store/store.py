"""EventStore: every event of the stream, queryable as pandas DataFrames at wire speed.

The ingest path is two list appends per frame: frames wait, unparsed, until a batch is due
(``batch_size`` frames, a read, a ``flush()`` or the notifier's tick), and are then parsed
together by the engines of :mod:`.parse` into typed column buffers (:mod:`.tables`).
Every table read parses what is waiting first, so a read always sees every frame ingested
before it, and builds the DataFrame only when the table changed since the last read.

Threads: the client ingests from its I/O thread, notebooks read from the main thread. Frame
appends take no lock (each list append is atomic); parsing, applying and building snapshots
happen under one lock, and every read returns a DataFrame the caller owns.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from ..arrow_pool import BULK_POOL
from ..clock import Clock
from ..exceptions import ConfigurationError
from ..protocol.codec import Decoded, Message, encode, format_timestamp
from ..protocol.dialects import Translated
from .archive import write_store
from .columns import NAT, CategoryColumn, release_freed_memory
from .load import load_store
from .notify import ChangeBatch, Notifier, Subscription, Worker
from .parquet import frame_batch, read_tables, write_tables
from .parse import SMALL_BATCH, Parsed, arrow_texts, owned_columns, parse_frames
from .retention import FINISHED_STATUSES, Limit, parse_retention
from .schema import TABLES, timestamp_ns
from .snapshots import SNAPSHOT_KINDS, insight_rows, snapshot_rows
from .tables import AppendTable, Batch, LatestTable, Table, merge_batches

__all__ = ["ERROR_KINDS", "EventStore", "store_from_frames"]

log = logging.getLogger("aios_notebook.store")

#: the kinds of rows in the errors table (docs/design.md)
ERROR_KINDS = (
    "server_error", "processing_error", "connection_error", "malformed", "field_type", "gap",
    "reconnect", "auth_failed", "snapshot", "rule_error",
)


def _json_value(value: Any) -> Any:
    """JSON for the values a message dict may hold beyond JSON's own (times, sets)."""
    if isinstance(value, (datetime, pd.Timestamp)):
        return format_timestamp(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _ns(value: Any, what: str) -> int | None:
    """A time given by a caller (datetime, ISO text, epoch seconds, pandas Timestamp) -> ns."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp):
        if value is pd.NaT:
            return None
        return int(value.tz_localize("UTC").value if value.tzinfo is None else value.value)
    ns = timestamp_ns(value)
    if ns is None:
        raise ConfigurationError(f"{what}: cannot read {value!r} as a time")
    return ns


class EventStore:
    """Events -> live pandas DataFrames (see ``docs/design.md``, section store/).

    Args:
        retention: per-table limits merged over the defaults, e.g.
            ``{"job_events": "7d", "raw": 1_000_000}`` (see :mod:`.retention`).
        clock: where ``received_at`` and ages of raw/errors rows come from, and what the
            background thread's ``max_delay``, ``notify_interval`` and idle time are measured
            on (wall clock if None).
        notify_interval: seconds between change deliveries to subscribers (at least); while
            anyone is subscribed, waiting frames are parsed at least this often.
        batch_size: parse waiting frames once this many have arrived.
        max_delay: parse waiting frames once they have waited this long (seconds).
        background: parse on a background thread (started with the first frame, ended when
            idle), so the thread that ingests only appends; False parses in ``ingest_frame``
            every ``batch_size`` frames and on reads.
        fast_path: parse well-formed frames of the frequent events in batches with Arrow
            (False decodes every frame one by one: the same tables, several times slower).
    """

    TABLE_NAMES = tuple(TABLES)
    #: frames waiting, in batches, past which ``ingest_frame`` parses them itself (the worker
    #: cannot keep up: this bounds the memory they hold, about 60 MB of text frames at 16).
    #: Not fewer: while the worker parses, Arrow releases the GIL and the receiving thread goes
    #: on; parsing in ``ingest_frame`` stops the receiving instead (at 4, ingest.py measured the
    #: store at 83,000 frames/s against 93,000 at 16, medians of five alternating runs).
    _INLINE_BATCHES = 16
    #: frames waiting that ``ingest_frame`` turns into one Arrow array at once (0: never). The
    #: frames are then still in the CPU's cache, and the worker, whose every Python step holds
    #: the GIL the receiving thread needs, finds large batches ready for Arrow.
    _SEAL = 1024

    def __init__(self, retention: Mapping[str, Any] | None = None, clock: Clock | None = None, *,
                 notify_interval: float = 0.05, batch_size: int = 8192, max_delay: float = 0.1,
                 background: bool = True, fast_path: bool = True) -> None:
        if notify_interval <= 0 or max_delay <= 0:
            raise ConfigurationError(
                f"notify_interval and max_delay must be > 0 seconds, got {notify_interval}, {max_delay}"
            )
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be >= 1, got {batch_size}")
        self._limits: dict[str, Limit] = parse_retention(retention)
        # tables limited to 0 rows keep nothing, so nothing is applied to them: converting to an
        # archive builds no latest-state table (40% of a load's applying)
        self._unkept = frozenset(name for name, limit in self._limits.items() if limit.rows == 0)
        self._clock = clock
        self._time_ns: Callable[[], int] = (
            time.time_ns if clock is None else (lambda: int(clock.time() * 1e9))
        )
        self._tables: dict[str, AppendTable | LatestTable] = {
            name: (LatestTable(spec) if spec.latest else AppendTable(spec)) for name, spec in TABLES.items()
        }
        for name, limit in self._limits.items():  # buffers sized to the row limits
            table = self._tables[name]
            if isinstance(table, AppendTable):
                table.limit_rows(limit.rows)
        self._lock = threading.RLock()
        self._waiting: list[tuple[Any, int]] = []  # (frame, received_at ns) not parsed yet
        # older frames not parsed yet, _SEAL at a time: (Arrow strings, or the list when a frame
        # is binary or not encodable, receive times); _sealing guards it and the moves into it
        self._sealed: list[tuple[pa.Array | list[Any], np.ndarray]] = []
        self._sealed_count = 0
        self._sealing = threading.Lock()
        self._fast_path = fast_path
        self._batch_size = batch_size
        self._version = 0
        self._now: int | None = None
        self._dropped: Counter = Counter()
        self._received: Counter = Counter()
        self._frames = 0
        self._fast = 0
        self._gaps: tuple[int, pd.DataFrame] | None = None
        # table -> (event time, rows) at its last check of finished entities (see _age_finished)
        self._finished_checked: dict[str, tuple[int | None, int]] = {}
        self._notifier = Notifier(self._report_callback)
        self._worker: Worker | None = None
        if background:
            self._worker = Worker(
                self._pending_count, self._tick, self._notifier,
                batch_size=batch_size, max_delay=max_delay, notify_interval=notify_interval, clock=clock,
            )
            self._notifier.on_subscribe = self._worker.ensure

    # -- ingestion ------------------------------------------------------------------------
    def ingest_frame(self, text: str | bytes | Translated, received_at: Any = None, *,
                     received_ns: int | None = None) -> None:
        """Take one frame as received (the client calls this for every frame; never raises).

        Args:
            text: the frame's text (bytes for a binary frame), or a foreign dialect's frame with
                its translation (``raw`` keeps its text, the typed tables get its events).
            received_at: when it arrived (datetime, epoch seconds, ISO text); now if None.
            received_ns: when it arrived, in ns since the epoch (the client's form: no conversion).
        """
        if received_ns is not None:
            moment = received_ns
        elif received_at is None:
            moment = self._time_ns()
        else:
            try:
                moment = _ns(received_at, "received_at") or self._time_ns()
            except ConfigurationError:
                moment = self._time_ns()
        self._waiting.append((text, moment))  # one append: atomic, whatever the threads
        waiting = len(self._waiting)
        if waiting >= self._SEAL > 0:
            self._seal()
            waiting = 0
        waiting += self._sealed_count
        worker = self._worker
        if worker is not None:
            if not worker.running:
                worker.ensure()
            elif waiting >= self._batch_size:
                worker.wake()
                if waiting < self._INLINE_BATCHES * self._batch_size:
                    return
            else:
                return
        if waiting >= self._batch_size:  # no worker, or it cannot keep up: parse here
            with self._lock:
                self._flush_locked()
            self._release_parsed()

    def ingest(self, messages: Iterable[Any]) -> int:
        """Ingest messages and parse them at once; returns how many were taken.

        Each item may be a text frame, bytes (a binary frame), a ``Decoded``, a ``Message`` or
        a ``{"event": ..., "data": ..., "seq": ...}`` dict.
        """
        count = 0
        for item in messages:
            self.ingest_frame(self._as_frame(item))
            count += 1
        self.flush()
        return count

    # -- the bulk entry points' mechanics (called through :mod:`.bulk`, not by analysts) -----
    def _parse_frames(self, texts: list[str | bytes] | pa.Array, received_ns: Any) -> Parsed:
        """``bulk.parse_frames``: parse, touching nothing of the store."""
        times = np.asarray(received_ns, np.int64)
        if len(times) != len(texts):
            raise ConfigurationError(f"{len(texts)} frames but {len(times)} receive times")
        frames = texts if isinstance(texts, pa.Array) else list(texts)
        return parse_frames(frames, times, fast=self._fast_path)

    def _ingest_parsed(self, parsed: Parsed, *, check: Callable[[Any, np.ndarray], Any] | None = None) -> int:
        """``bulk.ingest_parsed``: apply what ``_parse_frames`` made (after the frames already
        waiting); returns how many frames it held."""
        count = len(parsed.raw) if parsed.raw is not None else 0
        if not count:
            return 0
        with self._lock:
            self._flush_locked()
            if check is not None:
                check(parsed.names, cast(np.ndarray, parsed.seqs))  # set with raw by parse_frames
            self._apply(parsed)
        self._notifier.deliver()
        return count

    @staticmethod
    def _as_frame(item: Any) -> str | bytes | Translated:
        if isinstance(item, Translated):
            return item
        if isinstance(item, (str, bytes, bytearray)):
            return bytes(item) if isinstance(item, bytearray) else item
        if isinstance(item, Decoded):
            return item.text
        if isinstance(item, Message):
            return encode(item.event, item.data, item.seq)
        if isinstance(item, Mapping):
            try:
                return json.dumps(dict(item), separators=(",", ":"), default=_json_value)
            except (TypeError, ValueError, RecursionError) as exc:
                return f"<unserialisable message: {exc}>"
        return f"<not a message: {type(item).__name__}>"

    def flush(self) -> ChangeBatch | None:
        """Parse every waiting frame and deliver pending changes to subscribers now.

        Returns:
            What this flush changed (all tables), or None when nothing was waiting.
        """
        with self._lock:
            changes = self._flush_locked()
            version = self._version
        self._release_parsed()
        self._notifier.deliver()
        return ChangeBatch(version, changes) if changes else None

    def _tick(self) -> None:
        with self._lock:
            self._flush_locked()
        self._release_parsed()

    def _pending_count(self) -> int:
        """Frames not parsed yet."""
        return self._sealed_count + len(self._waiting)

    def _unseal(self) -> tuple[list[Any], np.ndarray]:
        # slicing and deleting a prefix are single atomic list operations: frames appended
        # meanwhile stay for the next batch (the lock keeps two takers from taking the same)
        count = len(self._waiting)
        items = self._waiting[:count]
        del self._waiting[:count]
        return list(map(_FRAME, items)), np.fromiter(map(_MOMENT, items), np.int64, count)

    def _seal(self) -> None:
        with self._sealing:
            texts, times = self._unseal()
            if texts:
                self._sealed.append((_chunk(texts), times))
                self._sealed_count += len(texts)

    def _take(self) -> tuple[list[Any] | pa.Array, np.ndarray]:
        """Every frame waiting, oldest first, with its receive time: one Arrow array when all
        are text and enough for Arrow's parsing, else a list."""
        with self._sealing:
            texts, times = self._unseal()
            sealed, self._sealed, self._sealed_count = self._sealed, [], 0
        if not sealed:
            return texts, times
        if texts:
            sealed.append((_chunk(texts), times))
        all_times = np.concatenate([moments for _, moments in sealed])
        if len(all_times) >= SMALL_BATCH and all(isinstance(chunk, pa.Array) for chunk, _ in sealed):
            return pa.concat_arrays([chunk for chunk, _ in sealed], memory_pool=BULK_POOL), all_times
        frames: list[Any] = []
        for chunk, _ in sealed:
            frames += chunk.to_pylist() if isinstance(chunk, pa.Array) else chunk
        return frames, all_times

    def _flush_locked(self) -> dict[str, int]:
        texts, times = self._take()
        if not len(texts):
            return {}
        count = len(texts)
        changes = self._apply(parse_frames(texts, times, fast=self._fast_path))
        _THREAD.parsed = getattr(_THREAD, "parsed", 0) + count
        return changes  # the batch's frames and parse buffers are garbage from here on

    def _release_parsed(self) -> None:
        """Once this thread parsed ``_RELEASE_FRAMES`` frames and it is not behind (less than a
        batch waits), give the memory their parsing freed back (see release_freed_memory).

        A batch's parse buffers are freed into the C heap and Arrow's pool, which keep them for
        reuse: trimming a live client every 10 s (benchmarks/soak.py, speed 3600) returned 40 to
        80 MB each time. Called without the store's lock, so that reads never wait for it (a
        return takes 2 to 16 ms there).
        """
        if getattr(_THREAD, "parsed", 0) >= _RELEASE_FRAMES and self._pending_count() < self._batch_size:
            _THREAD.parsed = 0
            release_freed_memory()

    def _apply(self, parsed: Parsed, snapshot: bool = False) -> dict[str, int]:
        changes: dict[str, int] = {}
        for name, batches in parsed.batches.items():
            if name in self._unkept:
                self._dropped[name] += sum(len(b) for b in batches)
                continue
            table = self._tables[name]
            batch = merge_batches(table.spec, batches)
            if batch is None:
                continue
            if isinstance(table, LatestTable):
                rows = table.update(batch, snapshot=snapshot)
            else:
                rows = table.append(batch)
            if rows:
                changes[name] = changes.get(name, 0) + rows
        if parsed.raw is not None and len(parsed.raw):
            if "raw" in self._unkept:
                self._dropped["raw"] += len(parsed.raw)
            else:
                raw = cast(AppendTable, self._tables["raw"])  # no key, so never a LatestTable
                changes["raw"] = raw.append(parsed.raw)
            self._frames += len(parsed.raw)
        self._fast += parsed.fast
        self._received.update(parsed.events)
        if parsed.now is not None and (self._now is None or parsed.now > self._now):
            self._now = parsed.now
        self._retain()
        if changes:
            self._version += 1
            self._notifier.record(changes, self._version)
        return changes

    def _retain(self) -> None:
        now = self._now
        for name, limit in self._limits.items():
            table = self._tables[name]
            dropped = 0
            if limit.age_ns is not None:
                reference = self._time_ns() if table.spec.time == "received_at" else now
                if reference is not None:
                    cutoff = reference - limit.age_ns
                    if isinstance(table, AppendTable):
                        dropped += table.drop_front(table.rows_older_than(cutoff))
                    else:
                        times = table.time_values()
                        old = (times < cutoff) & (times != NAT)
                        if old.any():
                            dropped += table.keep_rows(~old)
            if limit.rows is not None and table.rows_at_most() > limit.rows and len(table) > limit.rows:
                if isinstance(table, AppendTable):
                    dropped += table.drop_front(len(table) - limit.rows)
                else:  # keep the most recently updated entities
                    order = np.argsort(table.time_values(), kind="stable")
                    keep = np.zeros(len(table), bool)
                    keep[order[len(table) - limit.rows :]] = True
                    dropped += table.keep_rows(keep)
            if limit.finished and isinstance(table, LatestTable):
                dropped += self._age_finished(name, table, limit, now)
            if dropped:
                self._dropped[name] += dropped

    def _age_finished(self, name: str, table: LatestTable, limit: Limit, now: int | None) -> int:
        """Drop finished entities past the table's ``finished`` limit (see :mod:`.retention`):
        checked when event time has moved on by 1/64 of the age, or the table has grown by 1/16
        of the row limit, since the last check, so a trickle of batches scans rarely."""
        checked_at, checked_rows = self._finished_checked.get(name, (None, 0))
        age, most = limit.finished_age_ns, limit.finished_rows
        by_age = age is not None and now is not None and (checked_at is None or now - checked_at >= age // 64)

        def by_rows(rows: int) -> bool:
            return most is not None and rows > most and rows >= checked_rows + max(1, most // 16)

        # the bound first: counting the rows exactly applies the updates waiting
        if not (by_age or by_rows(table.rows_at_most())):
            return 0
        rows = len(table)
        if not (by_age or by_rows(rows)):
            return 0
        finished = table.finished(FINISHED_STATUSES)
        times = table.time_values()
        drop = np.zeros(rows, bool)
        if age is not None and now is not None:
            drop = finished & (times < now - age) & (times != NAT)
        if most is not None:
            left = np.flatnonzero(finished & ~drop)
            if len(left) > most:  # the least recently updated go (no time at all: first)
                oldest = np.argsort(times[left], kind="stable")[: len(left) - most]
                drop[left[oldest]] = True
        dropped = table.keep_rows(~drop) if drop.any() else 0
        self._finished_checked[name] = (now if age is not None and now is not None else checked_at, len(table))
        return dropped

    # -- rows that do not come from frames --------------------------------------------------
    def _append_rows(self, table: str, rows: list[dict[str, Any]], snapshot: bool = False) -> dict[str, int]:
        """Apply Python rows (checked already) to a table, under the lock."""
        if not rows:
            return {}
        spec = TABLES[table]
        names = {k for row in rows for k in row if k in spec.names or k == "seq"}
        columns = {name: [r.get(name) for r in rows] for name in names}
        items = list(enumerate(rows))
        parsed = Parsed(batches={table: [Batch(np.arange(len(rows)), columns, None, owned_columns(items, columns))]})
        return self._apply(parsed, snapshot=snapshot)

    def add_error(self, kind: str, message: str, *, code: str | None = None, start: Any = None,
                  end: Any = None, details: Mapping[str, Any] | None = None, seq: int | None = None,
                  event: str | None = None) -> None:
        """Add a row to the errors table (the client's own errors: gaps, reconnects, auth...).

        Raises:
            ConfigurationError: ``kind`` is not one of :data:`ERROR_KINDS`, or a time is unreadable.
        """
        if kind not in ERROR_KINDS:
            raise ConfigurationError(f"unknown error kind {kind!r} (kinds: {', '.join(ERROR_KINDS)})")
        row = {
            "received_at": self._time_ns(), "kind": kind, "code": code, "message": str(message),
            "event": event, "seq": seq, "start": _ns(start, "start"), "end": _ns(end, "end"),
            "details": dict(details) if details is not None else None,
        }
        with self._lock:
            self._flush_locked()  # keep the errors table in arrival order
            self._append_rows("errors", [row])

    def add_gap(self, start: Any, end: Any, reason: str) -> None:
        """Record a gap in the stream (an errors row of kind ``gap``; listed in ``gaps``)."""
        self.add_error("gap", reason, start=start, end=end)

    def add_insights(self, insights: Iterable[Any], source: str | None = None) -> int:
        """Add local insights (rules) to the insights table; returns how many were added.

        Args:
            insights: dicts or objects with the insight_generated fields, plus optional
                ``rule``, ``key``, ``fingerprint`` and ``evidence``.
            source: the ``source`` column, e.g. ``"rule:stuck_jobs"``; by default
                ``"rule:<insight.rule>"``.
        """
        with self._lock:
            self._flush_locked()
            rows, problems = insight_rows(insights, source, self._now or self._time_ns(),
                                          len(self._tables["insights"]))
            self._append_rows("insights", rows)
        for problem in problems:
            self.add_error("rule_error", problem, code="bad_insight")
        return len(rows)

    def merge_snapshot(self, kind: str, records: Iterable[Any], at: Any = None, source: str = "rest") -> int:
        """Merge a REST snapshot: rows marked ``snapshot=True`` that never overwrite a newer event.

        Args:
            kind: agents, dag_runs, dag_steps, metrics, insights or knowledge.
            records: the snapshot's records (dicts as the REST API answers them).
            at: when the snapshot was taken (now if None).
            source: where it came from (named in errors rows about bad records).

        Returns:
            The number of rows added or updated.
        """
        if kind not in SNAPSHOT_KINDS:
            raise ConfigurationError(f"unknown snapshot kind {kind!r} (kinds: {', '.join(SNAPSHOT_KINDS)})")
        at_ns = _ns(at, "at")
        with self._lock:
            self._flush_locked()
            at_ns = at_ns if at_ns is not None else (self._now or self._time_ns())
            rows_by_table, problems = snapshot_rows(kind, records, at_ns)
            if kind == "insights":  # REST lists insights the stream already delivered
                seen = set(self._tables["insights"].columns["insight_id"].dictionary.index)  # type: ignore[attr-defined]
                rows_by_table["insights"] = [r for r in rows_by_table.get("insights", []) if r["insight_id"] not in seen]
            total = 0
            for table, rows in rows_by_table.items():
                total += sum(self._append_rows(table, rows, snapshot=True).values())
        for problem in problems:
            self.add_error("snapshot", problem, code=source)
        return total

    # -- subscriptions ----------------------------------------------------------------------
    def subscribe(self, callback: Callable[[ChangeBatch], Any], tables: Iterable[str] | str | None = None) -> Subscription:
        """Call ``callback(ChangeBatch)`` with coalesced changes (at most once per interval).

        Args:
            callback: called from the notifier thread (or the thread calling ``flush()``).
            tables: the tables of interest (all if None).

        Returns:
            A handle; ``.close()`` stops the deliveries.
        """
        if not callable(callback):
            raise ConfigurationError(f"subscribe needs a callable, got {type(callback).__name__}")
        wanted = None
        if tables is not None:
            wanted = frozenset([tables] if isinstance(tables, str) else tables)
            unknown = wanted - set(TABLES)
            if unknown:
                raise ConfigurationError(f"subscribe: unknown tables {sorted(unknown)} (tables: {', '.join(TABLES)})")
        return self._notifier.add(callback, wanted)

    def _report_callback(self, subscription: Subscription, exc: BaseException) -> None:
        name = getattr(subscription.callback, "__qualname__", repr(subscription.callback))
        log.warning("store subscriber %s failed: %r", name, exc)
        # one errors row for the 1st, 10th, 100th... failure: a broken view cannot flood the table
        if subscription.failures in (1, 10, 100, 1000) or subscription.failures % 10000 == 0:
            self.add_error("rule_error", f"subscriber {name} raised {type(exc).__name__}: {exc}",
                           code="callback_failed", details={"callback": name, "failures": subscription.failures})

    def close(self) -> None:
        """Parse what waits and stop the background thread (it starts again with new frames)."""
        if self._worker is not None:
            self._worker.stop()
        self.flush()

    # -- reading ----------------------------------------------------------------------------
    def table(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a DataFrame the caller owns (every frame ingested so far included)."""
        if name not in self._tables:
            raise ConfigurationError(f"unknown table {name!r} (tables: {', '.join(TABLES)})")
        with self._lock:
            self._flush_locked()
            return self._tables[name].frame()

    jobs = property(lambda self: self.table("jobs"), doc="One row per job_id, latest state.")
    job_events = property(lambda self: self.table("job_events"), doc="Every processing_job_* event.")
    agents = property(lambda self: self.table("agents"), doc="One row per agent_id, latest state.")
    agent_events = property(lambda self: self.table("agent_events"), doc="Agent status updates, task completions and errors.")
    knowledge = property(lambda self: self.table("knowledge"), doc="One row per knowledge item_id.")
    insights = property(lambda self: self.table("insights"), doc="Server and local insights.")
    metrics = property(lambda self: self.table("metrics"), doc="The dashboard metrics time series.")
    dag_runs = property(lambda self: self.table("dag_runs"), doc="One row per DAG run_id, latest state.")
    dag_steps = property(lambda self: self.table("dag_steps"), doc="One row per (run_id, step_id), latest state.")
    dag_step_events = property(lambda self: self.table("dag_step_events"), doc="Every step_status event.")
    errors = property(lambda self: self.table("errors"), doc="Server errors and the client's own.")
    raw = property(lambda self: self.table("raw"), doc="Every frame received.")

    @property
    def version(self) -> int:
        """Increases with every change to any table."""
        with self._lock:
            self._flush_locked()
            return self._version

    @property
    def now(self) -> pd.Timestamp:
        """The latest event time seen (simulated time); the clock's time before any event."""
        with self._lock:
            self._flush_locked()
            moment = self._now
        if moment is None:
            moment = self._time_ns()
        return pd.Timestamp(moment, tz="UTC")

    @property
    def counts(self) -> dict[str, int]:
        """Rows held per table."""
        with self._lock:
            self._flush_locked()
            return {name: len(table) for name, table in self._tables.items()}

    @property
    def dropped(self) -> dict[str, int]:
        """Rows dropped by retention, per table (since the store was created)."""
        with self._lock:
            self._flush_locked()
            return {name: self._dropped.get(name, 0) for name in self._tables}

    @property
    def received(self) -> Counter:
        """Frames received per event name (None for frames without one), retention aside."""
        with self._lock:
            self._flush_locked()
            return Counter(self._received)

    @property
    def frames(self) -> int:
        """Frames ingested so far (``bulk.fast_frames`` of them took a batched path)."""
        with self._lock:
            self._flush_locked()
            return self._frames

    @property
    def _fast_frames(self) -> int:
        """``bulk.fast_frames``: frames parsed in groups."""
        with self._lock:
            self._flush_locked()
            return self._fast

    @property
    def gaps(self) -> pd.DataFrame:
        """The recorded gaps: columns start, end, reason."""
        with self._lock:
            self._flush_locked()
            errors = self._tables["errors"]
            if self._gaps is None or self._gaps[0] != errors.version:
                frame = errors.frame()
                gaps = frame.loc[frame["kind"] == "gap", ["start", "end", "message"]]
                gaps = gaps.rename(columns={"message": "reason"}).reset_index(drop=True)
                self._gaps = (errors.version, gaps)
            return self._gaps[1].copy(deep=False)

    @property
    def retention(self) -> dict[str, dict[str, Any]]:
        """The limits in force: table -> {"rows": N or None, "age": Timedelta or None}, plus
        "finished": {"rows", "age"} for jobs, dag_runs and dag_steps when finished ones age out."""
        def age(ns: int | None) -> pd.Timedelta | None:
            return None if ns is None else pd.Timedelta(ns, "ns")

        limits: dict[str, dict[str, Any]] = {}
        for name, limit in self._limits.items():
            limits[name] = {"rows": limit.rows, "age": age(limit.age_ns)}
            if limit.finished:
                limits[name]["finished"] = {"rows": limit.finished_rows, "age": age(limit.finished_age_ns)}
        return limits

    # -- files ----------------------------------------------------------------------------
    def to_parquet(self, folder: str | Path) -> list[Path]:
        """Write every table to ``folder/<table>.parquet`` (see :mod:`.parquet`)."""
        with self._lock:
            self._flush_locked()
            frames = {name: table.frame() for name, table in self._tables.items()}
            meta = {"now": self._now, "dropped": dict(self._dropped), "version": self._version,
                    # when finished entities were last aged out: a store loaded from these files
                    # checks when this one would have, so it goes on exactly as this one
                    "finished_checked": {name: list(checked) for name, checked in self._finished_checked.items()}}
        return write_tables(folder, frames, meta)

    def to_archive(self, path: str | Path, *, source: str | None = None) -> int:
        """Append what the store holds to the Parquet archive at ``path`` (made when missing;
        see :mod:`.archive`); returns the rows written. Read it with ``history.Archive``."""
        return write_store(self, path, source=source)

    @classmethod
    def from_parquet(cls, folder: str | Path, **options: Any) -> EventStore:
        """A store holding the tables written by :meth:`to_parquet`."""
        frames, meta = read_tables(folder)
        return store_from_frames(frames, meta, factory=lambda: cls(**options))

    @classmethod
    def load(cls, path_or_glob: str | Path | Iterable[str | Path], on_error: Literal["raise", "skip"] = "raise",
             **options: Any) -> EventStore:
        """A store built from a recording (``aios-notebook record``, ``client.record``).

        Exactly the tables live ingestion built from the same frames (see
        :mod:`aios_notebook.store.load`). ``path_or_glob``: a file, a glob of rotated parts
        or days, or a list. ``on_error="skip"`` loads what is readable around damaged lines
        (each problem is reported by one warning per file); ``"raise"`` raises ``CorruptLog``
        naming the file and line. ``options`` go to ``EventStore(...)``.
        """

        return load_store(path_or_glob, on_error, factory=lambda: cls(**options))

    def _load_frames(self, frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any]) -> None:
        with self._lock:
            for name, frame in frames.items():
                table = self._tables[name]
                if not len(frame):
                    continue
                _seed_categories(table, frame)
                batch = frame_batch(table.spec, frame)
                if isinstance(table, LatestTable):
                    table.update(batch, snapshot=False)
                    # keep the snapshot flags as written
                    snap = frame["snapshot"].fillna(False).to_numpy(bool)
                    rows = np.array([table.index[k] for k in _keys(table, frame)], np.int64)
                    table.columns["snapshot"].put(rows, (snap, None), np.arange(len(rows)))
                    if "update_count" in frame.columns:
                        counts = frame["update_count"].fillna(0).to_numpy(np.int64)
                        table.columns["update_count"].put(rows, (counts, None), np.arange(len(rows)))
                else:
                    table.append(batch)
            now = meta.get("now")
            self._now = int(now) if now is not None else self._now
            self._dropped.update(meta.get("dropped") or {})
            for name, (checked_at, rows) in (meta.get("finished_checked") or {}).items():
                if name in self._tables:
                    self._finished_checked[name] = (None if checked_at is None else int(checked_at), int(rows))
            self._version += 1

    def __repr__(self) -> str:
        with self._lock:
            waiting = self._pending_count()
            held = ", ".join(f"{name}={len(t)}" for name, t in self._tables.items() if len(t))
            now = "-" if self._now is None else pd.Timestamp(self._now, tz="UTC").isoformat()
        return f"<EventStore v{self._version} now={now} {held or 'empty'}{f' waiting={waiting}' if waiting else ''}>"


def store_from_frames(frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any] | None = None, *,
                      factory: Callable[[], EventStore] = EventStore) -> EventStore:
    """A new store (``factory()``) holding these tables as they are: ``to_parquet``'s files, an
    archive's window with its derived latest-state tables. ``meta`` may give the store's ``now``
    and its ``dropped`` counts; retention applies as usual."""
    store = factory()
    store._load_frames(frames, meta or {})
    return store


_FRAME, _MOMENT = itemgetter(0), itemgetter(1)
#: frames a thread parses between two returns of freed memory to the system, at most
_RELEASE_FRAMES = 65536
_THREAD = threading.local()  # per thread: frames it parsed since its last return


def _chunk(texts: list[Any]) -> pa.Array | list[Any]:
    """The frames as Arrow strings, or the list itself when one is binary or not encodable."""
    frames = arrow_texts(texts)
    return texts if frames is None else frames


def _seed_categories(table: Table, frame: pd.DataFrame) -> None:
    """Give the table's empty category columns the frame's categories, in their order: the
    store that wrote the frame had them so (values of rows since dropped included), and codes,
    categories and what follows from their order (groupby, value_counts) continue as there."""
    for name, column in table.columns.items():
        if isinstance(column, CategoryColumn) and not len(column.dictionary) and name in frame.columns:
            dtype = frame[name].dtype
            if isinstance(dtype, pd.CategoricalDtype) and len(dtype.categories):
                column.dictionary.codes(pa.array(dtype.categories.astype(object).tolist(), pa.string()))


def _keys(table: LatestTable, frame: pd.DataFrame) -> list[Any]:
    if len(table.spec.key) == 1:
        return frame[table.spec.key[0]].astype(object).tolist()
    return list(zip(*(frame[k].astype(object).tolist() for k in table.spec.key), strict=True))
