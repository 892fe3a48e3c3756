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
from datetime import datetime, timezone
from typing import Any

from ..protocol.codec import parse_timestamp
from .schema import EVENT_ROUTES, METRIC_NAMES, TABLES

__all__ = [
    "ERROR_EVENTS",
    "convert",
    "event_rows",
    "get_path",
    "parse_change",
    "timestamp_ns",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LISTS = {"entities", "insights", "tags", "affected_jobs", "updated_fields"}
_DICTS = {"metadata", "changes", "details"}
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%?\s*$")

#: events that become rows of the errors table
ERROR_EVENTS = frozenset({"error", "connection_error"})


def timestamp_ns(value: Any) -> int | None:
    """A protocol timestamp (ISO text, epoch seconds, datetime) -> int nanoseconds UTC, or None."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    else:
        moment = parse_timestamp(value)
        if moment is None:
            return None
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


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
        return (True, value) if isinstance(value, str) else (False, None)
    if kind in ("f64", "f32"):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True, float(value)
        return False, None
    if kind in ("int32", "int64"):
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if isinstance(value, float) and value.is_integer():
            return True, int(value)
        return False, None
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


def event_rows(event: str, data: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], list[tuple[str, Any]]]:
    """The rows one event gives, by table, and the ``(field, value)`` pairs of the wrong type.

    Envelope columns (received_at, seq, event) are left to the caller.
    """
    rows: dict[str, dict[str, Any]] = {}
    bad: dict[str, Any] = {}
    for route in EVENT_ROUTES.get(event, ()):
        spec = TABLES[route.table]
        row: dict[str, Any] = {}
        for column, source in route.fields.items():
            kind = spec.kind(column)
            value = None
            for path in (source,) if isinstance(source, str) else source:
                raw = get_path(data, path)
                ok, converted = convert(kind, column, raw)
                if not ok:
                    bad.setdefault(path, raw)
                if converted is not None:
                    value = converted
                    break
            row[column] = value
        for column, default in route.defaults.items():
            if row.get(column) is None:
                row[column] = default
        if route.table == "metrics":
            changes = row.get("changes") or {}
            for name in METRIC_NAMES:
                row[f"{name}_change"] = parse_change(changes.get(name))
        rows[route.table] = row
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
            "start": timestamp_ns(data.get("timestamp")),
            "details": details if isinstance(details, dict) else None,
        }
    return rows, list(bad.items())
