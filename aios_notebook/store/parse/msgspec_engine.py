"""The msgspec engine: well-formed frames without Arrow, decoded frame by frame, checked column
by column.

Arrow costs a few milliseconds per call whatever the batch's size, which a trickle of frames (a
live stream read often) cannot repay. Here each frame's envelope is read with msgspec (its
``data`` left as raw JSON), frames are grouped by event, each group's data is read into a Struct
of the fields the event's tables use, and each field is checked for a whole group at once
(``set(map(type, column))`` is usually all it takes). A frame with anything odd about it (an
extra top-level key, a wrong type, a missing required field, an error event) is left to the
reference engine, which describes the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np

from ..schema import DICT_FIELDS, LIST_FIELDS, RANGES, TABLES, TIMESTAMP_CACHE, beyond, convert
from .batch import Frames
from .plans import ERROR_EVENTS, EVENT_PLANS

__all__ = ["MsgspecEngine"]

_NONE = type(None)
#: the Python type JSON gives a well-formed value of a column kind: msgspec checks it while decoding
_TYPES: dict[str, type] = {"cat": str, "text": str, "int32": int, "int64": int, "bool": bool, "f64": float, "f32": float}
#: the types of a group's values that need no check one by one (numbers: but their range)
_FINE_TYPES = {kind: {python, _NONE} for kind, python in _TYPES.items() if python is not float}


class _Envelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A frame's top level: any other key sends the frame to the reference engine (which reports it)."""

    event: str
    data: msgspec.Raw
    seq: Annotated[int, msgspec.Meta(ge=0, le=RANGES["int64"][1])] | None = None  # else per frame: negative, out of range


#: decoders read JSON exactly as ``json.loads`` does, or fail (NaN, 1e400, a lone surrogate):
#: such a frame goes to the reference engine, which describes it
_ENVELOPE = msgspec.json.Decoder(_Envelope)


def _data_decoder(event: str) -> tuple[msgspec.json.Decoder, tuple[str, ...], frozenset[str]]:
    """A decoder of one event's ``data`` into a Struct of the top-level fields its plan reads,
    those fields, and which of them the decoder checks itself.

    A field whose kind has one JSON type (text, integer, boolean, number; objects for dict
    fields) is typed in the Struct, so a wrong type fails the decoding and the frame goes to the
    reference engine, as the checks below would send it, without a check in Python. Typed only
    when every column the field feeds reads it the same way (an int read as a float would
    become one). Other fields (timestamps, nested objects, lists) are read as JSON gives them
    and checked below."""
    plan = EVENT_PLANS[event]
    heads = tuple(dict.fromkeys([*(path.partition(".")[0] for path, _, _ in plan.checks), *plan.required]))
    fed: dict[str, set[Any]] = {}  # field -> the Python types of the columns it feeds
    for table, columns in plan.routes:
        for column, paths, _ in columns:
            kind = TABLES[table].kind(column)
            for path in paths:
                fed.setdefault(path, set()).add(_TYPES.get(kind, dict if kind == "obj" else None))
    typed: dict[str, Any] = {}
    for path, kind, _ in plan.checks:
        python = _TYPES.get(kind) or (dict if kind == "obj" and path in DICT_FIELDS else None)
        if python is not None and "." not in path and fed.get(path, {python}) == {python}:
            typed[path] = _bounded(kind, python) | None
    fields = [(f"f{i}", typed.get(head, Any), None) for i, head in enumerate(heads)]  # keys need not be identifiers
    renames = {f"f{i}": head for i, head in enumerate(heads)}
    struct = msgspec.defstruct(f"_{event}_data", fields, rename=renames, gc=False)
    return msgspec.json.Decoder(struct), heads, frozenset(typed)


def _bounded(kind: str, python: type) -> Any:
    """The Struct type of a field of ``kind``: a number beyond what its column holds fails the
    decoding, as a wrong type does (the reference engine then describes it)."""
    if kind in ("int32", "int64", "f32"):
        low, high = RANGES[kind]
        return Annotated[python, msgspec.Meta(ge=low, le=high)]
    return python


class _Reading:
    """What reading one event's group takes, worked out once per event rather than per batch:
    the data decoder, a getter per top-level field, and per checked path its parent field,
    the key within it (nested paths) and the column kind."""

    def __init__(self, event: str) -> None:
        self.decode, self.heads, typed = _DATA[event]
        self.getters = [(head, attrgetter(f"f{i}")) for i, head in enumerate(self.heads)]
        plan = EVENT_PLANS[event]
        self.typed = [path for path, _, _ in plan.checks if path in typed]
        self.checks = [(path, *path.partition(".")[::2], kind) for path, kind, _ in plan.checks if path not in typed]
        self.required = plan.required
        self.routes = [
            (table, TABLES[table].kinds, columns, table in plan.counted) for table, columns in plan.routes
        ]
        self.empty: Any = None  # a Struct of no field, for data that failed to decode



_DATA = {event: _data_decoder(event) for event in EVENT_PLANS if event not in ERROR_EVENTS}
_READINGS = {event: _Reading(event) for event in _DATA}


def _envelope(text: Any) -> _Envelope | None:
    """A frame's envelope, or None for a frame the reference engine must describe."""
    if type(text) is not str:
        return None
    try:
        return _ENVELOPE.decode(text)
    except (ValueError, UnicodeError, RecursionError):  # msgspec.DecodeError is a ValueError
        return None


def _timestamps(values: list[Any]) -> tuple[list[Any], list[bool] | None]:
    known = TIMESTAMP_CACHE.get
    out = [known(v) if type(v) is str else None for v in values]  # texts seen before
    if out.count(None) == values.count(None):  # every text known (a None in values is one in out)
        return out, None
    bad = None
    for i, (value, ns) in enumerate(zip(values, out, strict=True)):
        if value is not None and ns is None:  # new texts, epoch numbers, wrong types
            ok, ns = convert("ts", "", value)
            out[i] = ns
            if not ok:
                bad = bad or [False] * len(values)
                bad[i] = True
    return out, bad


def _column(kind: str, name: str, values: list[Any]) -> tuple[list[Any], list[bool] | None]:
    """Checked values of one field over a group, and which rows are bad (None: none)."""
    if kind == "ts":
        return _timestamps(values)
    types = set(map(type, values))
    fine = _FINE_TYPES.get(kind)
    if fine is not None and types <= fine and (int not in types or not beyond(kind, values).any()):
        return values, None
    if kind in ("f64", "f32") and types <= {float, int, _NONE} and not beyond(kind, values).any():
        return values, None
    if types == {_NONE}:
        return values, None
    if kind == "obj" and ((name not in LIST_FIELDS and name not in DICT_FIELDS)
                          or (name in DICT_FIELDS and types <= {dict, _NONE})):
        return values, None  # what convert() accepts of these, without a call per value
    checked = [(True, None) if v is None else convert(kind, name, v) for v in values]
    bad = [not ok for ok, _ in checked]
    return [v for _, v in checked], bad if any(bad) else None


class MsgspecEngine:
    """The well-formed frames of the events with a plan, grouped by event (see the module docstring)."""

    def parse(self, frames: Frames, rows: np.ndarray) -> np.ndarray:
        positions_in = rows.tolist()
        chosen = list(map(frames.text, positions_in))
        messages: list[Any] | None = None
        if set(map(type, chosen)) <= {str}:
            try:  # the usual case, every frame well-formed: one loop in C
                messages = list(map(_ENVELOPE.decode, chosen))
            except (ValueError, UnicodeError, RecursionError):  # msgspec.DecodeError is a ValueError
                messages = None
        if messages is None:  # some frame is odd: read them one by one, leaving the odd ones out
            messages = [_envelope(text) for text in chosen]
        groups: dict[str, tuple[list[int], list[Any], list[int | None]]] = {}
        for position, message in zip(positions_in, messages, strict=True):
            if message is None or message.event not in _DATA:
                continue
            group = groups.get(message.event)
            if group is None:
                group = groups[message.event] = ([], [], [])
            group[0].append(position)
            group[1].append(message.data)
            group[2].append(message.seq)
        handled: list[int] = []
        for event, (positions, raws, seqs) in groups.items():
            handled += self._group(frames, event, positions, raws, seqs)
        return np.array(handled, np.int64)

    def _group(self, frames: Frames, event: str, positions: list[int], raws: list[Any],
               group_seqs: list[int | None]) -> list[int]:
        """Decode and check one event's frames; returns the positions kept."""
        reading = _READINGS[event]
        decode = reading.decode.decode
        bad_rows: set[int] = set()  # rows of the group the reference engine must take
        try:
            datas: list[Any] = list(map(decode, raws))
        except (ValueError, RecursionError):  # not an object, or a value JSON cannot be
            if reading.empty is None:
                reading.empty = decode(b"{}")
            datas = []
            for index, raw in enumerate(raws):
                try:
                    datas.append(decode(raw))
                except (ValueError, RecursionError):  # its columns read as nones meanwhile
                    datas.append(reading.empty)
                    bad_rows.add(index)
        # the top-level columns, each read once; a field no frame of the group has is all None
        tops: dict[str, list[Any]] = {head: list(map(get, datas)) for head, get in reading.getters}
        values: dict[str, list[Any]] = {path: tops[path] for path in reading.typed}  # checked by msgspec
        for path, head, tail, kind in reading.checks:
            parent = tops[head]  # a nested field's values come from its parent objects
            column = [p.get(tail) if type(p) is dict else None for p in parent] if tail else parent
            values[path], bad = _column(kind, tail or head, column)
            if bad is not None:
                bad_rows.update(i for i, b in enumerate(bad) if b)
        for name in reading.required:
            column = tops[name]
            if None in column:
                bad_rows.update(i for i, v in enumerate(column) if v is None)
        if len(bad_rows) == len(raws):
            return []
        kept: Callable[[list[Any]], list[Any]]  # the rows of a column that stay with this engine
        if bad_rows:
            keep = [i not in bad_rows for i in range(len(raws))]

            def kept(column: list[Any], keep: list[bool] = keep) -> list[Any]:
                return [v for v, k in zip(column, keep, strict=True) if k]
        else:
            def kept(column: list[Any]) -> list[Any]:
                return column

        kept_positions = kept(positions)
        position_array = np.array(kept_positions, np.int64)
        seqs = kept(group_seqs)
        count = len(seqs)
        stamps = [v for v in kept(values.get("timestamp") or values.get("server_time") or []) if v is not None]
        if stamps:
            frames.saw(max(stamps))
        received = frames.received[position_array].tolist()
        events = [event] * count
        for table, kinds, columns, counts in reading.routes:
            out: dict[str, Any] = {"received_at": received} if "received_at" in kinds else {}
            out["seq"] = seqs
            if "event" in kinds:
                out["event"] = events
            for target, paths, default in columns:
                if not paths:
                    merged: list[Any] = [None] * count
                elif len(paths) == 1:
                    merged = kept(values[paths[0]])
                else:  # the first present of several paths
                    parts = [kept(values[p]) for p in paths]
                    merged = [next((v for v in items if v is not None), None) for items in zip(*parts, strict=True)]
                if default is not None:
                    merged = [default if v is None else v for v in merged]
                out[target] = merged
            frames.add(table, position_array, out, np.ones(count, bool) if counts else None)
        frames.took(kept_positions, seqs, events)
        return kept_positions
