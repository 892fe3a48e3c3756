"""The Arrow engine: thousands of frames of the frequent events, straight into typed columns.

The batch is one Arrow string array (also the ``raw`` table's text); a regular expression reads
each frame's event name from its first bytes, and the frames of the frequent, fixed-shape events
(:data:`..schema.FAST_EVENTS`) are parsed by Arrow's JSON reader, one call per event against that
event's schema. Arrow releases the GIL while it reads, so the receiving thread goes on. Every
frame it cannot vouch for (a parse error, a wrong type, a missing required field, an extra
top-level key, NaN, a number beyond its column...) is left to the next engine. Each call costs
milliseconds whatever its size, so the dispatcher gives it large batches only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ...arrow_pool import BULK_POOL
from ...protocol.models import SERVER_EVENTS
from ..columns import TS_TYPE, arrow_type
from ..schema import EVENT_ROUTES, FAST_EVENTS, METRIC_NAMES, RANGES, TABLES, beyond
from .batch import Frames
from .plans import EVENT_PLANS, SPEC_KINDS

__all__ = ["FAST_SCHEMA", "USE_THREADS", "ArrowEngine"]

_EVENT_NAME = r'^\s*\{\s*"event"\s*:\s*"(?P<event>[A-Za-z0-9_]+)"\s*,\s*"data"\s*:\s*\{'
#: the Arrow type of each spec kind: its column kind's (a list of strings for str_list)
_ARROW_OF_KIND = {spec: arrow_type(kind) or pa.list_(pa.string()) for spec, kind in SPEC_KINDS.items()
                  if spec not in ("object", "any")}
#: object fields with a fixed shape in practice, parsed as structs by the fast path (a value
#: of another shape makes Arrow fail, and the frame goes to the next engine)
_FIXED_OBJECTS = {"changes": {name: "str" for name in METRIC_NAMES}}
_MAX_DEPTH = 100  # nesting of an undeclared field past which the reference engine judges the frame
_MIN_SPLIT = 16  # a failing group this small goes to the next engine without more halving
#: bytes of frames Arrow reads in one call at most (a larger group is halved): it holds a block's
#: parsed values until it has built the columns, and one event's frames of a backtest's whole
#: history in one batch would be hundreds of MB
_MAX_BLOCK = 64 << 20
USE_THREADS = True  # Arrow's JSON reader releases the GIL: the I/O thread keeps receiving


def _fast_schema() -> tuple[pa.Schema, dict[str, pa.Schema]]:
    """The union of the fast events' fields, and each event's own schema."""
    flat: dict[str, pa.DataType] = {}
    nested: dict[str, dict[str, pa.DataType]] = {}
    narrow: dict[str, pa.Schema] = {}
    for name in sorted(FAST_EVENTS):
        spec = SERVER_EVENTS[name]
        own: list[pa.Field] = []
        for key, kind in spec.fields.items():
            if kind == "object":
                shape = spec.nested.get(key) or _FIXED_OBJECTS[key]
                children = []
                for sub, sub_kind in shape.items():
                    nested.setdefault(key, {})[sub] = _ARROW_OF_KIND[sub_kind]
                    children.append(pa.field(sub, _ARROW_OF_KIND[sub_kind]))
                own.append(pa.field(key, pa.struct(children)))
                continue
            arrow = _ARROW_OF_KIND[kind]
            if flat.setdefault(key, arrow) != arrow:
                raise TypeError(f"field {key!r} has two types among the fast events")
            own.append(pa.field(key, arrow))
        narrow[name] = pa.schema([("event", pa.string()), ("data", pa.struct(own)), ("seq", pa.int64())])
    fields = [pa.field(k, t) for k, t in flat.items()]
    fields += [pa.field(k, pa.struct([pa.field(s, t) for s, t in subs.items()])) for k, subs in nested.items()]
    schema = pa.schema([("event", pa.string()), ("data", pa.struct(fields)), ("seq", pa.int64())])
    return schema, narrow


FAST_SCHEMA, _EVENT_SCHEMAS = _fast_schema()
# each event is parsed against its own fields only: no nulls to fill for the other events' fields
_PARSE = {
    name: pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    for name, schema in _EVENT_SCHEMAS.items()
}
_FAST_NAMES = pa.array(sorted(FAST_EVENTS), pa.string())
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


def _union_type(path: str) -> pa.DataType | None:
    """The Arrow type of a data path in the union of the fast events (None: no fast event has it)."""
    kind: pa.DataType = FAST_SCHEMA.field("data").type
    for part in path.split("."):
        if not pa.types.is_struct(kind) or kind.get_field_index(part) < 0:
            return None
        kind = kind.field(part).type
    return kind


def _read(group: pa.Array, event: str) -> pa.Table | None:
    """Parse frames of one event with Arrow: their text back to back (Arrow reads one object
    after another, newline or not), as one block; None when anything at all goes wrong.

    No newline is added between frames: that was a copy of every frame's text per batch, and
    changes nothing Arrow accepts (a newline between objects is whitespace, as in a frame).
    One block: the frames cannot be split at newlines, and Arrow's output is then one chunk.
    """
    try:
        offsets = np.frombuffer(group.buffers()[1], np.int32, len(group) + 1, group.offset * 4)
        size = int(offsets[-1] - offsets[0])
        if size > _MAX_BLOCK:  # halved by _read_split
            return None
        data = group.buffers()[2].slice(int(offsets[0]), size)
        options = pj.ReadOptions(use_threads=USE_THREADS, block_size=max(1 << 20, size + 1))
        table = pj.read_json(pa.BufferReader(data), read_options=options, parse_options=_PARSE[event],
                             memory_pool=BULK_POOL)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return None
    if table.num_rows != len(group):  # two objects in one frame (and so a frame with none)
        return None
    return table


def _read_split(group: pa.Array, event: str, offset: int, out: list[tuple[int, pa.Table]]) -> None:
    """Parse frames of one event, halving the group around frames Arrow rejects (those are
    left out, and so go to the next engine)."""
    table = _read(group, event)
    if table is not None:
        out.append((offset, table))
        return
    if len(group) <= _MIN_SPLIT:
        return
    half = len(group) // 2
    _read_split(group.slice(0, half), event, offset, out)
    _read_split(group.slice(half), event, offset + half, out)


def _parse_fast(frames: pa.Array, names: pa.Array, rows: np.ndarray) -> list[tuple[str, np.ndarray, pa.Table]]:
    """Parse the frames at ``rows``, event by event: a table per event (per piece when a group
    had to be halved), with the positions of its rows (the store merges tables' rows by them).

    The frames are put in event order in one pass (one ``take``), so that each event's group
    is a zero-copy slice of the result."""
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
    pieces: list[tuple[str, np.ndarray, pa.Table]] = []
    for code, event in enumerate(events):
        start, stop = bounds[code], bounds[code + 1]
        group = ordered[start:stop]
        parsed: list[tuple[int, pa.Table]] = []
        _read_split(grouped.slice(start, stop - start), event, 0, parsed)
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
                # _suspect sent each row holding such a value to the next engine, so the rows
                # kept hold none (and a null of another type may not cast to the column's)
                column = pa.nulls(len(self.data), want or pa.null())
            self.cache[path] = column
        return column


#: per fast event, the data paths feeding a number column: Arrow reads them as int64 and
#: float64, so a number beyond the column's range (or not finite) is caught by the schema's check
_NUMBERS = {
    event: [(path, kind) for path, kind, _ in EVENT_PLANS[event].checks if kind in RANGES]
    for event in FAST_EVENTS
}


def _suspect(event: str, table: pa.Table, fields: _Fields) -> np.ndarray:
    """Rows of one event's table the fast path cannot vouch for: an extra top-level key, null
    data, a missing required field, a NaN / infinite number, another event name."""
    bad = np.zeros(table.num_rows, bool)
    for name in table.column_names:
        if name not in ("event", "data", "seq"):  # an extra top-level key (inferred column)
            bad |= pc.is_valid(table.column(name)).to_numpy(zero_copy_only=False)
    bad |= fields.data.is_null().to_numpy(zero_copy_only=False)
    # Arrow infers what the event's schema does not declare, unchecked: left to the reference
    # engine, which judges each value, are a field the event does not declare but its tables read
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
    checks = [pc.is_null(fields.get(key)) for key in EVENT_PLANS[event].required]
    checks += [pc.fill_null(beyond(kind, fields.get(path)), False) for path, kind in _NUMBERS[event]]
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


def _add_batches(frames: Frames, event: str, table: pa.Table, fields: _Fields, keep: np.ndarray,
                 positions: np.ndarray) -> None:
    """A batch per table the event feeds, from the rows of one event's table that passed the
    checks (the store merges the batches of several events by position)."""
    rows = np.flatnonzero(keep)
    take = None if len(rows) == len(keep) else pa.array(rows)

    def pick(array: pa.Array) -> pa.Array:
        return array if take is None else array.take(take)

    pos = positions[rows]
    envelope = {
        "seq": pick(table.column("seq").combine_chunks()),
        "received_at": pa.array(frames.received[pos], TS_TYPE),
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
            columns[column] = values
        for column, default in route.defaults.items():
            if column not in columns:
                columns[column] = pa.array([default] * len(rows), arrow_type(spec.kind(column)))
        frames.add(route.table, pos, columns, np.ones(len(rows), bool) if route.counts else None)
    seqs = pc.fill_null(envelope["seq"], -1).to_numpy(zero_copy_only=False)
    frames.took(pos, seqs)
    stamps = pc.max(pick(fields.get("timestamp")))
    if stamps.is_valid:
        frames.saw(stamps.cast(pa.int64()).as_py())


class ArrowEngine:
    """The frames of the fast events, one Arrow JSON read per event (see the module docstring)."""

    def parse(self, frames: Frames, rows: np.ndarray) -> np.ndarray:
        if frames.names is None:
            frames.names = pc.struct_field(pc.extract_regex(frames.arrow, _EVENT_NAME), [0])
        # a pretty-printed frame (raw newlines) is read as any other: each group is one block
        names = frames.names if len(rows) == frames.count else frames.names.take(pa.array(rows))
        hot_rows = rows[pc.fill_null(pc.is_in(names, _FAST_NAMES), False).to_numpy(zero_copy_only=False)]
        handled = []
        if hot_rows.size:
            for event, positions, table in _parse_fast(frames.arrow, frames.names, hot_rows):
                fields = _Fields(table.column("data").combine_chunks(), event)
                keep = ~_suspect(event, table, fields)
                if keep.any():
                    _add_batches(frames, event, table, fields, keep, positions)
                    handled.append(positions[keep])
        return np.concatenate(handled) if handled else np.empty(0, np.int64)
