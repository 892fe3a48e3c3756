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

from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "APPEND_TABLES",
    "EVENT_ROUTES",
    "FAST_EVENTS",
    "KINDS",
    "LATEST_TABLES",
    "METRIC_NAMES",
    "TABLES",
    "ColumnSpec",
    "Route",
    "TableSpec",
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

#: events parsed by the batched Arrow path: the frequent ones, whose fields all have a fixed
#: shape (``changes`` of the metrics counts as one: its keys are the metric names). Events with
#: free-form objects (metadata, details) and the rare connection events take the per-frame path.
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
