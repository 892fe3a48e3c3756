"""One message -> table rows, field by field, for the per-frame path (odd frames, rare events,
snapshots and local insights).

Every value is checked against its column's kind: a value of the wrong type becomes a missing
value and is reported (``bad``), never an exception. The batched Arrow path in
:mod:`.parsing` gives the same rows for well-formed frames; this is the reference it must match.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..protocol.codec import finite_number, parse_timestamp
from ..protocol.models import SERVER_EVENTS
from .columns import F32_MAX, INT_RANGES
from .schema import EVENT_ROUTES, METRIC_NAMES, TABLES

__all__ = [
    "DICT_FIELDS",
    "ERROR_EVENTS",
    "EVENT_PLANS",
    "LIST_FIELDS",
    "TIMESTAMP_CACHE",
    "check_value",
    "convert",
    "counted_tables",
    "event_rows",
    "get_path",
    "out_of_range",
    "parse_change",
    "sent_changes",
    "timestamp_ns",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: object columns that hold lists of strings / dicts (any other object column takes any value)
LIST_FIELDS = frozenset({"entities", "insights", "tags", "affected_jobs", "updated_fields"})
DICT_FIELDS = frozenset({"metadata", "changes", "details"})
_LISTS, _DICTS = LIST_FIELDS, DICT_FIELDS
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%?\s*$")

#: events that become rows of the errors table
ERROR_EVENTS = frozenset({"error", "connection_error"})


def timestamp_ns(value: Any) -> int | None:
    """A protocol timestamp (ISO text, epoch seconds, datetime) -> int nanoseconds UTC, or None."""
    if isinstance(value, datetime):
        moment: datetime | None = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    else:
        moment = parse_timestamp(value)
    if moment is None:
        return None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _absent(data: Mapping[str, Any], path: str) -> bool:
    head, _, rest = path.partition(".")
    if head not in data:
        return True
    return bool(rest) and not (isinstance(data[head], Mapping) and not _absent(data[head], rest))


def get_path(data: Mapping[str, Any], path: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; None when any step is missing or not an object."""
    if "." not in path:
        return data.get(path)
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def convert(kind: str, column: str, value: Any) -> tuple[bool, Any]:
    """``(ok, value)`` for one column value: ``(True, None)`` for a missing value, ``(False,
    None)`` for a value of the wrong type."""
    if value is None:
        return True, None
    if kind in ("cat", "text"):
        return (True, value) if isinstance(value, str) and _utf8(value) else (False, None)
    if kind in ("f64", "f32"):
        number = finite_number(value)
        if number is None or (kind == "f32" and abs(number) > F32_MAX):
            return False, None
        return True, number
    if kind in ("int32", "int64"):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            return False, None
        low, high = INT_RANGES[kind]
        return (True, value) if low <= value <= high else (False, None)
    if kind == "ts":
        ns = timestamp_ns(value)
        return (ns is not None, ns)
    if kind == "bool":
        return (True, value) if isinstance(value, bool) else (False, None)
    if column in _LISTS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return (True, value) if ok else (False, None)
    if column in _DICTS:
        return (True, value) if isinstance(value, dict) else (False, None)
    return True, value


def _utf8(text: str) -> bool:
    """Whether a text can be stored (a lone surrogate, which JSON escapes allow, cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def out_of_range(kind: str, value: Any) -> str | None:
    """Why a number of the right type is still a wrong value for a column of ``kind`` (for the
    errors row's message), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind in INT_RANGES and isinstance(value, int):
        low, high = INT_RANGES[kind]
        return None if low <= value <= high else f"beyond {kind}'s range"
    if kind in ("f64", "f32") and isinstance(value, int) and finite_number(value) is None:
        return "beyond a float's range"
    if kind == "f32" and finite_number(value) is not None and abs(value) > F32_MAX:
        return "beyond float32's range"
    return None


def parse_change(value: Any) -> float:
    """A dashboard change ("+5", "+0.2", "-3%", 4) as a number; NaN when unreadable."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _NUMBER.match(value)
        if match:
            return float(match.group(1))
    return math.nan


# -- per-event plans: what to check and where each column comes from ----------------------------
_SPEC_KIND_TO_COLUMN = {
    "str": "text", "id": "cat", "category": "cat", "int": "int64", "float": "f64", "bool": "bool",
    "timestamp": "ts", "str_list": "obj", "object": "obj", "any": "obj",
}


@dataclass(frozen=True)
class _EventPlan:
    """For one event: the data paths to check (with the column kind their values take, the
    spec's kind for the message), the required fields, and each route's columns."""

    checks: tuple[tuple[str, str, str | None], ...]  # (path, column kind, spec kind or None)
    required: tuple[str, ...]
    routes: tuple[tuple[str, tuple[tuple[str, tuple[str, ...], Any], ...]], ...]
    counted: tuple[str, ...]


def _plan(event: str) -> _EventPlan:
    spec = SERVER_EVENTS.get(event)
    checks: dict[str, tuple[str, str | None]] = {}
    if spec is not None:
        for name, kind in spec.fields.items():
            if kind == "object" and name in spec.nested:
                for sub, sub_kind in spec.nested[name].items():
                    checks[f"{name}.{sub}"] = (_SPEC_KIND_TO_COLUMN[sub_kind], sub_kind)
            checks[name] = (_SPEC_KIND_TO_COLUMN[kind], kind)
    routes = []
    counted = []
    for route in EVENT_ROUTES.get(event, ()):
        table = TABLES[route.table]
        columns = []
        for column, source in route.fields.items():
            paths = (source,) if isinstance(source, str) else tuple(source)
            for path in paths:  # a path the spec does not name is checked as its column's kind
                checks.setdefault(path, (table.kind(column), None))
            columns.append((column, paths, route.defaults.get(column)))
        columns += [(c, (), d) for c, d in route.defaults.items() if c not in route.fields]
        routes.append((route.table, tuple(columns)))
        if route.counts:
            counted.append(route.table)
    # a path is checked against the narrowest column it feeds: an int the spec allows that an
    # int32 column cannot hold is a wrong value there, not a silent missing one
    wider = {"int32": "int64", "f32": "f64"}
    for table_name, routed in routes:
        for column, paths, _ in routed:
            narrow = TABLES[table_name].kind(column)
            for path in paths:
                checked, spec_kind = checks[path]
                if narrow in wider and checked == wider[narrow]:
                    checks[path] = (narrow, spec_kind)
    return _EventPlan(
        tuple((path, kind, spec_kind) for path, (kind, spec_kind) in checks.items()),
        tuple(sorted(spec.required)) if spec is not None else (),
        tuple(routes),
        tuple(counted),
    )


EVENT_PLANS = {event: _plan(event) for event in {*SERVER_EVENTS, *EVENT_ROUTES}}


def sent_changes(changes: Any) -> Any:
    """A metrics ``changes`` object without the keys sent as null: Arrow's structs (the batched
    path) cannot tell those from absent ones, so every path drops them."""
    if isinstance(changes, dict) and None in changes.values():
        return {k: v for k, v in changes.items() if v is not None}
    return changes


def check_value(kind: str, column: str, value: Any) -> tuple[bool, Any]:
    """Like :func:`convert`, faster for the common cases (and cached for timestamp texts)."""
    # the common cases first, without a function call per isinstance
    cls = type(value)
    if kind in ("cat", "text"):
        return (True, value) if cls is str and _utf8(value) else (False, None)
    if kind in ("f64", "f32"):
        if cls is float and math.isfinite(value) and (kind == "f64" or abs(value) <= F32_MAX):
            return True, value
        return convert(kind, column, value)  # ints, and the wrong values it describes
    if kind == "ts" and cls is str:
        return _timestamp_text(value)
    return convert(kind, column, value)


def _timestamp_text(text: str) -> tuple[bool, int | None]:
    ns = TIMESTAMP_CACHE.get(text)
    if ns is None:
        ns = timestamp_ns(text)
        if ns is None:
            return False, None
        if len(TIMESTAMP_CACHE) > 50_000:  # job start times repeat in every status event
            TIMESTAMP_CACHE.clear()
        TIMESTAMP_CACHE[text] = ns
    return True, ns


#: timestamp text -> ns (job start times repeat in every status event of the job)
TIMESTAMP_CACHE: dict[str, int] = {}


def event_rows(event: str, data: Mapping[str, Any], *, sparse: bool = False) -> tuple[dict[str, dict[str, Any]], list[tuple[str, Any, str | None, str | None]], list[str]]:
    """The rows one event gives, by table; the ``(field, value, spec kind, why)`` of each wrong
    value (``why``: beyond the column's range, or None for a wrong type); the required fields
    that are missing.

    ``sparse``: leave out the columns none of whose fields the event has (a translated event of a
    foreign dialect says less than the published one: what it does not say must not blank a
    latest-state column another event set).

    Envelope columns (received_at, seq, event) are left to the caller.
    """
    plan = EVENT_PLANS.get(event)
    if plan is None:
        return {}, [], []
    values: dict[str, Any] = {}
    bad: list[tuple[str, Any, str | None, str | None]] = []
    for path, kind, spec_kind in plan.checks:
        raw = data.get(path) if "." not in path else get_path(data, path)
        if raw is None:
            values[path] = None
            continue
        ok, value = check_value(kind, path.rpartition(".")[2], raw)
        if not ok:
            bad.append((path, raw, spec_kind, out_of_range(kind, raw)))
        values[path] = value
    missing = [name for name in plan.required if data.get(name) is None]
    rows: dict[str, dict[str, Any]] = {}
    for table, columns in plan.routes:
        row: dict[str, Any] = {}
        for column, paths, default in columns:
            if sparse and all(_absent(data, path) for path in paths):
                continue
            value = None
            for path in paths:
                value = values[path]
                if value is not None:
                    break
            row[column] = default if value is None else value
        if table == "metrics":
            row["changes"] = sent_changes(row.get("changes"))
            changes = row["changes"] or {}
            for name in METRIC_NAMES:
                row[f"{name}_change"] = parse_change(changes.get(name))
        rows[table] = row
    if event in ERROR_EVENTS:
        code = data.get("code") if isinstance(data.get("code"), str) else None
        if event == "connection_error":
            kind = "connection_error"
        elif code == "processing_error":
            kind = "processing_error"
        elif code == "auth_failed":
            kind = "auth_failed"
        else:
            kind = "server_error"
        message = data.get("message")
        details = data.get("details")
        rows["errors"] = {
            "kind": kind,
            "code": code,
            "message": message if isinstance(message, str) else None,
            "start": values.get("timestamp"),
            "details": details if isinstance(details, dict) else None,
        }
    return rows, bad, missing


def counted_tables(event: str) -> tuple[str, ...]:
    """The tables whose counter column counts ``event``."""
    plan = EVENT_PLANS.get(event)
    return plan.counted if plan is not None else ()
