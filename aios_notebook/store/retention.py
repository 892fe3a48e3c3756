"""Retention: how many rows, and how old, each table may keep.

``EventStore(retention={"job_events": "7d", "raw": 1_000_000})``: a number is a row limit, a
duration (``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, a ``timedelta``) an age limit, and
``{"rows": N, "age": "7d"}`` (or a ``(rows, age)`` pair) both. ``None`` lifts the limit.
Append-only tables drop their oldest rows (by arrival); latest-state tables keep every entity
unless told otherwise, and then keep the most recently updated ones.

Ages are measured on event time (``store.now``) for tables of events, and on the store's clock
for ``raw`` and ``errors``, whose time is when a frame was received.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..exceptions import ConfigurationError
from .schema import TABLES

__all__ = ["DEFAULT_RETENTION", "Limit", "parse_duration", "parse_retention"]

#: bounded defaults: a notebook left running for hours stays within a few hundred MB
DEFAULT_RETENTION: Mapping[str, Any] = {
    "raw": 1_000_000,
    "job_events": 2_000_000,
    "agent_events": 2_000_000,
    "dag_step_events": 2_000_000,
    "errors": 100_000,
    "insights": 200_000,
    "metrics": 500_000,
}

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


@dataclass(frozen=True)
class Limit:
    """The retention of one table: at most ``rows`` rows, none older than ``age_ns``."""

    rows: int | None = None
    age_ns: int | None = None


def parse_duration(value: Any, table: str = "") -> int:
    """A duration (``"7d"``, ``timedelta``, seconds) -> nanoseconds."""
    where = f"retention of {table!r}: " if table else ""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ConfigurationError(f"{where}cannot read duration {value!r} (e.g. '7d', '12h', '30m', '90s')")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    elif hasattr(value, "total_seconds"):  # pandas Timedelta
        seconds = value.total_seconds()
    else:
        raise ConfigurationError(f"{where}expected a duration, got {type(value).__name__} {value!r}")
    if seconds <= 0:
        raise ConfigurationError(f"{where}a duration must be positive, got {value!r}")
    return int(seconds * 1e9)


def _rows(value: Any, table: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"retention of {table!r}: rows must be a whole number >= 0, got {value!r}")
    return value


def _limit(value: Any, table: str) -> Limit | None:
    if value is None:
        return None
    if isinstance(value, Limit):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"rows", "age"}
        if unknown:
            raise ConfigurationError(f"retention of {table!r}: unknown keys {sorted(unknown)} (use 'rows', 'age')")
        rows = value.get("rows")
        age = value.get("age")
        return Limit(None if rows is None else _rows(rows, table), None if age is None else parse_duration(age, table))
    if isinstance(value, tuple) and len(value) == 2:
        return _limit({"rows": value[0], "age": value[1]}, table)
    if isinstance(value, int) and not isinstance(value, bool):
        return Limit(rows=_rows(value, table))
    return Limit(age_ns=parse_duration(value, table))


def parse_retention(retention: Mapping[str, Any] | None) -> dict[str, Limit]:
    """The user's retention merged over :data:`DEFAULT_RETENTION`; bad entries are named."""
    if retention is not None and not isinstance(retention, Mapping):
        raise ConfigurationError(f"retention must be a dict of table -> limit, got {type(retention).__name__}")
    merged = {**DEFAULT_RETENTION, **(retention or {})}
    limits: dict[str, Limit] = {}
    for table, value in merged.items():
        if table not in TABLES:
            raise ConfigurationError(f"retention: unknown table {table!r} (tables: {', '.join(TABLES)})")
        limit = _limit(value, table)
        if limit is not None and (limit.rows is not None or limit.age_ns is not None):
            limits[table] = limit
    return limits
