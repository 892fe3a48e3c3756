"""The reference engine: one frame at a time, every value checked, every problem described.

It takes any frame (odd ones, rare events, a foreign dialect's translations) and is the one
that words the errors table's rows; the batched engines leave it every frame they cannot vouch
for, and the tests hold them to its tables. A value of the wrong type becomes a missing value
and is reported, never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...protocol.codec import decode
from ...protocol.dialects import Translated
from ..schema import TABLES, convert, out_of_range, storable, timestamp_ns
from .batch import Frames, owned_columns
from .plans import ERROR_EVENTS, EVENT_PLANS, counted_tables

__all__ = ["ReferenceEngine", "event_rows"]

#: rows decoded so far, by table: (position, row)
_Rows = dict[str, list[tuple[int, dict[str, Any]]]]


_ABSENT = object()


def _get(data: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; ``default`` when any step is missing or not an object."""
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


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
        raw = data.get(path) if "." not in path else _get(data, path)
        if raw is None:
            values[path] = None
            continue
        ok, value = convert(kind, path.rpartition(".")[2], raw)
        if not ok:
            bad.append((path, raw, spec_kind, out_of_range(kind, raw)))
        values[path] = value
    missing = [name for name in plan.required if data.get(name) is None]
    rows: dict[str, dict[str, Any]] = {}
    for table, columns in plan.routes:
        row: dict[str, Any] = {}
        for column, paths, default in columns:
            if sparse and all(_get(data, path, _ABSENT) is _ABSENT for path in paths):
                continue
            value = None
            for path in paths:
                value = values[path]
                if value is not None:
                    break
            row[column] = default if value is None else value
        rows[table] = row
    if event in ERROR_EVENTS:
        code = data.get("code") if isinstance(data.get("code"), str) else None
        if event == "connection_error":
            kind = "connection_error"
        elif code in ("processing_error", "auth_failed"):
            kind = code
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


def _storable(text: str) -> str:
    return text.encode("utf-8", "replace").decode("utf-8") if not storable(text) else text


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


class ReferenceEngine:
    """Every frame it is given, one at a time (see the module docstring)."""

    def parse(self, frames: Frames, rows: np.ndarray) -> np.ndarray:
        decoded: _Rows = {}
        for position in rows.tolist():
            received = int(frames.received[position])
            frame = frames.text(position)
            if isinstance(frame, Translated):
                event, seq, text = self._translated(frame, position, received, decoded, frames)
            else:
                event, seq, text = self._frame(frame, position, received, decoded, frames)
            frames.took([position], [seq], [event], [text])
        for table, items in decoded.items():
            positions = np.array([p for p, _ in items], np.int64)
            kinds = TABLES[table].kinds
            names = {k for _, row in items for k in row}
            columns: dict[str, Any] = {
                name: [row.get(name) for _, row in items] for name in names if name in kinds or name == "seq"
            }
            counted = owned = None
            if TABLES[table].latest:  # which rows count, and which carry each column, by their event
                counted = np.array([table in counted_tables(row["event"]) for _, row in items], bool)
                owned = owned_columns(items, columns)
            frames.add(table, positions, columns, counted, owned)
        return rows

    def _frame(self, text: Any, position: int, received: int, decoded: _Rows,
               frames: Frames) -> tuple[str | None, int | None, str]:
        """Decode one frame; returns its event name, seq and text for the raw table."""
        result = decode(text, check=False)  # the fields are checked once, by event_rows
        message = result.message
        problems = [(p.kind, p.message) for p in result.problems]
        # a frame whose data is no object, or missing with nothing beside it, is kept (raw, errors)
        # but feeds no typed table: an all-null row would count as an event. Keys sent instead of
        # data (run_id, status ... at the top, as servers in the wild do) are the event's fields.
        usable = message is not None and (bool(message.data) or not any(k == "bad_data" for k, _ in problems))
        event = message.event if message else None
        seq = message.seq if message else None
        data = message.data if usable and message else None
        self._rows(event, seq, data, problems, position, received, decoded, frames)
        return event, seq, _storable(result.text)

    def _translated(self, frame: Translated, position: int, received: int, decoded: _Rows,
                    frames: Frames) -> tuple[str | None, int | None, str]:
        """A foreign dialect's frame: raw keeps it under the server's own name, its published
        events feed the typed tables, its problems (already once per event name) the errors."""
        problems = [(p.kind, p.message) for p in frame.problems]
        if not frame.messages:
            self._rows(frame.event, None, None, problems, position, received, decoded, frames)
        for message in frame.messages:
            self._rows(message.event, None, message.data, problems, position, received, decoded, frames, sparse=True)
            problems = []  # described once, with the first event
        return frame.event, None, _storable(frame.text)

    def _rows(self, event: str | None, seq: int | None, data: dict[str, Any] | None,
              problems: list[tuple[str, str]], position: int, received: int, decoded: _Rows,
              frames: Frames, sparse: bool = False) -> None:
        """One decoded event's rows, errors rows and event time."""
        envelope = {"received_at": received, "seq": seq, "event": event}
        rows: dict[str, dict[str, Any]] = {}
        bad: list[tuple[str, Any, str | None, str | None]] = []
        if data is not None and event is not None:
            rows, bad, missing = event_rows(event, data, sparse=sparse)
            problems = problems + [("missing_field", f"{event}: missing {name!r}") for name in missing]
        errors: list[tuple[int, dict[str, Any]]] = []
        if problems:
            # a foreign frame's only problem may be a field (an event time that is no date)
            kind = "field_type" if all(k == "field_type" for k, _ in problems) else "malformed"
            errors.append((position, {**envelope, "kind": kind, "code": problems[0][0],
                                      "message": "; ".join(m for _, m in problems),
                                      "details": {"problems": [k for k, _ in problems]}}))
        for path, value, expected, why in bad:
            if why:  # the right type, but more than the column holds
                problem = f"{_short(value)} is {why}"
            else:
                problem = f"expected {expected or 'another type'}, got {type(value).__name__} {_short(value)}"
            errors.append((position, {**envelope, "kind": "field_type", "code": "field_type",
                                      "message": f"{event}.{path}: {problem}",
                                      "details": {"field": path, "value": repr(value)[:200]}}))
        if errors:
            decoded.setdefault("errors", []).extend(errors)
        for table, row in rows.items():
            decoded.setdefault(table, []).append((position, {**envelope, **row}))
        if data is not None:
            frames.saw(timestamp_ns(data.get("timestamp") or data.get("server_time")))
