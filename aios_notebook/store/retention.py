"""Retention: how many rows, and how old, each table may keep.

``EventStore(retention={"job_events": "7d", "raw": 1_000_000})``: a number is a row limit, a
duration (``"7d"``, ``"12h"``, ``"30m"``, ``"90s"``, a ``timedelta``) an age limit, and
``{"rows": N, "age": "7d"}`` (or a ``(rows, age)`` pair) both. ``None`` lifts the limit.
Append-only tables drop their oldest rows (by arrival). Latest-state tables given ``rows`` or
``age`` keep the most recently updated entities, running or not. A table limited to 0 rows is not
built at all (``{"raw": 0}`` for a client that never reads frames): what it would receive is
counted in ``store.dropped`` (rows offered; events for a latest-state table) and applied nowhere.

Finished entities age out: ``{"finished": ...}`` (jobs, dag_runs, dag_steps), in any of the forms
above, limits only the entities whose status is finished (:data:`FINISHED_STATUSES`: completed,
success, failed, cancelled, skipped...), by the time of their last update: an entity still running
is never dropped by it. By default (:data:`DEFAULT_RETENTION`) finished jobs, DAG runs and steps
are kept for 24 hours of stream time past the newest event, and at most 20,000 finished jobs and
runs and 200,000 finished steps (the most recently updated); knowledge keeps its 50,000 most
recently updated items. A table named in ``retention`` takes the value given instead of its
default, whole (``{"jobs": None}`` keeps every job). So that a trickle of small batches does not
scan the table each time, finished limits are checked as the stream moves on: an age each time
event time passes 1/64 of it, and a row limit of N once N/16 more rows are held, trimming to N.

Ages are measured on event time (``store.now``) for tables of events, and on the store's clock
for ``raw`` and ``errors``, whose time is when a frame was received.

What the defaults cost (benchmarks/soak.py, measured here, not a promise): 3.5M events of the
reference workload left raw, agent, job and DAG step events at their limits, tables of 526 MB
(``memory_usage(deep=True)``) in a process of 850-880 MB (130 MB of it the imports), which
peaked at about 1,010 MB while the frames came as fast as the store parses them; a live client
(reference server at speed 3600, every table read every 2 s, 600 s) swung between 860 and 940 MB
once raw and the event tables were at their limits. ``raw``, about 350 MB at its 1,000,000
frames, is most of it; lower it (``{"raw": 100_000}``) for a smaller client: at 500,000 frames
the same run ended at 670-740 MB, peaking at 770-850.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..exceptions import ConfigurationError
from .schema import TABLES

__all__ = ["DEFAULT_RETENTION", "FINISHED_STATUSES", "LATEST_FINISHED", "Limit", "parse_duration", "parse_retention"]

#: bounded defaults, whatever the event rate: every table has a row limit (finished entities for
#: jobs, runs and steps, whose running ones are never dropped); see the module docstring
DEFAULT_RETENTION: Mapping[str, Any] = {
    "raw": 1_000_000,
    "job_events": 500_000,
    "agent_events": 500_000,
    "dag_step_events": 500_000,
    "errors": 50_000,
    "insights": 50_000,
    "metrics": 100_000,
    "jobs": {"finished": {"rows": 20_000, "age": "24h"}},
    "dag_runs": {"finished": {"rows": 20_000, "age": "24h"}},
    "dag_steps": {"finished": {"rows": 200_000, "age": "24h"}},
    "knowledge": 50_000,
}

#: the latest-state tables whose entities finish (they have a ``status``): ``finished`` applies
LATEST_FINISHED = ("jobs", "dag_runs", "dag_steps")
#: statuses of an entity that is done (lower case): jobs, DAG runs and steps in those states age
#: out; any other status (running, queued, up_for_retry, none...) is still running
FINISHED_STATUSES = frozenset({
    "completed", "complete", "success", "succeeded", "done", "finished", "failed", "failure",
    "error", "upstream_failed", "cancelled", "canceled", "timeout", "skipped", "removed",
})

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


@dataclass(frozen=True)
class Limit:
    """The retention of one table: at most ``rows`` rows, none older than ``age_ns``; of the
    finished entities (latest-state tables with a status), at most ``finished_rows``, none whose
    last update is older than ``finished_age_ns``."""

    rows: int | None = None
    age_ns: int | None = None
    finished_rows: int | None = None
    finished_age_ns: int | None = None

    @property
    def finished(self) -> bool:
        """Whether finished entities have a limit of their own."""
        return self.finished_rows is not None or self.finished_age_ns is not None


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
        unknown = set(value) - {"rows", "age", "finished"}
        if unknown:
            raise ConfigurationError(
                f"retention of {table!r}: unknown keys {sorted(unknown)} (use 'rows', 'age', 'finished')"
            )
        rows = value.get("rows")
        age = value.get("age")
        finished = None
        if value.get("finished") is not None:
            if table not in LATEST_FINISHED:
                raise ConfigurationError(
                    f"retention of {table!r}: 'finished' applies to {', '.join(LATEST_FINISHED)} only"
                )
            finished = _limit(value["finished"], table)
            if finished is not None and finished.finished:
                raise ConfigurationError(f"retention of {table!r}: 'finished' cannot hold another 'finished'")
        return Limit(None if rows is None else _rows(rows, table), None if age is None else parse_duration(age, table),
                     None if finished is None else finished.rows, None if finished is None else finished.age_ns)
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
        if limit is not None and (limit.rows is not None or limit.age_ns is not None or limit.finished):
            limits[table] = limit
    return limits
