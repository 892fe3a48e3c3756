"""What a view reads from the store for one redraw: the tables it needs, ``now`` and the gaps.

The store hands out a new DataFrame per read (the caller owns it) and each table has the columns
of docs/design.md. A view may also be given a table the store does not have yet, or a store from
an older recording: missing columns are added as empty ones, so the drawing code can rely on
every documented column being there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["COLUMNS", "Frames", "read_frames", "read_table"]

#: the columns of docs/design.md that views use, per table
COLUMNS: dict[str, tuple[str, ...]] = {
    "jobs": ("job_id", "run_id", "type", "filename", "status", "progress", "current_step", "started_at",
             "estimated_completion", "completed_at", "failed_at", "duration_s", "error", "retry_count",
             "can_retry", "updated_at", "seq"),
    "job_events": ("received_at", "seq", "timestamp", "event", "job_id", "run_id", "type", "status",
                   "progress", "current_step", "filename", "error", "retry_count", "can_retry"),
    "agents": ("agent_id", "name", "type", "status", "current_task", "progress", "tasks_completed",
               "average_processing_time", "success_rate", "updated_at", "seq"),
    "agent_events": ("received_at", "seq", "timestamp", "event", "agent_id", "name", "status", "current_task",
                     "progress", "task_id", "job_id", "task_type", "duration", "confidence", "error", "severity",
                     "can_retry", "affected_jobs"),
    "knowledge": ("item_id", "title", "type", "source_job", "tags", "created_at", "updated_at", "updated_fields",
                  "update_count", "seq"),
    "insights": ("insight_id", "timestamp", "created_at", "title", "description", "type", "confidence", "metadata",
                 "source", "rule", "key", "seq"),
    "metrics": ("timestamp", "total_processed", "processing_time", "success_rate", "active_agents",
                "knowledge_items", "total_processed_change", "processing_time_change", "success_rate_change",
                "active_agents_change", "knowledge_items_change", "seq"),
    "dag_runs": ("run_id", "dag_id", "status", "started_at", "updated_at", "total_steps", "completed_steps",
                 "running_steps", "failed_steps", "pending_steps", "completion_percentage", "seq"),
    "dag_steps": ("run_id", "step_id", "dag_id", "status", "start_time", "end_time", "duration", "retry_count",
                  "error", "updated_at", "seq"),
    "errors": ("received_at", "kind", "code", "message", "event", "seq", "start", "end", "details"),
}
_GAP_COLUMNS = ("start", "end", "reason")


def _with_columns(frame: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    if frame is None:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        frame = frame.assign(**{name: pd.Series(pd.NA, index=frame.index, dtype="object") for name in missing})
    return frame


def read_table(store: Any, name: str) -> pd.DataFrame:
    """One table of the store (``store.<name>``) with at least the documented columns."""
    return _with_columns(getattr(store, name, None), COLUMNS.get(name, ()))


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return None if pd.isna(stamp) else stamp


@dataclass
class Frames:
    """A consistent read for one redraw.

    Attributes:
        tables: table name -> DataFrame (owned by the view).
        now: the store's ``now`` (latest event time) as a UTC Timestamp, None before any event.
        gaps: the stream's gaps (start, end, reason); ``end`` is NaT while a gap is open.
    """

    tables: dict[str, pd.DataFrame]
    now: pd.Timestamp | None = None
    gaps: pd.DataFrame = field(default_factory=lambda: _with_columns(None, _GAP_COLUMNS))

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


def read_frames(store: Any, tables: tuple[str, ...], *, gaps: bool = False) -> Frames:
    """Read ``tables`` (and, with ``gaps``, ``store.gaps``) plus ``store.now``."""
    frames = Frames({name: read_table(store, name) for name in tables}, now=_utc(getattr(store, "now", None)))
    if gaps:
        frames.gaps = _with_columns(getattr(store, "gaps", None), _GAP_COLUMNS)
    return frames
