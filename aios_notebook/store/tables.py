"""The two shapes of table: append-only (events, errors, raw) and latest-state (one row per key).

Both take :class:`Batch` objects (columns of one ingest step, already typed) and are updated
with a few vectorised NumPy operations per column and batch, never per event. Both build their
DataFrame lazily and keep it until the table changes.

Small batches (a trickle of frames, flushed by a read every few milliseconds) would pay those
per-column calls for a handful of rows each: both tables keep such batches of Python lists
waiting and apply them together when the table is looked at (a read, ``len``, ``columns``,
retention) or enough rows wait, always with exactly the outcome of applying them one by one
(tests/test_store_small_flush.py compares them).

Latest-state rule: each table row remembers the order of the newest event applied to it (its
``seq``, and its time). An incoming event that is newer (by seq when both have one, else by
time) sets every column it carries, a null clearing the column (an idle agent has no current
task); an older one (a resync replay arriving late, or a REST snapshot taken before the last
event) only fills columns that are still empty. A column an event does not carry is left as is.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..arrow_pool import BULK_POOL
from .columns import (
    NAT,
    CategoryColumn,
    Column,
    _grow,
    make_column,
    normalize,
    release_freed_memory,
)
from .schema import TableSpec

__all__ = ["AppendTable", "Batch", "LatestTable", "Table", "merge_batches"]

_MAX = np.iinfo(np.int64).max


@dataclass
class Batch:
    """Rows for one table from one ingest step.

    Attributes:
        positions: arrival index of each row within the ingest step (rows are merged by it).
        columns: column -> Arrow array of the kind's type, or a Python list for ``obj`` columns.
            Latest-state tables also read ``seq`` and ``updated_at`` from here for the order.
        counted: per row, True when the event counts towards the table's counter column.
        owned: column -> per row, True when the row's event carries the column (its null
            then clears the column of a latest-state row); a column not named here is carried
            by every row.
    """

    positions: np.ndarray
    columns: dict[str, Any] = field(default_factory=dict)
    counted: np.ndarray | None = None
    owned: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.positions)


def merge_batches(spec: TableSpec, batches: list[Batch]) -> Batch | None:
    """One batch in arrival order out of several (events of different names, slow-path rows)."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    if all(type(part) is list for b in batches for part in b.columns.values()):
        return _merge_lists(spec, batches)
    positions = np.concatenate([b.positions for b in batches])
    order = np.argsort(positions, kind="stable")
    order_arrow = pa.array(order)
    names = {name for b in batches for name in b.columns}
    columns: dict[str, Any] = {}
    inverse: np.ndarray | None = None  # where each row of the concatenated parts goes
    for name in spec.names if spec.names else names:
        if name not in names:
            continue
        kind = spec.kind(name)
        raw_parts = [b.columns.get(name) for b in batches]
        if kind == "obj" or all(p is None or isinstance(p, list) for p in raw_parts):
            # scattered in place, in C: most parts of a column of objects are missing (None)
            if inverse is None:
                inverse = np.empty_like(order)
                inverse[order] = np.arange(len(order))
            merged = np.full(len(order), None, dtype=object)
            start = 0
            for b, part in zip(batches, raw_parts, strict=True):
                if part is not None:
                    values = normalize(kind, part, len(b)) if kind == "obj" else part
                    # fromiter, never np.array: a list of lists would become a 2-D array
                    merged[inverse[start : start + len(b)]] = np.fromiter(values, object, len(b))
                start += len(b)
            columns[name] = merged.tolist()
        else:
            parts = [normalize(kind, part, len(b)) for b, part in zip(batches, raw_parts, strict=True)]
            columns[name] = pa.concat_arrays(parts).take(order_arrow)
    counted = None
    if any(b.counted is not None for b in batches):
        counted = np.concatenate(
            [b.counted if b.counted is not None else np.zeros(len(b), bool) for b in batches]
        )[order]
    owned = {
        name: np.concatenate([b.owned.get(name, np.full(len(b), name in b.columns)) for b in batches])[order]
        for name in columns
        if any(name in b.owned or name not in b.columns for b in batches)
    }
    return Batch(positions[order], columns, counted, owned)


def _merge_lists(spec: TableSpec, batches: list[Batch]) -> Batch:
    """:func:`merge_batches` for batches of Python lists (small batches): the same batch, made
    with list operations, which cost less than NumPy and Arrow calls on a few dozen rows."""
    starts = [p for b in batches for p in b.positions.tolist()]
    order = sorted(range(len(starts)), key=starts.__getitem__)  # stable, as argsort(kind="stable")
    names = {name for b in batches for name in b.columns}
    columns: dict[str, Any] = {}
    carried: dict[str, list[bool]] = {}
    for name in spec.names:
        if name not in names:
            continue
        flat: list[Any] = []
        carries: list[bool] | None = None
        for b in batches:
            part = b.columns.get(name)
            flat += part if part is not None else [None] * len(b)
            own = b.owned.get(name)
            has = name in b.columns
            if carries is None and (own is not None or not has):  # the rows before all carry it
                carries = [True] * (len(flat) - len(b))
            if carries is not None:
                carries += own.tolist() if own is not None else [has] * len(b)
        columns[name] = [flat[i] for i in order]
        if carries is not None:
            carried[name] = carries
    order_array = np.array(order, np.int64)
    counted = None
    if any(b.counted is not None for b in batches):
        counted = np.concatenate(
            [b.counted if b.counted is not None else np.zeros(len(b), bool) for b in batches]
        )[order_array]
    owned = {name: np.array([carries[i] for i in order], bool) for name, carries in carried.items()}
    return Batch(np.array(sorted(starts), np.int64), columns, counted, owned)


class Table:
    """Common part: columns, version, the cached DataFrame."""

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self._columns: dict[str, Column] = {c.name: make_column(c.kind, spec.latest) for c in spec.columns}
        self.version = 0
        self._cache: tuple[int, pd.DataFrame] | None = None

    @property
    def columns(self) -> dict[str, Column]:
        """Column name -> buffer (every row applied)."""
        return self._columns

    def __len__(self) -> int:
        raise NotImplementedError

    def rows_at_most(self) -> int:
        """An upper bound of ``len(self)`` that applies nothing waiting (retention's checks run
        after every flush: settling there would undo the batching of small updates)."""
        return len(self)

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (built once per version; callers get a shallow copy)."""
        if self._cache is None or self._cache[0] != self.version:
            self._cache = (self.version, self._build())
        # a shallow copy: pandas' copy-on-write keeps the cached frame intact if the caller
        # writes (a pandas without it writes in place: a deep copy then)
        return self._cache[1].copy(deep=not _VIEWS)

    def _build(self) -> pd.DataFrame:
        raise NotImplementedError

    def time_values(self) -> np.ndarray:
        """The retention time column's live values (int64 ns, NaT where missing)."""
        raise NotImplementedError


class AppendTable(Table):
    """Rows are only ever added at the end, and dropped from the front by retention.

    Small batches of Python values wait in a list and are encoded together when the table is
    next looked at (a read, retention, ``columns``) or once enough rows wait: a trickle of
    frames, parsed every few milliseconds, then costs one list append per batch instead of a
    few NumPy calls per column, and a table nobody reads pays for its rows in bulk. Encoding
    the batches together gives the very codes and values encoding them one by one would.
    """

    #: rows that may wait unencoded: encoding them together is a stall proportional to them
    PENDING_ROWS = 256
    #: dropped rows below which the buffers are never compacted (see :meth:`drop_front`)
    COMPACT_ROWS = 8192

    def __init__(self, spec: TableSpec) -> None:
        super().__init__(spec)
        self.start = 0  # first live row; rows before it were dropped but not yet compacted
        self._pending: list[Batch] = []
        self._pending_rows = 0

    @property
    def columns(self) -> dict[str, Column]:  # type: ignore[override]
        self.settle()
        return self._columns

    def __len__(self) -> int:
        return self._stop + self._pending_rows - self.start

    @property
    def _stop(self) -> int:
        return len(next(iter(self._columns.values())))

    def append(self, batch: Batch) -> int:
        """Add the batch's rows; columns the batch lacks are missing values."""
        count = len(batch)
        if not count:
            return 0
        if _waits(batch, self.PENDING_ROWS):
            if self._pending and not _same_forms(self._pending[0], batch):
                self.settle()
            self._pending.append(batch)
            self._pending_rows += count
            if self._pending_rows >= self.PENDING_ROWS:
                self.settle()
        else:
            self.settle()
            self._store(batch)
        self.version += 1
        return count

    def settle(self) -> None:
        """Encode the batches waiting into the columns."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        self._store(pending[0] if len(pending) == 1 else _concat(pending))

    def _store(self, batch: Batch) -> None:
        count = len(batch)
        for name, column in self._columns.items():
            values = batch.columns.get(name)
            if values is None:
                column.extend_empty(count)
            else:
                column.append(column.encode(values))

    def drop_front(self, count: int) -> int:
        """Drop the ``count`` oldest rows (by arrival)."""
        count = min(count, len(self))
        if count <= 0:
            return 0
        self.settle()
        self.start += count
        for column in self._columns.values():
            column.release(self.start)
        stop = self._stop
        # compact once the dead prefix is an eighth of what is live: it is held in memory until
        # then, and copying the live rows every eighth of them costs each row about 8 copies in
        # its life. New buffers, so frames handed out stay valid, with room for the next eighth.
        live = stop - self.start
        if self.start >= max(self.COMPACT_ROWS, live // 8):
            for column in self.columns.values():
                column.keep(slice(self.start, stop), self._room(live))
            self.start = 0
            self._cache = None  # the frame of the old buffers: released now, not at the next read
            release_freed_memory()
        self.version += 1
        return count

    def _room(self, live: int) -> int:
        """Rows a buffer holding ``live`` rows keeps free: the dead prefix that triggers the next
        compaction, and a batch more."""
        return max(self.COMPACT_ROWS, live // 8) + self.COMPACT_ROWS

    def limit_rows(self, rows: int | None) -> None:
        """The most rows retention lets this table keep (None: no limit): buffers are not grown
        past them and the room compaction needs, where doubling would leave up to half unused."""
        ceiling = None if rows is None else rows + self._room(rows)
        for column in self._columns.values():
            column.ceiling = ceiling

    def rows_older_than(self, cutoff: int) -> int:
        """How many leading rows have a time before ``cutoff`` (ns); stops at the first newer."""
        self.settle()
        column = self.columns[self.spec.time]
        values = column.buf  # type: ignore[attr-defined]
        missing = column.miss  # type: ignore[attr-defined]
        start, stop = self.start, self._stop
        count, step = 0, 1024
        while start + count < stop:
            end = min(stop, start + count + step)
            window = values[start + count : end]
            old = (window < cutoff) & ~missing[start + count : end]
            if old.all():
                count = end - start
                step *= 2
                continue
            return count + int(np.argmin(old))
        return count

    def _build(self) -> pd.DataFrame:
        self.settle()
        start, stop = self.start, self._stop
        # appended rows never change: views, not copies (see Column.to_pandas)
        data = {name: column.to_pandas(start, stop, frozen=_VIEWS) for name, column in self.columns.items()}
        return _shared(pd.DataFrame(data, copy=False))

    def time_values(self) -> np.ndarray:
        self.settle()
        column = self._columns[self.spec.time]
        return column.buf[self.start : self._stop]  # type: ignore[attr-defined]


#: pandas copies a frame's values before writing to them while another frame shares them
#: (copy-on-write: always from pandas 3, an option before): then the rows of append-only
#: tables are handed out as read-only views of the store's buffers; without it, as copies
_VIEWS = int(pd.__version__.split(".")[0]) >= 3 or bool(getattr(pd.options.mode, "copy_on_write", False))


def _shared(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``, its read-only views of the store's buffers known to pandas as shared.

    pandas writes in place to values that no other frame shares, and it learns of sharing
    from the frames it made itself only. While the store's cached frame lived, a frame read
    from it shared its values; once the cache went (the next version read, or a compaction),
    ``df.loc[0, "seq"] = 1`` wrote into the read-only view: "assignment destination is
    read-only". So each block also counts the buffer its view looks into (a weak reference,
    alive as long as any view of it): pandas copies first, as for any shared frame. Blocks
    holding copies need nothing; pandas without these internals gets copies (``_VIEWS``).
    """
    for block in frame._mgr.blocks:
        buffer = _viewed(block.values)
        if buffer is not None:
            block.refs.referenced_blocks.append(weakref.ref(buffer))
    return frame


def _viewed(values: Any) -> np.ndarray | None:
    """The store buffer a block's values are a read-only view of (None: they are a copy)."""
    for array in (values, getattr(values, "_ndarray", None), getattr(values, "_data", None),
                  getattr(values, "_codes", None)):
        if isinstance(array, np.ndarray) and not array.flags.writeable and isinstance(array.base, np.ndarray):
            return array.base
    return None


def _chain(batches: list[Batch]) -> Batch:
    """Batches of lists one after the other as one batch (for a latest-state table): a column
    a batch lacks is not carried by its rows, and only counted rows count."""
    names = list(dict.fromkeys(name for b in batches for name in b.columns))
    columns: dict[str, list[Any]] = {}
    owned: dict[str, np.ndarray] = {}
    for name in names:
        values: list[Any] = []
        carries: list[np.ndarray] = []
        for b in batches:
            part = b.columns.get(name)
            values += part if part is not None else [None] * len(b)
            own = b.owned.get(name)
            carries.append(own if own is not None else np.full(len(b), name in b.columns))
        columns[name] = values
        if not all(c.all() for c in carries):
            owned[name] = np.concatenate(carries)
    counted = None
    if any(b.counted is not None for b in batches):
        counted = np.concatenate([b.counted if b.counted is not None else np.zeros(len(b), bool) for b in batches])
    return Batch(np.arange(sum(len(b) for b in batches), dtype=np.int64), columns, counted, owned)


def _form(values: Any) -> Any:
    """What a batch column is made of, for :func:`_concat` (None: nothing it concatenates)."""
    if type(values) is list:
        return list
    if isinstance(values, pa.Array):
        return values.type
    if isinstance(values, np.ndarray):
        return values.dtype
    return None


def _waits(batch: Batch, limit: int) -> bool:
    """Whether an append-only table may keep the batch waiting (see :class:`AppendTable`)."""
    return len(batch) < limit and all(_form(v) is not None for v in batch.columns.values())


def _same_forms(first: Batch, batch: Batch) -> bool:
    """Whether two batches have the same columns, made of the same things (concatenable)."""
    columns = first.columns
    return columns.keys() == batch.columns.keys() and all(
        _form(values) == _form(columns[name]) for name, values in batch.columns.items()
    )


def _concat(batches: list[Batch]) -> Batch:
    """Batches of the same forms, one after the other, as one batch."""
    columns: dict[str, Any] = {}
    for name, first in batches[0].columns.items():
        parts = [b.columns[name] for b in batches]
        if type(first) is list:
            columns[name] = list(chain.from_iterable(parts))
        elif isinstance(first, pa.Array):
            columns[name] = pa.concat_arrays(parts, memory_pool=BULK_POOL)
        else:
            columns[name] = np.concatenate(parts)
    positions = np.arange(sum(len(b) for b in batches), dtype=np.int64)
    return Batch(positions, columns)


class LatestTable(Table):
    """One row per key, updated in place; see the module docstring for the ordering rule.

    Small batches of lists from the stream wait (:meth:`settle`); the rows they touch, which
    :meth:`update` returns for change batches, are their distinct keys, known without applying.

    The rule is written twice, vectorised (:meth:`update`) and for small batches of lists
    (:meth:`_update_lists`), because the second pays: benchmarks/latest_paths.py, 20,000 frames
    of the reference workload flushed every 5 frames took 8.6 s with it and 14.9 s without
    (1.74x), every 50 frames 2.5 s and 3.1 s (1.24x). tests/test_store_small_flush.py checks
    that both give the same tables.
    """

    counters = ("update_count",)
    #: batches of Python lists up to this many rows take :meth:`_update_lists`
    SMALL = 512
    #: rows of such batches that may wait for :meth:`settle` (1: none wait)
    PENDING_ROWS = 128

    def __init__(self, spec: TableSpec) -> None:
        super().__init__(spec)
        self._index: dict[Any, int] = {}
        self._pending: list[Batch] = []  # small batches of lists not applied yet (see settle)
        self._pending_rows = 0
        # per row (the first n of the buffers): seq and time of the newest event applied, -1 and
        # NAT if none
        self.order_seq = np.zeros(0, np.int64)
        self.order_ts = np.zeros(0, np.int64)
        self.n = 0

    @property
    def columns(self) -> dict[str, Column]:  # type: ignore[override]
        self.settle()
        return self._columns

    @property
    def index(self) -> dict[Any, int]:
        """Key -> row."""
        self.settle()
        return self._index

    def __len__(self) -> int:
        self.settle()
        return self.n

    def rows_at_most(self) -> int:
        return self.n + self._pending_rows  # each waiting event adds a row at most

    # -- keys -----------------------------------------------------------------------------
    def _rows(self, batch: Batch) -> np.ndarray:
        """Row index of every batch row (-1 when its key is missing); new keys get new rows."""
        count = len(batch)
        keys: list[Any] = [batch.columns.get(k) for k in self.spec.key]
        if any(k is None for k in keys):  # a key column no event of the batch carries
            keys = [[None] * count if k is None else k for k in keys]
            keys = [k.to_pylist() if isinstance(k, pa.Array) else list(k) for k in keys]
        if any(isinstance(k, list) for k in keys):  # Python rows: look keys up directly
            values = keys[0] if len(keys) == 1 else list(zip(*keys, strict=True))
            if len(keys) > 1:
                values = [None if None in v else v for v in values]
            distinct: list[Any] = list(dict.fromkeys(values))
            position = {key: i for i, key in enumerate(distinct)}
            indices = np.array([position[v] for v in values], np.int64)
        elif len(keys) == 1:
            keys = [normalize("cat", keys[0], count)]
            encoded = pc.dictionary_encode(keys[0])
            distinct = encoded.dictionary.to_pylist()
            indices = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
        else:
            keys = [normalize("cat", k, count) for k in keys]
            codes = []
            dictionaries = []
            for key in keys:
                enc = pc.dictionary_encode(key)
                dictionaries.append(enc.dictionary.to_pylist())
                codes.append(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64))
            width = len(dictionaries[1]) + 1
            pair = np.where((codes[0] < 0) | (codes[1] < 0), -1, codes[0] * width + codes[1])
            uniq, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
            # new keys get rows in order of first appearance, as with a single key
            appearance = np.argsort(first, kind="stable")
            rank = np.empty_like(appearance)
            rank[appearance] = np.arange(len(appearance))
            indices = rank[inverse.reshape(-1)]
            distinct = [
                None if p < 0 else (dictionaries[0][p // width], dictionaries[1][p % width])
                for p in uniq[appearance].tolist()
            ]
        get = self._index.get
        mapping = np.array([get(key, -1) for key in distinct] + [-1], np.int64)
        new_keys: list[Any] = []
        for i in np.flatnonzero(mapping[:-1] < 0).tolist():  # keys never seen before
            key = distinct[i]
            if key is None or key in self._index:  # no key; or twice in a composite batch
                mapping[i] = self._index.get(key, -1) if key is not None else -1
                continue
            mapping[i] = self._index[key] = self.n + len(new_keys)
            new_keys.append(key)
        if new_keys:
            self._add_rows(new_keys)
        return mapping[indices]

    def _add_rows(self, keys: list[Any]) -> None:
        count = len(keys)
        for name, column in self._columns.items():
            column.extend_empty(count)
            if name in self.counters:
                column.buf[self.n : self.n + count] = 0  # type: ignore[attr-defined]
                column.miss[self.n : self.n + count] = False  # type: ignore[attr-defined]
        for position, name in enumerate(self.spec.key):
            values = [k if len(self.spec.key) == 1 else k[position] for k in keys]
            column = self._columns[name]
            rows = np.arange(self.n, self.n + count)
            column.put(rows, column.encode(values), np.arange(count))
        needed = self.n + count
        if needed > len(self.order_seq):  # grown by doubling, as the columns
            self.order_seq = _grow(self.order_seq, needed, self.n)
            self.order_ts = _grow(self.order_ts, needed, self.n)
        self.order_seq[self.n : needed] = -1  # no event applied yet
        self.order_ts[self.n : needed] = NAT
        self.n = needed

    # -- updates --------------------------------------------------------------------------
    def update(self, batch: Batch, snapshot: bool = False) -> int:
        """Apply a batch; returns the number of rows it touched."""
        count = len(batch)
        if not count:
            return 0
        small = count <= self.SMALL and all(type(v) is list for v in batch.columns.values())
        if small and not snapshot and self.PENDING_ROWS > 1:
            return self._wait(batch)
        self.settle()
        if small:
            return self._update_lists(batch, snapshot)
        rows = self._rows(batch)
        events = np.flatnonzero(rows >= 0)
        if not events.size:
            return 0
        seq = _int_values(batch.columns.get("seq"), count, -1)
        when = _int_values(batch.columns.get("updated_at"), count, NAT, ts=True)
        r, s, t = rows[events], seq[events], when[events]
        row_seq, row_ts = self.order_seq[r], self.order_ts[r]
        both = (s >= 0) & (row_seq >= 0)
        newer = np.where(both, s > row_seq, (t >= row_ts) | (t == NAT))
        # within the batch: by seq when every event has one, else by time (arrival breaks ties)
        key = s if (s >= 0).all() else np.where(t == NAT, _MAX, t)
        order = np.lexsort((key, r))
        r, newer, events = r[order], newer[order], events[order]
        new_rows, new_pos = r[newer], events[newer]
        old_rows, old_pos = r[~newer], events[~newer]

        if new_rows.size:
            last = _last_of_runs(new_rows)
            touched, source = new_rows[last], new_pos[last]
            self.order_seq[touched] = seq[source]
            self.order_ts[touched] = when[source]
            seq_column = self._columns["seq"]
            seq_column.put(touched, (seq, seq < 0), source)
            snap = self._columns["snapshot"]
            flags = np.full(count, snapshot)
            snap.put(touched, (flags, None), source)
        skip = {"seq", "snapshot", *self.spec.key}
        for name, values in batch.columns.items():
            if name in skip or name not in self._columns:
                continue
            column = self._columns[name]
            encoded = column.encode(values)
            carries = batch.owned.get(name)
            if new_rows.size:  # the newest event carrying the column sets it, null included
                rows_k, pos_k = (new_rows, new_pos) if carries is None else (
                    new_rows[carries[new_pos]], new_pos[carries[new_pos]]
                )
                if rows_k.size:
                    last = _last_of_runs(rows_k)
                    column.put(rows_k[last], encoded, pos_k[last])
            if old_rows.size:
                present = ~column.encoded_missing(encoded)
                keep = present[old_pos] if carries is None else present[old_pos] & carries[old_pos]
                rows_k, pos_k = old_rows[keep], old_pos[keep]
                if rows_k.size:
                    last = _last_of_runs(rows_k)
                    rows_k, pos_k = rows_k[last], pos_k[last]
                    empty = column.missing(rows_k)  # older events only fill gaps
                    if empty.any():
                        column.put(rows_k[empty], encoded, pos_k[empty])
        if batch.counted is not None:
            for name in self.counters:
                if name in self._columns:
                    counted_rows = rows[(rows >= 0) & batch.counted]
                    np.add.at(self._columns[name].buf, counted_rows, 1)  # type: ignore[attr-defined]
        self.version += 1
        return int(np.unique(r).size)

    def _keys_of_lists(self, batch: Batch) -> list[Any]:
        """Each batch row's key (a tuple for two key columns), None where it has none."""
        count = len(batch)
        keys = [batch.columns.get(k) or [None] * count for k in self.spec.key]
        return keys[0] if len(keys) == 1 else [None if None in v else v for v in zip(*keys, strict=True)]

    # -- small batches of events wait -------------------------------------------------------
    def _wait(self, batch: Batch) -> int:
        """Keep a small batch of lists (events, never a snapshot) for :meth:`settle`; returns
        what :meth:`update` returns: the rows it touches, one per distinct key."""
        touched = len(set(self._keys_of_lists(batch)) - {None})
        if not touched:  # no event with a key: nothing to apply, as update would find
            return 0
        self._pending.append(batch)
        self._pending_rows += len(batch)
        self.version += 1
        if self._pending_rows >= self.PENDING_ROWS:
            self.settle()
        return touched

    def settle(self) -> None:
        """Apply the batches waiting, in order: at once when that gives exactly what one by one
        would (:meth:`_in_order`), which is the live stream's usual case; the per-column work
        is then paid once for many small flushes."""
        if not self._pending:
            return
        pending, self._pending, self._pending_rows = self._pending, [], 0
        if len(pending) > 1 and self._in_order(pending):
            self._update_lists(_chain(pending), False)
        else:
            for batch in pending:
                self._update_lists(batch, False)

    def _in_order(self, batches: list[Batch]) -> bool:
        """Whether every event of the batches has a seq above that of every earlier event of its
        key (the batches' before it, and the row's), and no row they touch lacks a seq. Then
        every event is newer than its row both one batch after another and all at once, where
        the newest event carrying a column sets it: the outcome is the same either way."""
        latest: dict[Any, int] = {}  # key -> the highest seq so far
        index, order_seq = self._index, self.order_seq
        for batch in batches:
            seqs = batch.columns.get("seq")
            if seqs is None:
                return False
            lowest: dict[Any, int] = {}
            highest: dict[Any, int] = {}
            for key, seq in zip(self._keys_of_lists(batch), seqs, strict=True):
                if key is None:
                    continue
                if type(seq) is not int or seq < 0:
                    return False
                if seq < lowest.get(key, seq + 1):
                    lowest[key] = seq
                if seq > highest.get(key, -1):
                    highest[key] = seq
            for key, low in lowest.items():
                before = latest.get(key)
                if before is None:
                    row = index.get(key)
                    if row is not None:
                        before = int(order_seq[row])
                        if before < 0:  # ordered by time so far: one by one may differ
                            return False
                if before is not None and low <= before:
                    return False
                latest[key] = highest[key]
        return True

    def _rows_of_lists(self, batch: Batch) -> list[int]:
        """:meth:`_rows` for keys in Python lists: row of every batch row, -1 without a key."""
        values = self._keys_of_lists(batch)
        index = self._index
        new_keys: list[Any] = []
        rows = []
        for key in values:
            if key is None:
                rows.append(-1)
                continue
            row = index.get(key)
            if row is None:  # new keys get rows in order of first appearance
                row = index[key] = self.n + len(new_keys)
                new_keys.append(key)
            rows.append(row)
        if new_keys:
            self._add_rows(new_keys)
        return rows

    def _update_lists(self, batch: Batch, snapshot: bool) -> int:
        """:meth:`update` for a small batch of Python lists: the same rule, worked out event by
        event in Python; NumPy only writes each column's winning values (a few calls per column
        instead of a dozen: on a batch of a few rows the calls are what costs)."""
        count = len(batch)
        rows = self._rows_of_lists(batch)
        events = [i for i in range(count) if rows[i] >= 0]
        if not events:
            return 0
        seq_array = _int_values(batch.columns.get("seq"), count, -1)
        when_array = _int_values(batch.columns.get("updated_at"), count, NAT, ts=True)
        seq, when = seq_array.tolist(), when_array.tolist()
        event_rows = np.array([rows[i] for i in events], np.int64)
        row_seqs, row_times = self.order_seq[event_rows].tolist(), self.order_ts[event_rows].tolist()
        newer = [
            seq[i] > row_seq if seq[i] >= 0 and row_seq >= 0 else (when[i] >= row_time or when[i] == NAT)
            for i, row_seq, row_time in zip(events, row_seqs, row_times, strict=True)
        ]
        # within the batch: by seq when every event has one, else by time (arrival breaks ties)
        key = seq if all(seq[i] >= 0 for i in events) else [_MAX if t == NAT else t for t in when]
        ranked = sorted(range(len(events)), key=lambda k: (rows[events[k]], key[events[k]]))
        new: list[tuple[int, int]] = []  # (row, batch position) of newer events, in that order
        old: list[tuple[int, int]] = []
        for k in ranked:
            (new if newer[k] else old).append((rows[events[k]], events[k]))
        newest = dict(new)  # row -> its newest event (the last one in the ranking)
        columns = self._columns
        if newest:
            touched = np.array(list(newest), np.int64)
            source = np.array(list(newest.values()), np.int64)
            self.order_seq[touched] = seq_array[source]
            self.order_ts[touched] = when_array[source]
            columns["seq"].put(touched, (seq_array, seq_array < 0), source)
            columns["snapshot"].assign(touched, (np.full(len(touched), snapshot), None))  # type: ignore[attr-defined]
        skip = {"seq", "snapshot", *self.spec.key}
        for name, values in batch.columns.items():
            if name in skip or name not in columns:
                continue
            column = columns[name]
            carries = batch.owned.get(name)
            flags = None if carries is None else carries.tolist()
            # every value is encoded, used or not, so that categories are added in batch order
            codes = column.dictionary.codes_of_list(values) if column.kind == "cat" else None  # type: ignore[attr-defined]
            if newest:  # the newest event carrying the column sets it, null included
                chosen = newest if flags is None else {row: i for row, i in new if flags[i]}
                if chosen:
                    target = touched if flags is None else np.array(list(chosen), np.int64)
                    picked = list(chosen.values())
                    column.assign(target, (codes[picked], None) if codes is not None  # type: ignore[attr-defined]
                                  else column.encode([values[i] for i in picked]))
            if old:  # older events only fill gaps
                encoded = (codes, None) if codes is not None else column.encode(values)
                present = (~column.encoded_missing(encoded)).tolist()
                fills = {row: i for row, i in old if present[i] and (flags is None or flags[i])}
                if fills:
                    target = np.array(list(fills), np.int64)
                    take = np.array(list(fills.values()), np.int64)
                    empty = column.missing(target)
                    if empty.any():
                        column.put(target[empty], encoded, take[empty])
        if batch.counted is not None:
            counted = batch.counted.tolist()
            counted_rows = [row for row, c in zip(rows, counted, strict=True) if row >= 0 and c]
            for name in self.counters:
                if name in columns and counted_rows:
                    np.add.at(columns[name].buf, counted_rows, 1)  # type: ignore[attr-defined]
        self.version += 1
        return len(set(event_rows.tolist()))

    def keep_rows(self, keep: np.ndarray) -> int:
        """Keep only the rows where ``keep`` is True (retention); returns how many were dropped."""
        self.settle()
        dropped = int(self.n - keep.sum())
        if not dropped:
            return 0
        for column in self._columns.values():
            column.keep(keep)
        self.order_seq = self.order_seq[: self.n][keep]
        self.order_ts = self.order_ts[: self.n][keep]
        # the index lists keys in the order of their rows (a new key always takes the next row)
        kept_keys = list(compress(self._index, keep.tolist()))
        self._index = dict(zip(kept_keys, range(len(kept_keys)), strict=True))
        self.n = len(kept_keys)
        self._cache = None  # the frame of the rows before: released now, not at the next read
        self.version += 1
        return dropped

    def finished(self, statuses: frozenset[str]) -> np.ndarray:
        """Per row, True when its ``status`` is one of ``statuses`` (compared in lower case)."""
        self.settle()
        column = cast(CategoryColumn, self._columns["status"])
        values = column.dictionary.values
        done = [str(value).strip().lower() in statuses for value in values]
        lookup = np.array([*done, False], bool)  # the last one: code -1, no status
        return lookup[column.buf[: self.n]]

    def time_values(self) -> np.ndarray:
        self.settle()
        return self.order_ts[: self.n]

    def _build(self) -> pd.DataFrame:
        self.settle()
        data = {name: column.to_pandas(0, self.n) for name, column in self._columns.items()}
        frame = pd.DataFrame(data, copy=False)
        if "duration_s" in frame.columns and "started_at" in frame.columns:
            # derived: seconds from start to completion (or failure), when both are known
            end = frame["completed_at"].fillna(frame["failed_at"])
            frame["duration_s"] = (end - frame["started_at"]).dt.total_seconds()
        return frame


def _last_of_runs(sorted_rows: np.ndarray) -> np.ndarray:
    """Mask of the last element of each run of equal values in a sorted array."""
    last = np.ones(len(sorted_rows), bool)
    last[:-1] = sorted_rows[1:] != sorted_rows[:-1]
    return last


def _int_values(values: Any, count: int, fill: int, ts: bool = False) -> np.ndarray:
    """An int64 / timestamp batch column as int64 NumPy values (``fill`` where missing)."""
    if values is None:
        return np.full(count, fill, np.int64)
    if isinstance(values, list):
        return np.array([fill if v is None else v for v in values], np.int64)
    array = cast("pa.Array", normalize("ts" if ts else "int64", values, count))  # a list only for obj
    if ts:
        array = array.cast(pa.int64())
    if array.null_count:
        array = pc.fill_null(array, fill)
    return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
