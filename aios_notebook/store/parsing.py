"""Frames -> typed table batches, many frames at a time.

The client hands the store raw text frames; parsing them one by one with ``json.loads`` costs
more than receiving them. So frames are parsed in batches:

1. the batch becomes one Arrow string array (which is also the ``raw`` table's text);
2. a regular expression reads each frame's event name from its first bytes (C++, vectorised);
3. frames of the frequent, fixed-shape events (:data:`.schema.FAST_EVENTS`) are parsed by
   Arrow's JSON reader in one call against an explicit schema, straight into typed columns;
4. everything else, and every frame the fast path cannot vouch for (a parse error, a wrong
   type, a missing required field, an extra top-level key, NaN...), goes through
   :func:`aios_notebook.protocol.codec.decode` and :mod:`.rows` one frame at a time, which
   describes each problem in the errors table.

The result is the same as decoding every frame with ``decode``; the fast path is only faster.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..protocol.codec import decode
from ..protocol.models import SERVER_EVENTS
from .columns import TS_TYPE, arrow_type, normalize
from .rows import event_rows, get_path, timestamp_ns
from .schema import EVENT_ROUTES, FAST_EVENTS, METRIC_NAMES, TABLES
from .tables import Batch

__all__ = ["FAST_SCHEMA", "Parsed", "owned_columns", "parse_frames"]

_EVENT_NAME = r'^\s*\{\s*"event"\s*:\s*"(?P<event>[A-Za-z0-9_]+)"\s*,\s*"data"\s*:\s*\{'
_ARROW_OF_KIND = {
    "str": pa.string(),
    "id": pa.string(),
    "category": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TS_TYPE,
    "str_list": pa.list_(pa.string()),
}
#: object fields with a fixed shape in practice, parsed as structs by the fast path (a value
#: of another shape makes Arrow fail, and the frame goes the per-frame way)
_FIXED_OBJECTS = {"changes": {name: "str" for name in METRIC_NAMES}}
_CHANGE_NUMBER = r"^\s*(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%?\s*$"
_MIN_SPLIT = 16  # below this many frames, a failing group is decoded frame by frame
USE_THREADS = True  # Arrow's JSON reader releases the GIL: the I/O thread keeps receiving


def _fast_schema() -> tuple[pa.Schema, dict[str, list[str]], dict[str, list[tuple[str, ...]]]]:
    """The union of the fast events' fields; their required fields; their float fields."""
    flat: dict[str, pa.DataType] = {}
    nested: dict[str, dict[str, pa.DataType]] = {}
    required: dict[str, list[str]] = {}
    floats: dict[str, list[tuple[str, ...]]] = {}
    for name in sorted(FAST_EVENTS):
        spec = SERVER_EVENTS[name]
        required[name] = sorted(spec.required)
        floats[name] = []
        for key, kind in spec.fields.items():
            if kind == "object":
                shape = spec.nested.get(key) or _FIXED_OBJECTS[key]
                for sub, sub_kind in shape.items():
                    nested.setdefault(key, {})[sub] = _ARROW_OF_KIND[sub_kind]
                    if sub_kind == "float":
                        floats[name].append((key, sub))
                continue
            arrow = _ARROW_OF_KIND[kind]
            if flat.setdefault(key, arrow) != arrow:
                raise TypeError(f"field {key!r} has two types among the fast events")
            if kind == "float":
                floats[name].append((key,))
    fields = [pa.field(k, t) for k, t in flat.items()]
    fields += [pa.field(k, pa.struct([pa.field(s, t) for s, t in subs.items()])) for k, subs in nested.items()]
    schema = pa.schema([("event", pa.string()), ("data", pa.struct(fields)), ("seq", pa.int64())])
    return schema, required, floats


FAST_SCHEMA, _REQUIRED, _FLOATS = _fast_schema()
_PARSE = pj.ParseOptions(explicit_schema=FAST_SCHEMA, unexpected_field_behavior="infer")
_FAST_NAMES = pa.array(sorted(FAST_EVENTS), pa.string())


@dataclass
class Parsed:
    """The outcome of parsing one batch of frames.

    Attributes:
        batches: table -> batches of rows (merged in arrival order by the store).
        raw: the raw table's batch (one row per frame).
        now: the latest event time seen in the batch (ns), or None.
        events: frames per event name (None for frames without one).
        fast: how many frames took the batched path.
    """

    batches: dict[str, list[Batch]] = field(default_factory=dict)
    raw: Batch | None = None
    now: int | None = None
    events: Counter = field(default_factory=Counter)
    fast: int = 0


def _read(frames: pa.Array) -> pa.Table | None:
    """Parse newline-free JSON frames with Arrow; None when anything at all goes wrong."""
    joined = pc.binary_join_element_wise(frames, "", "\n")  # each frame + "\n"
    offsets = np.frombuffer(joined.buffers()[1], np.int32, len(joined) + 1, joined.offset * 4)
    data = joined.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    longest = int(pc.max(pc.binary_length(frames)).as_py() or 0)
    options = pj.ReadOptions(use_threads=USE_THREADS, block_size=max(1 << 20, 2 * longest + 2))
    try:
        table = pj.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return None
    if table.num_rows != len(frames):  # two objects in one frame, or an empty one
        return None
    return table


def _read_split(frames: pa.Array, offset: int, out: list[tuple[int, pa.Table]], bad: list[int]) -> None:
    """Parse, halving the group around frames Arrow rejects, which go to the per-frame path."""
    table = _read(frames)
    if table is not None:
        out.append((offset, table))
        return
    if len(frames) <= _MIN_SPLIT:
        bad.extend(range(offset, offset + len(frames)))
        return
    half = len(frames) // 2
    _read_split(frames.slice(0, half), offset, out, bad)
    _read_split(frames.slice(half), offset + half, out, bad)


def _suspect(table: pa.Table) -> np.ndarray:
    """Rows the fast path parsed but cannot vouch for: extra keys, null data, missing required
    fields, NaN / infinite numbers."""
    n = table.num_rows
    bad = np.zeros(n, bool)
    for name in table.column_names:
        if name not in ("event", "data", "seq"):  # an extra top-level key (inferred column)
            bad |= pc.is_valid(table.column(name)).to_numpy(zero_copy_only=False)
    data = table.column("data").combine_chunks()
    bad |= data.is_null().to_numpy(zero_copy_only=False)
    events = table.column("event").combine_chunks()
    for name in pc.unique(events).to_pylist():
        checks = [pc.is_null(pc.struct_field(data, [key])) for key in _REQUIRED.get(name, ())]
        checks += [
            pc.fill_null(pc.invert(pc.is_finite(pc.struct_field(data, list(path)))), False)
            for path in _FLOATS.get(name, ())
        ]
        if not checks:
            continue
        problem = checks[0]
        for check in checks[1:]:
            problem = pc.or_(problem, check)
        in_event = pc.equal(events, name)
        bad |= pc.and_(in_event, pc.fill_null(problem, False)).to_numpy(zero_copy_only=False)
    return bad


class _Fields:
    """Field columns of a parsed fast table, extracted once each."""

    def __init__(self, data: pa.StructArray) -> None:
        self.data = data
        self.cache: dict[str, pa.Array] = {}

    def get(self, path: str) -> pa.Array:
        column = self.cache.get(path)
        if column is None:
            column = self.cache[path] = pc.struct_field(self.data, path.split("."))
        return column


@dataclass(frozen=True)
class _ColumnPlan:
    """How the fast path fills one column of one table: from one source for every event of
    the table (``common``), or event by event (``by_event``); plus per-event defaults."""

    column: str
    kind: str
    common: str | tuple[str, ...] | None
    by_event: tuple[tuple[str, str | tuple[str, ...]], ...]
    defaults: tuple[tuple[str, Any], ...]


def _plans() -> dict[str, tuple[tuple[str, ...], tuple[_ColumnPlan, ...], tuple[str, ...]]]:
    """table -> (its fast events, its column plans, the events counted per key)."""
    plans = {}
    for table, spec in TABLES.items():
        routes = {e: r for e in sorted(FAST_EVENTS) for r in EVENT_ROUTES[e] if r.table == table}
        if not routes:
            continue
        columns = []
        for name in spec.names:
            sources = {e: r.fields[name] for e, r in routes.items() if name in r.fields}
            defaults = tuple((e, r.defaults[name]) for e, r in routes.items() if name in r.defaults)
            if not sources and not defaults:
                continue
            same = len(sources) == len(routes) and len(set(sources.values())) == 1
            columns.append(_ColumnPlan(
                name, spec.kind(name), next(iter(sources.values())) if same else None,
                () if same else tuple(sources.items()), defaults,
            ))
        counted = tuple(e for e, r in routes.items() if r.counts)
        plans[table] = (tuple(routes), tuple(columns), counted)
    return plans


_PLANS = _plans()


def _fast_batches(table: pa.Table, keep: np.ndarray, positions: np.ndarray,
                  received: np.ndarray, parsed: Parsed) -> None:
    """One batch per table from the rows of a fast table that passed the checks."""
    events = table.column("event").combine_chunks()
    seq = table.column("seq").combine_chunks()
    fields = _Fields(table.column("data").combine_chunks())
    present = set(pc.unique(events.filter(pa.array(keep))).to_pylist()) if keep.any() else set()
    for name, (table_events, plans, counted_events) in _PLANS.items():
        wanted = [e for e in table_events if e in present]
        if not wanted:
            continue
        member = pc.is_in(events, pa.array(wanted, pa.string())).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(keep & member)
        take = None if len(rows) == len(events) else pa.array(rows)

        def pick(array: pa.Array, take: pa.Array | None = take) -> pa.Array:
            return array if take is None else array.take(take)

        def source(path: str | tuple[str, ...]) -> pa.Array:
            if isinstance(path, str):
                return pick(fields.get(path))
            return pc.coalesce(*(pick(fields.get(p)) for p in path))

        table_events_column = pick(events)
        is_event = {e: pc.equal(table_events_column, e) for e in wanted} if len(wanted) > 1 else None
        pos = positions[rows]
        columns: dict[str, Any] = {"seq": pick(seq)}
        spec = TABLES[name]
        if "received_at" in spec.names:
            columns["received_at"] = pa.array(received[pos], TS_TYPE)
        if "event" in spec.names:
            columns["event"] = table_events_column
        owned: dict[str, np.ndarray] = {}
        for plan in plans:
            if plan.common is not None:
                values = source(plan.common)
            else:  # the events of this table fill the column differently: event by event
                carriers = [e for e, _ in plan.by_event]
                owned[plan.column] = pc.is_in(
                    table_events_column, pa.array(carriers, pa.string())
                ).to_numpy(zero_copy_only=False)
                values = pa.nulls(len(rows), arrow_type(plan.kind) or source(plan.by_event[0][1]).type)
                for event, path in plan.by_event:
                    if event in present:
                        chosen = is_event[event] if is_event else pa.scalar(True)
                        values = pc.if_else(chosen, source(path), values)
            for event, default in plan.defaults:
                if event in present:
                    chosen = is_event[event] if is_event else pa.scalar(True)
                    fill = pc.and_(chosen, pc.is_null(values))
                    values = pc.if_else(fill, pa.scalar(default, values.type), values)
            if plan.kind == "obj":
                values = values.to_pylist()
                if plan.column == "changes":  # the struct has every metric: keep those sent
                    values = [None if v is None else {k: x for k, x in v.items() if x is not None} for v in values]
            columns[plan.column] = values
        if name == "metrics":
            for metric in METRIC_NAMES:
                number = pc.struct_field(pc.extract_regex(source(f"changes.{metric}"), _CHANGE_NUMBER), [0])
                columns[f"{metric}_change"] = pc.cast(number, pa.float64())
        counted = None
        if counted_events:
            counted = pc.is_in(table_events_column, pa.array(counted_events, pa.string())).to_numpy(zero_copy_only=False)
        parsed.batches.setdefault(name, []).append(Batch(pos, columns, counted, owned))


def _slow_frame(text: Any, position: int, received: int, slow: dict[str, list[tuple[int, dict]]],
                parsed: Parsed) -> tuple[str | None, int | None, str]:
    """Decode one frame the long way; returns its event name, seq and text for the raw table."""
    decoded = decode(text)
    message = decoded.message
    event = message.event if message else None
    seq = message.seq if message else None
    envelope = {"received_at": received, "seq": seq, "event": event}
    problems = [p for p in decoded.problems if p.kind != "field_type"]
    if problems:
        slow.setdefault("errors", []).append(
            (position, {**envelope, "kind": "malformed", "code": problems[0].kind,
                        "message": decoded.describe(),
                        "details": {"problems": [p.kind for p in problems]}}),
        )
    text_out = decoded.text
    if not isinstance(text, str) or _unencodable(text_out):
        text_out = text_out.encode("utf-8", "replace").decode("utf-8")
    if message is None:
        return event, seq, text_out
    rows, bad = event_rows(event, message.data)
    reported = {path for path, _ in bad}
    bad += [
        (p.field, get_path(message.data, p.field or ""))
        for p in decoded.problems
        if p.kind == "field_type" and p.field not in reported
    ]
    for path, value in bad:
        slow.setdefault("errors", []).append(
            (position, {**envelope, "kind": "field_type", "code": "field_type",
                        "message": _field_message(decoded, event, path, value),
                        "details": {"field": path, "value": repr(value)[:200]}}),
        )
    for table, row in rows.items():
        slow.setdefault(table, []).append((position, {**envelope, **row}))
    when = timestamp_ns(message.data.get("timestamp") or message.data.get("server_time"))
    if when is not None and (parsed.now is None or when > parsed.now):
        parsed.now = when
    return event, seq, text_out


def _field_message(decoded: Any, event: str, path: str, value: Any) -> str:
    for problem in decoded.problems:
        if problem.kind == "field_type" and problem.field == path:
            return problem.message  # names the expected kind too
    text = repr(value)
    return f"{event}.{path}: wrong type {type(value).__name__} {text[:40]}"


def _slow_batches(slow: dict[str, list[tuple[int, dict]]], parsed: Parsed) -> None:
    for table, items in slow.items():
        spec = TABLES[table]
        positions = np.array([p for p, _ in items], np.int64)
        names = {k for _, row in items for k in row}
        columns: dict[str, Any] = {}
        for name in names:
            if name not in spec.names and name != "seq":
                continue
            kind = spec.kind(name) if name in spec.names else "int64"
            columns[name] = normalize(kind, [row.get(name) for _, row in items], len(items))
        counting = {e for e, rs in EVENT_ROUTES.items() for r in rs if r.table == table and r.counts}
        counted = np.array([row.get("event") in counting for _, row in items], bool) if counting else None
        parsed.batches.setdefault(table, []).append(Batch(positions, columns, counted, owned_columns(items, columns)))


def owned_columns(items: list[tuple[int, dict]], columns: dict[str, Any]) -> dict[str, np.ndarray]:
    """Which rows carry each column (a key present in the row's dict), where not all do."""
    owned = {}
    for name in columns:
        carries = np.fromiter((name in row for _, row in items), bool, len(items))
        if not carries.all():
            owned[name] = carries
    return owned


def parse_frames(texts: list[Any], received: np.ndarray, fast: bool = True) -> Parsed:
    """Parse one batch of frames (str text frames, or bytes) received at ``received`` (ns).

    ``fast=False`` decodes every frame one by one (same result, slower: for comparison).
    """
    n = len(texts)
    parsed = Parsed()
    not_text = None
    try:
        if set(map(type, texts)) - {str}:  # Arrow would take bytes as text: binary frames are odd
            raise TypeError("binary frames")
        frames = pa.array(texts, pa.string())
    except (pa.ArrowException, TypeError, ValueError):  # a binary frame, or a lone surrogate
        not_text = np.array([not isinstance(t, str) or _unencodable(t) for t in texts], bool)
        frames = pa.array([None if bad else t for t, bad in zip(texts, not_text, strict=True)], pa.string())
    names = pc.struct_field(pc.extract_regex(frames, _EVENT_NAME), [0])
    hot = pc.and_(pc.fill_null(pc.is_in(names, _FAST_NAMES), False),
                  pc.invert(pc.fill_null(pc.match_substring(frames, "\n"), True)))
    hot_rows = np.flatnonzero(hot.to_numpy(zero_copy_only=False)) if fast else np.empty(0, np.int64)
    is_slow = np.ones(n, bool)
    raw_seq = np.full(n, -1, np.int64)
    if hot_rows.size:
        pieces: list[tuple[int, pa.Table]] = []
        rejected: list[int] = []
        _read_split(frames.take(pa.array(hot_rows)), 0, pieces, rejected)
        for offset, table in pieces:
            positions = hot_rows[offset : offset + table.num_rows]
            keep = ~_suspect(table)
            _fast_batches(table, keep, positions, received, parsed)
            is_slow[positions[keep]] = False
            seq = table.column("seq").combine_chunks()
            seq_values = pc.fill_null(seq, -1).to_numpy(zero_copy_only=False)
            raw_seq[positions[keep]] = seq_values[keep]
            stamps = pc.max(pc.struct_field(table.column("data").combine_chunks().filter(pa.array(keep)), ["timestamp"]))
            if stamps.is_valid:
                when = stamps.cast(pa.int64()).as_py()
                if parsed.now is None or when > parsed.now:
                    parsed.now = when
        parsed.fast = int(n - is_slow.sum())
    event_names: list[Any] | None = None
    texts_out: list[Any] | None = None
    slow_rows = np.flatnonzero(is_slow)
    if slow_rows.size:
        slow: dict[str, list[tuple[int, dict]]] = {}
        event_names = names.to_pylist()
        if not_text is not None:
            texts_out = frames.to_pylist()
        for position in slow_rows.tolist():
            event, seq, text = _slow_frame(texts[position], position, int(received[position]), slow, parsed)
            event_names[position] = event
            raw_seq[position] = -1 if seq is None else seq
            if texts_out is not None:
                texts_out[position] = text
        _slow_batches(slow, parsed)
    event_array = names if event_names is None else pa.array(event_names, pa.string())
    for item in pc.value_counts(event_array).to_pylist():
        parsed.events[item["values"]] += item["counts"]
    parsed.raw = Batch(
        np.arange(n, dtype=np.int64),
        {
            "received_at": pa.array(received, TS_TYPE),
            "seq": pa.array(raw_seq, pa.int64(), mask=raw_seq < 0),
            "event": event_array,
            "text": frames if texts_out is None else pa.array(texts_out, pa.string()),
        },
    )
    return parsed


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
