"""Frames -> typed table batches, many frames at a time.

The client hands the store raw text frames; parsing them one by one with every check costs
more than receiving them. So frames are parsed in batches, three ways:

1. large batches (``SMALL_BATCH`` frames or more): the batch becomes one Arrow string array
   (also the ``raw`` table's text), a regular expression reads each frame's event name from its
   first bytes, and the frames of the frequent, fixed-shape events (:data:`.schema.FAST_EVENTS`)
   are parsed by Arrow's JSON reader, one call per event against that event's schema, straight
   into typed columns;
2. small batches, and the rare events of large ones: :mod:`.small_batches` reads each frame
   with msgspec (envelope, then each event's data as a Struct) and checks each field over
   the whole group of an event at once;
3. every frame the first two cannot vouch for (a parse error, a wrong type, a missing required
   field, an extra top-level key, NaN, an error event...) goes through
   :func:`aios_notebook.protocol.codec.decode` and :mod:`.rows` one frame at a time, which
   describes each problem in the errors table.

The tables are the same whichever way a frame goes (the tests compare them); 1 and 2 are only
faster, 1 for thousands of frames, 2 for a trickle (Arrow costs milliseconds per call).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..arrow_pool import BULK_POOL
from ..protocol.codec import decode
from ..protocol.dialects import Translated
from ..protocol.models import SERVER_EVENTS
from .columns import F32_MAX, INT_RANGES, TS_TYPE, arrow_type
from .rows import EVENT_PLANS, counted_tables, event_rows, sent_changes, timestamp_ns
from .schema import EVENT_ROUTES, FAST_EVENTS, METRIC_NAMES, TABLES
from .small_batches import parse_small
from .tables import Batch

__all__ = ["FAST_SCHEMA", "SMALL_BATCH", "Parsed", "arrow_texts", "owned_columns", "parse_frames"]

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
_MAX_DEPTH = 100  # nesting of an undeclared field past which the per-frame path judges the frame
_MIN_SPLIT = 16  # a failing group this small goes the per-frame way without more halving
#: batches smaller than this skip Arrow (see the module docstring)
SMALL_BATCH = 2000
USE_THREADS = True  # Arrow's JSON reader releases the GIL: the I/O thread keeps receiving


def _fast_schema() -> tuple[pa.Schema, dict[str, pa.Schema], dict[str, list[str]], dict[str, list[tuple[str, ...]]]]:
    """The union of the fast events' fields, each event's own schema, required and float fields."""
    flat: dict[str, pa.DataType] = {}
    nested: dict[str, dict[str, pa.DataType]] = {}
    narrow: dict[str, pa.Schema] = {}
    required: dict[str, list[str]] = {}
    floats: dict[str, list[tuple[str, ...]]] = {}
    for name in sorted(FAST_EVENTS):
        spec = SERVER_EVENTS[name]
        required[name] = sorted(spec.required)
        floats[name] = []
        own: list[pa.Field] = []
        for key, kind in spec.fields.items():
            if kind == "object":
                shape = spec.nested.get(key) or _FIXED_OBJECTS[key]
                children = []
                for sub, sub_kind in shape.items():
                    nested.setdefault(key, {})[sub] = _ARROW_OF_KIND[sub_kind]
                    children.append(pa.field(sub, _ARROW_OF_KIND[sub_kind]))
                    if sub_kind == "float":
                        floats[name].append((key, sub))
                own.append(pa.field(key, pa.struct(children)))
                continue
            arrow = _ARROW_OF_KIND[kind]
            if flat.setdefault(key, arrow) != arrow:
                raise TypeError(f"field {key!r} has two types among the fast events")
            own.append(pa.field(key, arrow))
            if kind == "float":
                floats[name].append((key,))
        narrow[name] = pa.schema([("event", pa.string()), ("data", pa.struct(own)), ("seq", pa.int64())])
    fields = [pa.field(k, t) for k, t in flat.items()]
    fields += [pa.field(k, pa.struct([pa.field(s, t) for s, t in subs.items()])) for k, subs in nested.items()]
    schema = pa.schema([("event", pa.string()), ("data", pa.struct(fields)), ("seq", pa.int64())])
    return schema, narrow, required, floats


FAST_SCHEMA, _EVENT_SCHEMAS, _REQUIRED, _FLOATS = _fast_schema()
# each event is parsed against its own fields only: no nulls to fill for the other events' fields
_PARSE = {
    name: pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    for name, schema in _EVENT_SCHEMAS.items()
}
_FAST_NAMES = pa.array(sorted(FAST_EVENTS), pa.string())
#: the type of each data field in the union of the fast events
_UNION = {field.name: field.type for field in FAST_SCHEMA.field("data").type}
#: the top-level data fields each fast event's tables read
_READ = {
    event: {
        path.split(".")[0]
        for route in EVENT_ROUTES[event]
        for source in route.fields.values()
        for path in ((source,) if isinstance(source, str) else source)
    }
    for event in FAST_EVENTS
}


def arrow_texts(texts: list[Any]) -> pa.Array | None:
    """Text frames as one Arrow string array; None when a frame is binary (Arrow would take its
    bytes as text) or holds a lone surrogate (not encodable): the per-frame path describes those."""
    if set(map(type, texts)) - {str}:
        return None
    try:
        return pa.array(texts, pa.string(), memory_pool=BULK_POOL)
    except (pa.ArrowException, TypeError, ValueError):
        return None


def _union_type(path: str) -> pa.DataType | None:
    """The Arrow type of a data path in the union of the fast events (None: no fast event has it)."""
    kind: pa.DataType = FAST_SCHEMA.field("data").type
    for part in path.split("."):
        if not pa.types.is_struct(kind) or kind.get_field_index(part) < 0:
            return None
        kind = kind.field(part).type
    return kind


@dataclass
class Parsed:
    """The outcome of parsing one batch of frames.

    Attributes:
        batches: table -> batches of rows (merged in arrival order by the store).
        raw: the raw table's batch (one row per frame).
        now: the latest event time seen in the batch (ns), or None.
        events: frames per event name (None for frames without one).
        fast: how many frames were parsed in groups (ways 1 and 2 of the module docstring).
        names: each frame's event name (an Arrow string array or a list; None where it has none).
        seqs: each frame's top-level seq (-1 where it has none).
    """

    batches: dict[str, list[Batch]] = field(default_factory=dict)
    raw: Batch | None = None
    now: int | None = None
    events: Counter = field(default_factory=Counter)
    fast: int = 0
    names: Any = None
    seqs: np.ndarray | None = None


def _read(lines: pa.Array, event: str) -> pa.Table | None:
    """Parse frames of one event with Arrow, one a line (each element of ``lines`` is a frame
    and its newline; a frame with a raw newline makes the call fail or count wrong); None when
    anything at all goes wrong."""
    try:
        offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
        data = lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        longest = int(np.diff(offsets).max()) if len(lines) else 0
        options = pj.ReadOptions(use_threads=USE_THREADS, block_size=max(1 << 20, 2 * longest + 2))
        table = pj.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE[event],
                             memory_pool=BULK_POOL)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return None
    if table.num_rows != len(lines):  # two objects in one frame, or an empty one
        return None
    return table


def _read_split(lines: pa.Array, event: str, offset: int, out: list[tuple[int, pa.Table]]) -> None:
    """Parse frames of one event, halving the group around frames Arrow rejects (those are
    left out, and so go the per-frame way)."""
    table = _read(lines, event)
    if table is not None:
        out.append((offset, table))
        return
    if len(lines) <= _MIN_SPLIT:
        return
    half = len(lines) // 2
    _read_split(lines.slice(0, half), event, offset, out)
    _read_split(lines.slice(half), event, offset + half, out)


def _parse_fast(frames: pa.Array, names: pa.Array, rows: np.ndarray) -> list[tuple[str, np.ndarray, pa.Table]]:
    """Parse the frames at ``rows``, event by event: a table per event (per piece when a group
    had to be halved), with the positions of its rows (the store merges tables' rows by them).

    The frames are put in event order and given their newlines in one pass each (one ``take``,
    one join), so that each event's group is a zero-copy slice of the result."""
    encoded = pc.dictionary_encode(names.take(pa.array(rows)))
    events = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    if len(events) == 1:
        ordered = rows
    else:
        order = np.argsort(indices, kind="stable")
        ordered = rows[order]
    bounds = np.concatenate([[0], np.cumsum(np.bincount(indices, minlength=len(events)))]).tolist()
    grouped = pc.take(frames, pa.array(ordered), memory_pool=BULK_POOL)
    lines = pc.binary_join_element_wise(grouped, "", "\n", memory_pool=BULK_POOL)  # each frame + "\n"
    pieces: list[tuple[str, np.ndarray, pa.Table]] = []
    for code, event in enumerate(events):
        start, stop = bounds[code], bounds[code + 1]
        group = ordered[start:stop]
        parsed: list[tuple[int, pa.Table]] = []
        _read_split(lines.slice(start, stop - start), event, 0, parsed)
        pieces += [(event, group[offset : offset + table.num_rows], table) for offset, table in parsed]
    return pieces


class _Fields:
    """Field columns of a parsed fast table, extracted once each."""

    def __init__(self, data: pa.StructArray, event: str) -> None:
        self.data = data
        self.declared = _EVENT_SCHEMAS[event].field("data").type
        self.cache: dict[str, pa.Array] = {}

    def get(self, path: str) -> pa.Array:
        column = self.cache.get(path)
        if column is None:
            want = _union_type(path)
            try:
                column = pc.struct_field(self.data, path.split("."))
            except (pa.ArrowException, KeyError):  # no event of the batch has this field
                column = None
            undeclared = self.declared.get_field_index(path.split(".")[0]) < 0
            if column is None or (undeclared and column.type != want):
                # absent, or inferred with another type in an event that does not declare it:
                # _suspect sent each row holding such a value the per-frame way, so the rows
                # kept hold none (and a null of another type may not cast to the column's)
                column = pa.nulls(len(self.data), want or pa.null())
            self.cache[path] = column
        return column


#: per fast event, the data paths feeding an int32 or float32 column: Arrow reads them as int64
#: and float64, so a number beyond the column's range is caught here (beyond int64, Arrow fails)
_NARROW = {
    event: [(path, kind) for path, kind, _ in EVENT_PLANS[event].checks if kind in ("int32", "f32")]
    for event in FAST_EVENTS
}


def _beyond(column: pa.Array, kind: str) -> pa.Array:
    """Where a number is beyond what a column of ``kind`` holds (null where there is none)."""
    if kind == "f32":
        if not pa.types.is_floating(column.type):
            return pa.nulls(len(column), pa.bool_())
        return pc.greater(pc.abs(column), F32_MAX)
    if not pa.types.is_integer(column.type):
        return pa.nulls(len(column), pa.bool_())
    low, high = INT_RANGES[kind]
    return pc.or_(pc.less(column, low), pc.greater(column, high))


def _suspect(event: str, table: pa.Table, fields: _Fields) -> np.ndarray:
    """Rows of one event's table the fast path cannot vouch for: an extra top-level key, null
    data, a missing required field, a NaN / infinite number, another event name."""
    bad = np.zeros(table.num_rows, bool)
    for name in table.column_names:
        if name not in ("event", "data", "seq"):  # an extra top-level key (inferred column)
            bad |= pc.is_valid(table.column(name)).to_numpy(zero_copy_only=False)
    bad |= fields.data.is_null().to_numpy(zero_copy_only=False)
    # Arrow infers what the event's schema does not declare, unchecked: left to the per-frame
    # path, which judges each value, are a field the event does not declare but its tables read
    # (another event's, such as retry_count on a status event: any type, NaN, beyond int64...),
    # any field nested deeper than json.loads goes, and keys a declared object does not declare
    # (kept as Arrow inferred them in an object column such as changes)
    declared = fields.declared
    read = _READ[event]
    for index in range(fields.data.type.num_fields):
        inferred = fields.data.type.field(index)
        position = declared.get_field_index(inferred.name)
        if (position < 0 and inferred.name in read) or _too_deep(inferred.type):
            bad |= fields.data.field(index).is_valid().to_numpy(zero_copy_only=False)
        elif position >= 0 and inferred.type != declared.field(position).type:  # a declared object's extra keys
            known = declared.field(position).type
            for child in range(inferred.type.num_fields):
                if known.get_field_index(inferred.type.field(child).name) < 0:
                    extra = pc.struct_field(fields.data, [index, child])
                    bad |= extra.is_valid().to_numpy(zero_copy_only=False)
    checks = [pc.is_null(fields.get(key)) for key in _REQUIRED.get(event, ())]
    checks += [
        pc.fill_null(pc.invert(pc.is_finite(fields.get(".".join(path)))), False)
        for path in _FLOATS.get(event, ())
    ]
    checks += [pc.fill_null(_beyond(fields.get(path), kind), False) for path, kind in _NARROW[event]]
    checks.append(pc.fill_null(pc.less(table.column("seq").combine_chunks(), 0), False))  # the codec's bad_seq
    # the regex read the first "event" key; a duplicate key would make Arrow fail, but be sure
    checks.append(pc.not_equal(table.column("event").combine_chunks(), event))
    problem = checks[0]
    for check in checks[1:]:
        problem = pc.or_(problem, check)
    return bad | pc.fill_null(problem, True).to_numpy(zero_copy_only=False)


def _too_deep(kind: pa.DataType) -> bool:
    """Whether a type nests lists and structs more than _MAX_DEPTH deep (no live frame does;
    json.loads refuses a frame nested about a thousand deep, so such a frame is its to judge)."""
    stack = [(kind, 0)]
    while stack:
        kind, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return True
        if pa.types.is_struct(kind):
            stack += [(kind.field(i).type, depth + 1) for i in range(kind.num_fields)]
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            stack.append((kind.value_type, depth + 1))
    return False


def _fast_batches(event: str, table: pa.Table, fields: _Fields, keep: np.ndarray,
                  positions: np.ndarray, received: np.ndarray, parsed: Parsed) -> None:
    """A batch per table the event feeds, from the rows of one event's table that passed the
    checks (the store merges the batches of several events by position)."""
    rows = np.flatnonzero(keep)
    take = None if len(rows) == len(keep) else pa.array(rows)

    def pick(array: pa.Array) -> pa.Array:
        return array if take is None else array.take(take)

    pos = positions[rows]
    envelope = {
        "seq": pick(table.column("seq").combine_chunks()),
        "received_at": pa.array(received[pos], TS_TYPE),
        "event": pa.repeat(pa.scalar(event, pa.string()), len(rows)),  # in C: no Python str per row
    }
    for route in EVENT_ROUTES[event]:
        spec = TABLES[route.table]
        columns: dict[str, Any] = {k: v for k, v in envelope.items() if k == "seq" or k in spec.names}
        for column, source in route.fields.items():
            if isinstance(source, str):
                values = pick(fields.get(source))
            else:
                values = pc.coalesce(*(pick(fields.get(path)) for path in source))
            if column in route.defaults:
                values = pc.coalesce(values, pa.scalar(route.defaults[column], values.type))
            if spec.kind(column) == "obj":
                values = values.to_pylist()
                if column == "changes":  # the struct has every metric: keep those sent
                    values = list(map(sent_changes, values))
            columns[column] = values
        for column, default in route.defaults.items():
            if column not in columns:
                columns[column] = pa.array([default] * len(rows), arrow_type(spec.kind(column)))
        if route.table == "metrics":
            for metric in METRIC_NAMES:
                text = pick(fields.get(f"changes.{metric}"))
                number = pc.struct_field(pc.extract_regex(text, _CHANGE_NUMBER), [0])
                columns[f"{metric}_change"] = pc.cast(number, pa.float64())
        counted = np.ones(len(rows), bool) if route.counts else None
        parsed.batches.setdefault(route.table, []).append(Batch(pos, columns, counted))


def _slow_frame(text: Any, position: int, received: int, slow: dict[str, list[tuple[int, dict]]],
                parsed: Parsed) -> tuple[str | None, int | None, str]:
    """Decode one frame the long way; returns its event name, seq and text for the raw table."""
    if isinstance(text, Translated):
        return _translated_frame(text, position, received, slow, parsed)
    decoded = decode(text, check=False)  # the fields are checked once, by event_rows
    message = decoded.message
    event = message.event if message else None
    seq = message.seq if message else None
    text_out = decoded.text
    if not isinstance(text, str) or _unencodable(text_out):
        text_out = text_out.encode("utf-8", "replace").decode("utf-8")
    problems = [(p.kind, p.message) for p in decoded.problems]
    # a frame whose data is no object, or missing with nothing beside it, is kept (raw, errors)
    # but feeds no typed table: an all-null row would count as an event. Keys sent instead of
    # data (run_id, status ... at the top, as servers in the wild do) are the event's fields.
    usable = message is not None and (bool(message.data) or not any(p.kind == "bad_data" for p in decoded.problems))
    _frame_rows(event, seq, message.data if usable and message else None, problems, position, received, slow, parsed)
    return event, seq, text_out


def _translated_frame(frame: Translated, position: int, received: int, slow: dict[str, list[tuple[int, dict]]],
                      parsed: Parsed) -> tuple[str | None, int | None, str]:
    """A foreign dialect's frame: raw keeps it under the server's own name, its published
    events feed the typed tables, its problems (already once per event name) the errors."""
    text_out = frame.text if not _unencodable(frame.text) else frame.text.encode("utf-8", "replace").decode("utf-8")
    problems = [(p.kind, p.message) for p in frame.problems]
    if not frame.messages:
        _frame_rows(frame.event, None, None, problems, position, received, slow, parsed)
    for message in frame.messages:
        _frame_rows(message.event, None, message.data, problems, position, received, slow, parsed, sparse=True)
        problems = []  # described once, with the first event
    return frame.event, None, text_out


def _frame_rows(event: str | None, seq: int | None, data: dict[str, Any] | None, problems: list[tuple[str, str]],
                position: int, received: int, slow: dict[str, list[tuple[int, dict]]], parsed: Parsed,
                sparse: bool = False) -> None:
    """One decoded event's rows, errors rows and event time into ``slow`` and ``parsed``."""
    envelope = {"received_at": received, "seq": seq, "event": event}
    rows: dict[str, dict[str, Any]] = {}
    bad: list[tuple[str, Any, str | None, str | None]] = []
    if data is not None and event is not None:
        rows, bad, missing = event_rows(event, data, sparse=sparse)
        problems = problems + [("missing_field", f"{event}: missing {name!r}") for name in missing]
    if problems:
        # a foreign frame's only problem may be a field (an event time that is no date)
        kind = "field_type" if all(k == "field_type" for k, _ in problems) else "malformed"
        slow.setdefault("errors", []).append(
            (position, {**envelope, "kind": kind, "code": problems[0][0],
                        "message": "; ".join(m for _, m in problems),
                        "details": {"problems": [k for k, _ in problems]}}),
        )
    for path, value, expected, beyond in bad:
        if beyond:  # the right type, but more than the column holds
            problem = f"{_short(value)} is {beyond}"
        else:
            problem = f"expected {expected or 'another type'}, got {type(value).__name__} {_short(value)}"
        slow.setdefault("errors", []).append(
            (position, {**envelope, "kind": "field_type", "code": "field_type",
                        "message": f"{event}.{path}: {problem}",
                        "details": {"field": path, "value": repr(value)[:200]}}),
        )
    for table, row in rows.items():
        slow.setdefault(table, []).append((position, {**envelope, **row}))
    if data is not None:
        when = timestamp_ns(data.get("timestamp") or data.get("server_time"))
        if when is not None and (parsed.now is None or when > parsed.now):
            parsed.now = when


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _slow_batches(slow: dict[str, list[tuple[int, dict]]], parsed: Parsed) -> None:
    for table, items in slow.items():
        spec = TABLES[table]
        positions = np.array([p for p, _ in items], np.int64)
        names = {k for _, row in items for k in row}
        columns: dict[str, Any] = {
            name: [row.get(name) for _, row in items] for name in names if name in spec.kinds or name == "seq"
        }
        counted = owned = None
        if spec.latest:  # which rows count, and which carry each column, by their event
            events = [row["event"] for _, row in items]
            counted = np.array([table in counted_tables(e) for e in events], bool)
            owned = owned_columns(items, columns)
        parsed.batches.setdefault(table, []).append(Batch(positions, columns, counted, owned or {}))


def owned_columns(items: list[tuple[int, dict]], columns: dict[str, Any]) -> dict[str, np.ndarray]:
    """Which rows carry each column (a key present in the row's dict), where not all do."""
    owned = {}
    for name in columns:
        carries = np.array([name in row for _, row in items], bool)
        if not carries.all():
            owned[name] = carries
    return owned


def parse_frames(texts: list[Any] | pa.Array, received: np.ndarray, fast: bool = True, small: int = SMALL_BATCH) -> Parsed:
    """Parse one batch of frames (str text frames, or bytes) received at ``received`` (ns).

    Batches of fewer than ``small`` frames are decoded frame by frame: the batched path costs
    a few milliseconds per batch whatever its size, which a trickle of frames cannot repay.
    ``fast=False`` decodes every frame one by one (the same tables: for comparison).
    """
    n = len(texts)
    parsed = Parsed()
    not_text = None
    if isinstance(texts, pa.Array):  # already Arrow strings (a recording's frames)
        frames = texts if texts.type == pa.string() else texts.cast(pa.string())
        texts = _Texts(frames)
    else:
        text_frames = arrow_texts(texts)
        if text_frames is not None:
            frames = text_frames
        else:  # a binary frame, or a lone surrogate
            not_text = np.array([not isinstance(t, str) or _unencodable(t) for t in texts], bool)
            frames = pa.array([None if bad else t for t, bad in zip(texts, not_text, strict=True)], pa.string())
    names: pa.Array | None = None
    hot_rows = np.empty(0, np.int64)
    if fast and n >= small:
        names = pc.struct_field(pc.extract_regex(frames, _EVENT_NAME), [0])
        # a frame with a raw newline (pretty-printed JSON) breaks Arrow's line-delimited reader:
        # its group fails or counts wrong, and is halved until that frame goes the per-frame way
        hot = pc.fill_null(pc.is_in(names, _FAST_NAMES), False)
        hot_rows = np.flatnonzero(hot.to_numpy(zero_copy_only=False))
    is_slow = np.ones(n, bool)
    raw_seq = np.full(n, -1, np.int64)
    if hot_rows.size:
        for event, positions, table in _parse_fast(frames, names, hot_rows):
            fields = _Fields(table.column("data").combine_chunks(), event)
            keep = ~_suspect(event, table, fields)
            if not keep.any():
                continue
            _fast_batches(event, table, fields, keep, positions, received, parsed)
            is_slow[positions[keep]] = False
            seq_values = pc.fill_null(table.column("seq").combine_chunks(), -1).to_numpy(zero_copy_only=False)
            raw_seq[positions[keep]] = seq_values[keep]
            stamps = pc.max(fields.get("timestamp").filter(pa.array(keep)))
            if stamps.is_valid:
                when = stamps.cast(pa.int64()).as_py()
                if parsed.now is None or when > parsed.now:
                    parsed.now = when
        parsed.fast = int(n - is_slow.sum())
    # event names of the frames the per-frame paths read (the regex's name stands for the rest)
    overrides: dict[int, Any] = {}
    texts_out: list[Any] | None = None
    slow_rows = np.flatnonzero(is_slow)
    if slow_rows.size and fast:
        handled, handled_names, handled_seqs, latest = parse_small(texts, slow_rows, received, parsed.batches)
        for position, event, seq in zip(handled, handled_names, handled_seqs, strict=True):
            overrides[position] = event
            raw_seq[position] = -1 if seq is None else seq
        is_slow[handled] = False
        if latest is not None and (parsed.now is None or latest > parsed.now):
            parsed.now = latest
        parsed.fast += len(handled)
        slow_rows = np.flatnonzero(is_slow)
    if slow_rows.size:
        slow: dict[str, list[tuple[int, dict]]] = {}
        if not_text is not None:
            texts_out = frames.to_pylist()
        for position in slow_rows.tolist():
            name, seq, text = _slow_frame(texts[position], position, int(received[position]), slow, parsed)
            overrides[position] = name  # None for a frame with no event
            raw_seq[position] = -1 if seq is None else seq
            if texts_out is not None:
                texts_out[position] = text
        _slow_batches(slow, parsed)
    if names is None:  # every frame went a per-frame way
        event_column: Any = [overrides.get(position) for position in range(n)]
        parsed.events.update(event_column)
    else:
        event_column = _with_overrides(names, overrides)
        for item in pc.value_counts(event_column).to_pylist():
            parsed.events[item["values"]] += item["counts"]
    parsed.names = event_column
    parsed.seqs = raw_seq
    parsed.raw = Batch(
        np.arange(n, dtype=np.int64),
        {
            "received_at": received,
            "seq": pa.array(raw_seq, pa.int64(), mask=raw_seq < 0),
            "event": event_column,
            "text": frames if texts_out is None else pa.array(texts_out, pa.string()),
        },
    )
    return parsed


def _with_overrides(names: pa.Array, overrides: dict[int, Any]) -> pa.Array:
    """``names`` with the names at some positions replaced (None: no name)."""
    if not overrides:
        return names
    positions = np.fromiter(overrides, np.int64, len(overrides))
    order = np.argsort(positions, kind="stable")
    values = list(overrides.values())
    mask = np.zeros(len(names), bool)
    mask[positions] = True
    replacement = pa.array([values[i] for i in order.tolist()], pa.string())
    return pc.replace_with_mask(names, pa.array(mask), replacement)


class _Texts:
    """The frames of an Arrow array as a read-only sequence of ``str``, each made only when read:
    the per-frame paths read the few frames the batched paths leave them."""

    __slots__ = ("frames",)

    def __init__(self, frames: pa.Array) -> None:
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Any:
        return self.frames[index].as_py()


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
