"""The tables of the store: their columns and storage kinds, and which events feed them.

Column names are the contract of ``docs/design.md``; this module is their one source. Every
column has a *kind* that fixes both how it is held in memory and its pandas dtype:

======  ==========================================  ================================
kind    held as                                     pandas dtype
======  ==========================================  ================================
cat     int32 codes into a growing dictionary       ``category`` (``str`` categories)
text    Arrow strings (append tables) / objects     ``str`` (Arrow-backed)
f64     float64, NaN when missing                   ``float64``
f32     float32, NaN when missing                   ``float32``
int32   int32 values + validity mask                ``Int32``
int64   int64 values + validity mask                ``Int64``
ts      int64 nanoseconds + validity mask           ``datetime64[ns, UTC]``
bool    bool values + validity mask                 ``boolean``
obj     Python objects (lists, dicts)               ``object``
======  ==========================================  ================================
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..protocol.codec import finite_number, parse_timestamp
from .columns import F32_MAX, INT_RANGES

__all__ = [
    "APPEND_TABLES",
    "DERIVED",
    "DICT_FIELDS",
    "EVENT_ROUTES",
    "FAST_EVENTS",
    "KINDS",
    "LATEST_TABLES",
    "LIST_FIELDS",
    "METRIC_NAMES",
    "RANGES",
    "TABLES",
    "ColumnSpec",
    "Route",
    "TableSpec",
    "beyond",
    "convert",
    "derive",
    "out_of_range",
    "parse_change",
    "sent_changes",
    "storable",
    "timestamp_ns",
]

KINDS = ("cat", "text", "f64", "f32", "int32", "int64", "ts", "bool", "obj")

#: the dashboard metrics whose ``changes`` ("+5", "+0.2") become ``<name>_change`` numbers
METRIC_NAMES = ("total_processed", "processing_time", "success_rate", "active_agents", "knowledge_items")


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its name and storage kind (see the module docstring)."""

    name: str
    kind: str


@dataclass(frozen=True)
class TableSpec:
    """One table.

    Attributes:
        name: the table's name (a property of the store).
        columns: every column, in order.
        key: the key columns of a latest-state table, or ``()`` for an append-only table.
        time: the column retention by age looks at.
    """

    name: str
    columns: tuple[ColumnSpec, ...]
    key: tuple[str, ...] = ()
    time: str = "timestamp"
    names: tuple[str, ...] = field(init=False)
    kinds: MappingProxyType[str, str] = field(init=False)

    def __post_init__(self) -> None:
        # looked up for every column of every batch: computed once
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "kinds", MappingProxyType({c.name: c.kind for c in self.columns}))

    @property
    def latest(self) -> bool:
        """True for a latest-state table (one row per key)."""
        return bool(self.key)

    def kind(self, name: str) -> str:
        """The kind of column ``name``."""
        return self.kinds[name]


def _table(name: str, spec: str, key: tuple[str, ...] = (), time: str = "timestamp") -> TableSpec:
    """``spec`` is ``"name:kind name:kind ..."``: compact, and easy to hold beside design.md."""
    columns = tuple(ColumnSpec(*item.split(":")) for item in spec.split())
    for column in columns:
        assert column.kind in KINDS, column
    return TableSpec(name, columns, key, time)


_LATEST = "updated_at:ts seq:int64 snapshot:bool"

TABLES: MappingProxyType[str, TableSpec] = MappingProxyType(
    {
        t.name: t
        for t in (
            _table(
                "jobs",
                "job_id:cat run_id:cat type:cat filename:cat status:cat progress:f32 "
                "current_step:cat started_at:ts estimated_completion:ts completed_at:ts "
                "failed_at:ts duration_s:f64 error:cat retry_count:int32 can_retry:bool "
                f"summary:text entities:obj insights:obj {_LATEST}",
                key=("job_id",),
                time="updated_at",
            ),
            _table(
                "job_events",
                "received_at:ts seq:int64 timestamp:ts event:cat job_id:cat run_id:cat type:cat "
                "status:cat progress:f32 current_step:cat filename:cat error:cat "
                "retry_count:int32 can_retry:bool",
            ),
            _table(
                "agents",
                "agent_id:cat name:cat type:cat status:cat current_task:cat progress:f32 "
                f"tasks_completed:int64 average_processing_time:f64 success_rate:f64 {_LATEST}",
                key=("agent_id",),
                time="updated_at",
            ),
            _table(
                "agent_events",
                "received_at:ts seq:int64 timestamp:ts event:cat agent_id:cat name:cat status:cat "
                "current_task:cat progress:f32 task_id:cat job_id:cat task_type:cat duration:f64 "
                "confidence:f32 error:cat severity:cat can_retry:bool affected_jobs:obj "
                "tasks_completed:int64 average_processing_time:f64 success_rate:f64",
            ),
            _table(
                "knowledge",
                "item_id:cat title:text type:cat source_job:cat tags:obj created_at:ts "
                "updated_at:ts updated_fields:obj update_count:int64 seq:int64 snapshot:bool",
                key=("item_id",),
                time="updated_at",
            ),
            _table(
                "insights",
                "insight_id:cat timestamp:ts created_at:ts title:text description:text type:cat "
                "confidence:f64 metadata:obj source:cat rule:cat key:text fingerprint:text "
                "evidence:obj seq:int64",
            ),
            _table(
                "metrics",
                "timestamp:ts total_processed:int64 processing_time:f64 success_rate:f64 "
                "active_agents:int64 knowledge_items:int64 total_processed_change:f64 "
                "processing_time_change:f64 success_rate_change:f64 active_agents_change:f64 "
                "knowledge_items_change:f64 changes:obj seq:int64 snapshot:bool",
            ),
            _table(
                "dag_runs",
                "run_id:cat dag_id:cat status:cat started_at:ts updated_at:ts total_steps:int64 "
                "completed_steps:int64 running_steps:int64 failed_steps:int64 "
                "pending_steps:int64 completion_percentage:f64 seq:int64 snapshot:bool",
                key=("run_id",),
                time="updated_at",
            ),
            _table(
                "dag_steps",
                "run_id:cat step_id:cat dag_id:cat status:cat start_time:ts end_time:ts "
                "duration:f64 retry_count:int32 error:text updated_at:ts seq:int64 snapshot:bool",
                key=("run_id", "step_id"),
                time="updated_at",
            ),
            _table(
                "dag_step_events",
                "received_at:ts seq:int64 timestamp:ts event:cat dag_id:cat run_id:cat step_id:cat "
                "status:cat start_time:ts end_time:ts duration:f64 retry_count:int32 error:cat",
            ),
            _table(
                "errors",
                "received_at:ts kind:cat code:cat message:text event:cat seq:int64 start:ts "
                "end:ts details:obj",
                time="received_at",
            ),
            _table("raw", "received_at:ts seq:int64 event:cat text:text", time="received_at"),
        )
    }
)

LATEST_TABLES = tuple(name for name, t in TABLES.items() if t.latest)
APPEND_TABLES = tuple(name for name, t in TABLES.items() if not t.latest)


@dataclass(frozen=True)
class Route:
    """How one event fills one table.

    Attributes:
        table: the table's name.
        fields: column -> where its value comes from: a data path (``"result.summary"``), or a
            tuple of paths of which the first present one wins.
        defaults: column -> a constant used when the event leaves the column empty.
        counts: a column that counts the events of this route per key (knowledge.update_count).
    """

    table: str
    fields: MappingProxyType[str, str | tuple[str, ...]]
    defaults: MappingProxyType[str, object] = field(default_factory=lambda: MappingProxyType({}))
    counts: str | None = None


def _same(names: str) -> dict[str, str | tuple[str, ...]]:
    """``"a b"`` -> each column from the data field of the same name."""
    return {name: name for name in names.split()}


def _route(table: str, fields: dict[str, str | tuple[str, ...]] | str,
           defaults: dict[str, object] | None = None, counts: str | None = None) -> Route:
    if isinstance(fields, str):
        fields = _same(fields)
    return Route(table, MappingProxyType(fields), MappingProxyType(defaults or {}), counts)


_JOB_EVENT = "timestamp job_id run_id type status progress current_step filename error retry_count can_retry"
# a latest-state row takes from each event the fields that event type carries (a null clears)
_JOB_STATUS = "job_id run_id type status progress filename started_at estimated_completion current_step"
_JOB_COMPLETED = "job_id run_id type status progress completed_at"
_JOB_FAILED = "job_id run_id type status error failed_at retry_count can_retry"
_STEP_EVENT = "timestamp dag_id run_id step_id status start_time end_time duration retry_count error"
_AGENT_EVENT = {
    **_same("timestamp agent_id name status current_task progress task_id job_id task_type duration error severity can_retry affected_jobs"),
    "confidence": "result.confidence",
    "tasks_completed": "performance.tasks_completed",
    "average_processing_time": "performance.average_processing_time",
    "success_rate": "performance.success_rate",
}

#: event -> the routes it feeds. Latest-state tables take their order from the row's
#: ``updated_at``; the newest event of a key sets every column its route names (a null clears
#: the column: an idle agent has no current_task), and leaves the other columns alone.
EVENT_ROUTES: MappingProxyType[str, tuple[Route, ...]] = MappingProxyType(
    {
        "processing_job_status": (
            _route("job_events", _JOB_EVENT),
            _route("jobs", {**_same(_JOB_STATUS), "updated_at": "timestamp"}),
        ),
        "processing_job_completed": (
            _route("job_events", _JOB_EVENT),
            _route(
                "jobs",
                {
                    **_same(_JOB_COMPLETED),
                    "summary": "result.summary",
                    "entities": "result.entities",
                    "insights": "result.insights",
                    "updated_at": "timestamp",
                },
                {"status": "completed"},
            ),
        ),
        "processing_job_failed": (
            _route("job_events", _JOB_EVENT),
            _route("jobs", {**_same(_JOB_FAILED), "updated_at": "timestamp"}, {"status": "failed"}),
        ),
        "agent_status_update": (
            _route("agent_events", _AGENT_EVENT),
            _route(
                "agents",
                {
                    **_same("agent_id name type status current_task progress"),
                    "tasks_completed": "performance.tasks_completed",
                    "average_processing_time": "performance.average_processing_time",
                    "success_rate": "performance.success_rate",
                    "updated_at": "timestamp",
                },
            ),
        ),
        "agent_task_completed": (_route("agent_events", _AGENT_EVENT),),
        "agent_error": (_route("agent_events", _AGENT_EVENT),),
        "knowledge_item_created": (
            _route(
                "knowledge",
                {
                    **_same("item_id title type source_job tags created_at"),
                    "updated_at": ("timestamp", "created_at"),
                },
            ),
        ),
        "knowledge_item_updated": (
            _route(
                "knowledge",
                {"item_id": "item_id", "updated_fields": "updated_fields", "updated_at": ("updated_at", "timestamp")},
                counts="update_count",
            ),
        ),
        "insight_generated": (
            _route(
                "insights",
                "insight_id timestamp created_at title description type confidence metadata",
                {"source": "server"},
            ),
        ),
        "dashboard_metrics_update": (
            _route(
                "metrics",
                "timestamp total_processed processing_time success_rate active_agents knowledge_items changes",
                {"snapshot": False},
            ),
        ),
        "dag_run_status": (
            _route("dag_runs", {**_same("run_id dag_id status started_at"), "updated_at": "timestamp"}),
        ),
        "dag_run_progress": (
            _route(
                "dag_runs",
                {
                    **_same("run_id dag_id total_steps completed_steps running_steps failed_steps pending_steps completion_percentage"),
                    "updated_at": "timestamp",
                },
            ),
        ),
        "step_status": (
            _route("dag_step_events", _STEP_EVENT),
            _route(
                "dag_steps",
                {
                    **_same("run_id step_id dag_id status start_time end_time duration retry_count error"),
                    "updated_at": "timestamp",
                },
            ),
        ),
    }
)

#: events parsed by the Arrow engine (store/parse/): the frequent ones, whose fields all have a fixed
#: shape (``changes`` of the metrics counts as one: its keys are the metric names). Events with
#: free-form objects (metadata, details) and the rare connection events go to the msgspec and reference engines.
FAST_EVENTS: frozenset[str] = frozenset(
    {
        "processing_job_status",
        "processing_job_completed",
        "processing_job_failed",
        "agent_status_update",
        "agent_task_completed",
        "agent_error",
        "knowledge_item_created",
        "knowledge_item_updated",
        "dag_run_status",
        "dag_run_progress",
        "step_status",
        "dashboard_metrics_update",
    }
)


# -- values: what each column kind holds, checked on one value, a list or an Arrow column -------
#: object columns that hold lists of strings / dicts (any other object column takes any value)
LIST_FIELDS = frozenset({"entities", "insights", "tags", "affected_jobs", "updated_fields"})
DICT_FIELDS = frozenset({"metadata", "changes", "details"})
#: the numbers a column of each number kind holds: a number beyond them (or, for floats, not
#: finite) is a wrong value, missing in the table and described in the errors table
RANGES: MappingProxyType[str, tuple[float, float]] = MappingProxyType(
    {**INT_RANGES, "f32": (-F32_MAX, F32_MAX), "f64": (-math.inf, math.inf)}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _beyond_one(kind: str, value: Any) -> bool:
    """Whether one number (int or float, not bool) is beyond what a column of ``kind`` holds."""
    low, high = RANGES[kind]
    if kind in INT_RANGES:
        return isinstance(value, int) and not low <= value <= high
    number = finite_number(value)
    return number is None or not low <= number <= high


def beyond(kind: str, values: list[Any] | pa.Array) -> np.ndarray | pa.Array:
    """Where a number of ``values`` is beyond what a column of ``kind`` (int32, int64, f32, f64)
    holds: a bool NumPy array for a list of numbers and Nones, a bool Arrow array (null where
    there is no number) for an Arrow column. Values of another type are for the type checks."""
    low, high = RANGES[kind]
    if isinstance(values, pa.Array):
        if kind in INT_RANGES:
            if not pa.types.is_integer(values.type):
                return pa.nulls(len(values), pa.bool_())
            return pc.or_(pc.less(values, low), pc.greater(values, high))
        if not pa.types.is_floating(values.type):
            return pa.nulls(len(values), pa.bool_())
        return pc.or_(pc.invert(pc.is_finite(values)), pc.greater(pc.abs(values), high))
    if kind in INT_RANGES:  # Python ints, any size: only a list with a number beyond is read one by one
        present = [v for v in values if v is not None]
        if not present or (low <= min(present) and max(present) <= high):
            return np.zeros(len(values), bool)
        return np.array([v is not None and _beyond_one(kind, v) for v in values], bool)
    try:
        numbers = np.array(values, np.float64)  # None: NaN
    except OverflowError:  # an integer beyond a float's range
        return np.array([v is not None and _beyond_one(kind, v) for v in values], bool)
    with np.errstate(invalid="ignore"):
        out = ~np.isfinite(numbers) | (np.abs(numbers) > high)
    if out.any():  # None read as NaN
        out &= np.array([v is not None for v in values], bool)
    return out


def out_of_range(kind: str, value: Any) -> str | None:
    """Why a number of the right type is still a wrong value for a column of ``kind`` (for the
    errors row's message), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind not in RANGES:
        return None
    if kind in INT_RANGES:
        return f"beyond {kind}'s range" if isinstance(value, int) and _beyond_one(kind, value) else None
    if finite_number(value) is None:
        return "beyond a float's range" if isinstance(value, int) else None
    return "beyond float32's range" if _beyond_one(kind, value) else None


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


def convert(kind: str, column: str, value: Any) -> tuple[bool, Any]:
    """``(ok, value)`` for one column value: ``(True, None)`` for a missing value, ``(False,
    None)`` for a value of the wrong type or beyond the column's range."""
    cls = type(value)  # the common cases first, without a function call per isinstance
    if value is None:
        return True, None
    if kind in ("cat", "text"):
        return (True, value) if isinstance(value, str) and storable(value) else (False, None)
    if kind in ("f64", "f32"):
        if cls is float and math.isfinite(value) and (kind == "f64" or abs(value) <= F32_MAX):
            return True, value
        number = finite_number(value)  # ints, and the wrong values
        return (False, None) if number is None or _beyond_one(kind, number) else (True, number)
    if kind in INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif not isinstance(value, int) or cls is bool:
            return False, None
        return (False, None) if _beyond_one(kind, value) else (True, value)
    if kind == "ts":
        ns = TIMESTAMP_CACHE.get(value) if cls is str else None
        if ns is None:
            ns = timestamp_ns(value)
            if cls is str and ns is not None:
                if len(TIMESTAMP_CACHE) > 50_000:  # job start times repeat in every status event
                    TIMESTAMP_CACHE.clear()
                TIMESTAMP_CACHE[value] = ns
        return (ns is not None, ns)
    if kind == "bool":
        return (True, value) if cls is bool else (False, None)
    if column in LIST_FIELDS:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return (True, value) if ok else (False, None)
    if column in DICT_FIELDS:
        return (True, value) if isinstance(value, dict) else (False, None)
    return True, value


def storable(text: str) -> bool:
    """Whether a text can be stored (a lone surrogate, which JSON escapes allow, cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: timestamp text -> ns (job start times repeat in every status event of the job)
TIMESTAMP_CACHE: dict[str, int] = {}


# -- derived columns: computed from a decoded column, whichever engine decoded it --------------
#: a dashboard change ("+5", "+0.2", "-3%", " 4 "): one pattern for Python's re and Arrow's RE2
_CHANGE = r"^\s*(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*%?\s*$"
_CHANGE_RE = re.compile(_CHANGE)


def parse_change(value: Any) -> float:
    """A dashboard change ("+5", "+0.2", "-3%", 4) as a number; NaN when unreadable."""
    if isinstance(value, bool) or value is None:
        return math.nan
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:  # an integer beyond a float's range: raised once for such a frame
            return math.nan
    match = _CHANGE_RE.match(value) if isinstance(value, str) else None
    return float(match.group(1)) if match else math.nan


def _change_numbers(metric: str, changes: list[Any] | pa.Array) -> list[float] | pa.Array:
    """``<metric>_change`` of each row from its ``changes`` (dicts, or Arrow structs of texts)."""
    if isinstance(changes, pa.Array):
        text = pc.struct_field(changes, metric)
        return pc.cast(pc.struct_field(pc.extract_regex(text, _CHANGE), [0]), pa.float64())
    return [parse_change(c.get(metric)) if isinstance(c, Mapping) else math.nan for c in changes]


@dataclass(frozen=True)
class Derived:
    """A column computed from another column of the same table (never sent as such)."""

    column: str
    source: str
    compute: Callable[[list[Any] | pa.Array], list[Any] | pa.Array]


#: table -> its derived columns (the dashboard's ``changes`` as numbers)
DERIVED: MappingProxyType[str, tuple[Derived, ...]] = MappingProxyType({
    "metrics": tuple(Derived(f"{m}_change", "changes", partial(_change_numbers, m)) for m in METRIC_NAMES),
})


def derive(table: str, columns: dict[str, Any]) -> None:
    """Add ``table``'s derived columns to a batch's ``columns`` (lists, or Arrow arrays)."""
    for derived in DERIVED.get(table, ()):
        if derived.source in columns:
            columns[derived.column] = derived.compute(columns[derived.source])


def sent_changes(changes: Any) -> Any:
    """A metrics ``changes`` object without the keys sent as null: Arrow's structs (the batched
    engine) cannot tell those from absent ones, so every engine drops them."""
    if isinstance(changes, Mapping) and None in changes.values():
        return {k: v for k, v in changes.items() if v is not None}
    return changes
