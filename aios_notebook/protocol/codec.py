"""Frames <-> messages. Lenient on the way in: a described problem, never an exception.

``decode`` turns whatever arrived (text, bytes, garbage) into a :class:`Decoded`: the message when
one could be read, plus the problems found. Servers in the wild drift from the document
(PROTOCOL_NOTES.md, last section), so a frame with problems may still carry a usable message:
``run_id`` beside ``data`` is folded into it, a missing ``data`` becomes ``{}``, and so on. Only
frames that cannot be read as an event at all give ``message=None``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .models import CLIENT_EVENTS, SERVER_EVENTS, EventSpec, FieldKind

__all__ = [
    "Decoded",
    "Message",
    "Problem",
    "check_fields",
    "decode",
    "encode",
    "finite_number",
    "format_timestamp",
    "parse_timestamp",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One protocol message: ``{"event": event, "data": data, "seq": seq}``.

    ``extra`` holds any other top-level keys a server sent (kept so nothing is lost).
    """

    event: str
    data: dict[str, Any]
    seq: int | None = None
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a frame.

    ``kind`` is one of: binary_frame, not_json, not_object, missing_event, unknown_event,
    bad_data, extra_keys, bad_seq, missing_field, field_type.
    """

    kind: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class Decoded:
    """The outcome of :func:`decode`: the message (or None) and what was wrong."""

    text: str
    message: Message | None
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when the frame is a clean, known message."""
        return self.message is not None and not self.problems

    def describe(self) -> str:
        """One line naming every problem."""
        return "; ".join(p.message for p in self.problems)


_KNOWN = {"server": SERVER_EVENTS, "client": CLIENT_EVENTS}
_ENVELOPE = {"event", "data", "seq"}
_SEQ_LIMIT = 2**63  # seqs are kept as int64
_SNIPPET = 80


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def decode(frame: str | bytes | bytearray | memoryview, *, sender: str = "server",
           check: bool = True) -> Decoded:
    """Read one frame. Never raises.

    Args:
        frame: what arrived; bytes are a binary frame (a problem, but decoded if UTF-8 JSON).
        sender: ``"server"`` (the client reads) or ``"client"`` (the server reads): which
            message names are known.
        check: also check the fields of known events against the spec (``check_fields``).
    """
    problems: list[Problem] = []
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raw = bytes(frame)
        problems.append(Problem("binary_frame", f"binary frame of {len(raw)} bytes"))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Decoded(raw.decode("utf-8", "replace"), None, tuple(problems))
    elif isinstance(frame, str):
        text = frame
    else:
        return Decoded(repr(frame), None, (Problem("not_json", f"not a frame: {type(frame).__name__}"),))
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problems.append(Problem("not_json", f"not JSON ({exc.__class__.__name__}): {_snippet(text)!r}"))
        return Decoded(text, None, tuple(problems))
    if not isinstance(obj, dict):
        problems.append(Problem("not_object", f"JSON {type(obj).__name__}, not an object"))
        return Decoded(text, None, tuple(problems))
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        problems.append(Problem("missing_event", "no 'event' name in the frame", "event"))
        return Decoded(text, None, tuple(problems))
    message, more = _envelope(obj, event, sender, check)
    problems.extend(more)
    return Decoded(text, message, tuple(problems))


def _envelope(obj: dict[str, Any], event: str, sender: str, check: bool) -> tuple[Message, list[Problem]]:
    problems: list[Problem] = []
    known = _KNOWN.get(sender, SERVER_EVENTS)
    if event not in known:
        problems.append(Problem("unknown_event", f"unknown event {event!r}", "event"))
    data = obj.get("data")
    if data is None:
        if "data" in obj:
            problems.append(Problem("bad_data", f"{event}: 'data' is null", "data"))
        else:
            problems.append(Problem("bad_data", f"{event}: no 'data'", "data"))
        data = {}
    elif not isinstance(data, dict):
        problems.append(Problem("bad_data", f"{event}: 'data' is {type(data).__name__}, not an object", "data"))
        data = {}
    extra = None
    if len(obj) > 2 or "data" not in obj:
        extra = {k: v for k, v in obj.items() if k not in _ENVELOPE}
        if extra:
            problems.append(Problem("extra_keys", f"{event}: extra top-level keys {sorted(extra)}"))
            # servers in the wild put run_id / timestamp / message beside data: fold them in
            data = {**{k: v for k, v in extra.items() if k not in data}, **data}
        else:
            extra = None
    seq = obj.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
        problems.append(Problem("bad_seq", f"{event}: seq {seq!r} is not an integer", "seq"))
        seq = None
    elif seq is not None and not 0 <= seq < _SEQ_LIMIT:  # no 64-bit integer holds it, or negative
        shown = str(seq) if len(str(seq)) <= 40 else f"{str(seq)[:20]}... ({len(str(seq))} digits)"
        why = "out of range" if abs(seq) >= _SEQ_LIMIT else "negative (a seq counts up from 0)"
        problems.append(Problem("bad_seq", f"{event}: seq {shown} is {why}", "seq"))
        seq = None
    if check and event in known and sender == "server":
        problems.extend(check_fields(SERVER_EVENTS[event], data))
    return Message(event, data, seq, extra), problems


def finite_number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, NaN, an infinity, or an integer
    beyond a float's range (``float()`` and ``math.isfinite`` raise OverflowError on those)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _kind_ok(kind: FieldKind, value: Any) -> bool:
    if value is None:
        return True  # null is "missing", not a wrong type
    if kind in ("str", "id", "category"):
        return isinstance(value, str)
    if kind == "int":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "float":
        return finite_number(value) is not None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "timestamp":
        return parse_timestamp(value) is not None
    if kind == "str_list":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "object":
        return isinstance(value, dict)
    return True


def check_fields(spec: EventSpec, data: Mapping[str, Any]) -> list[Problem]:
    """Problems with the fields of ``data`` against ``spec`` (missing required, wrong kinds)."""
    problems = [
        Problem("missing_field", f"{spec.name}: missing {name!r}", name)
        for name in spec.required
        if data.get(name) is None
    ]
    for name, kind in spec.fields.items():
        value = data.get(name)
        if not _kind_ok(kind, value):
            problems.append(
                Problem("field_type", f"{spec.name}.{name}: expected {kind}, got {type(value).__name__} {_short(value)}", name)
            )
        elif kind == "object" and value is not None and name in spec.nested:
            for sub, sub_kind in spec.nested[name].items():
                sub_value = value.get(sub)
                if not _kind_ok(sub_kind, sub_value):
                    problems.append(
                        Problem("field_type", f"{spec.name}.{name}.{sub}: expected {sub_kind}, got {type(sub_value).__name__} {_short(sub_value)}", f"{name}.{sub}")
                    )
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def encode(event: str, data: Mapping[str, Any] | None = None, seq: int | None = None) -> str:
    """One message as a compact JSON text frame (``seq`` only when given)."""
    if seq is None:
        return json.dumps({"event": event, "data": data or {}}, separators=(",", ":"), default=_default)
    return json.dumps({"event": event, "data": data or {}, "seq": seq}, separators=(",", ":"), default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def format_timestamp(moment: datetime | float, *, microseconds: bool = False) -> str:
    """UTC ISO 8601 with a trailing ``Z``: milliseconds (the protocol's form) or ``microseconds``."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(float(moment), tz=timezone.utc)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    else:
        moment = moment.astimezone(timezone.utc)
    if microseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: Any) -> datetime | None:
    """ISO 8601 (``Z``, an offset, or naive = UTC) or epoch seconds -> aware UTC datetime; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = finite_number(value)
        if seconds is None:
            return None
        if seconds > 1e11:  # milliseconds, as some servers send
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
