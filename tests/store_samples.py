"""Sample streams for the store's tests, and what the tables must hold for them.

Events come from the reference server's offline workload (``server.workload.generate``), each
encoded as the live server sends it (with a ``seq``). The expected tables are computed here
from the events alone, without the store's code, following docs/design.md.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import pandas as pd

from aios_notebook.protocol.codec import encode, parse_timestamp
from aios_notebook.server.workload import generate

__all__ = ["expected_latest", "sample_events", "sample_frames", "ts"]

# the columns of each latest-state table that each event sets (a null clears), from design.md
LATEST_SOURCES: dict[str, dict[str, dict[str, str]]] = {
    "jobs": {
        "processing_job_status": {c: c for c in (
            "job_id", "run_id", "type", "status", "progress", "filename", "started_at",
            "estimated_completion", "current_step")},
        "processing_job_completed": {
            **{c: c for c in ("job_id", "run_id", "type", "status", "progress", "completed_at")},
            "summary": "result.summary", "entities": "result.entities", "insights": "result.insights",
        },
        "processing_job_failed": {c: c for c in (
            "job_id", "run_id", "type", "status", "error", "failed_at", "retry_count", "can_retry")},
    },
    "agents": {
        "agent_status_update": {
            **{c: c for c in ("agent_id", "name", "type", "status", "current_task", "progress")},
            "tasks_completed": "performance.tasks_completed",
            "average_processing_time": "performance.average_processing_time",
            "success_rate": "performance.success_rate",
        },
    },
    "knowledge": {
        "knowledge_item_created": {c: c for c in ("item_id", "title", "type", "source_job", "tags", "created_at")},
        "knowledge_item_updated": {c: c for c in ("item_id", "updated_fields", "updated_at")},
    },
    "dag_runs": {
        "dag_run_status": {c: c for c in ("run_id", "dag_id", "status", "started_at")},
        "dag_run_progress": {c: c for c in (
            "run_id", "dag_id", "total_steps", "completed_steps", "running_steps", "failed_steps",
            "pending_steps", "completion_percentage")},
    },
    "dag_steps": {
        "step_status": {c: c for c in (
            "run_id", "step_id", "dag_id", "status", "start_time", "end_time", "duration",
            "retry_count", "error")},
    },
}
KEYS = {"jobs": ("job_id",), "agents": ("agent_id",), "knowledge": ("item_id",),
        "dag_runs": ("run_id",), "dag_steps": ("run_id", "step_id")}
TIME_COLUMNS = {
    "started_at", "estimated_completion", "completed_at", "failed_at", "created_at", "updated_at",
    "start_time", "end_time",
}


def ts(value: Any) -> pd.Timestamp | None:
    """A protocol timestamp as a pandas Timestamp (UTC), None when missing."""
    moment = parse_timestamp(value)
    return None if moment is None else pd.Timestamp(moment)


@functools.lru_cache(maxsize=8)
def sample_events(hours: float = 3.0, seed: int = 7, scenario: str = "steady") -> tuple[tuple[str, dict, int], ...]:
    """``(event, data, seq)`` of the workload, seq from 1."""
    return tuple((event, data, i + 1) for i, (_, event, data) in enumerate(generate(seed, scenario, hours)))


def sample_frames(hours: float = 3.0, seed: int = 7, scenario: str = "steady") -> list[str]:
    """The workload's events as text frames, as the live server encodes them."""
    return [encode(event, data, seq) for event, data, seq in sample_events(hours, seed, scenario)]


def _path(data: dict, path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def expected_latest(table: str, events: Any) -> dict[Any, dict[str, Any]]:
    """key -> the row of a latest-state table after ``events`` (in seq order)."""
    rows: dict[Any, dict[str, Any]] = {}
    updates: Counter = Counter()
    for event, data, seq in sorted(events, key=lambda e: e[2]):
        sources = LATEST_SOURCES[table].get(event)
        if sources is None:
            continue
        key = tuple(data.get(k) for k in KEYS[table])
        if any(k is None for k in key):
            continue
        key = key[0] if len(key) == 1 else key
        row = rows.setdefault(key, {})
        for column, path in sources.items():
            value = _path(data, path)
            row[column] = ts(value) if column in TIME_COLUMNS else value
        if table == "knowledge":
            if event == "knowledge_item_updated":
                updates[key] += 1
                row["updated_at"] = ts(data.get("updated_at") or data.get("timestamp"))
            else:
                row["updated_at"] = ts(data.get("timestamp") or data.get("created_at"))
            row["update_count"] = updates[key]
        else:
            row["updated_at"] = ts(data.get("timestamp"))
        row["seq"] = seq
    return rows


#: frames every path must take as decoding them one by one does (each comment says what is odd)
_JOB = '"job_id":"job-9","run_id":"r","type":"pdf","status":"processing","progress":0.5,"timestamp":"2026-01-01T00:00:00Z"'
ODD_FRAMES = [
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":NaN},"seq":900001}',  # NaN
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":1e400},"seq":900002}',  # inf
    '{"event":"processing_job_status","data":{' + _JOB + ',"filename":"\\ud800"},"seq":900003}',  # lone surrogate
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":true}',  # a bool seq
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":1.0}',  # a float seq
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":-7}',  # a negative seq
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":900006,"extra":1}',  # a 4th key
    '{"event":"processing_job_status","data":[1,2],"seq":900007}',  # data not an object
    '{"event":"processing_job_status","data":null,"seq":900008}',
    '{"event":"processing_job_status","data":{' + _JOB + ',"job_id":"job-10"},"seq":900009}',  # a duplicate key
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":"half"},"seq":900010}',  # wrong type
    '{"event":"processing_job_status","data":{"run_id":"r","status":"x"},"seq":900011}',  # required missing
    '{"event":"processing_job_status","data":{' + _JOB + ',"deep":' + "[" * 5000 + "]" * 5000 + '},"seq":900012}',
    '{"event":"processing_job_status","data":{' + _JOB + ',"retry_count":123456789012345678901234567890},"seq":900013}',
    '{"event":42,"data":{},"seq":900014}',
    '{"event":"no_such_event","data":{"a":1},"seq":900015}',
    '{"data":{' + _JOB + '},"seq":900016}',
    '{"event":"processing_job_status","data":{' + _JOB + '}',  # truncated
    '{"event":"processing_job_status","data":{' + _JOB + ',"filename":"\ud800"},"seq":900018}',  # raw surrogate
    b'{"event":"processing_job_status","data":{"job_id":"job-11","status":"queued"},"seq":900019}',  # binary
    '{"event":"processing_job_status","data":{' + _JOB + ',"retry_count":2.0},"seq":900020}',  # integral float
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":1e300},"seq":900022}',  # beyond float32
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":1' + "0" * 400 + '},"seq":900023}',  # beyond float
    '{"event":"agent_status_update","data":{"agent_id":"a-1","name":"A","type":"t","status":"idle","performance":'
    '{"deep":' + "[" * 5000 + "]" * 5000 + '},"timestamp":"2026-01-01T00:00:00Z"},"seq":900021}',  # deep in a known object
    # numbers of the right type that their columns cannot hold (an errors row each, as a wrong type)
    '{"event":"processing_job_failed","data":{"job_id":"job-12","error":"e","retry_count":1099511627776,'
    '"can_retry":true,"timestamp":"2026-01-01T00:00:00Z"},"seq":900024}',  # beyond int32
    '{"event":"agent_status_update","data":{"agent_id":"a-2","name":"A","type":"t","status":"idle","performance":'
    '{"tasks_completed":9223372036854775808},"timestamp":"2026-01-01T00:00:00Z"},"seq":900025}',  # beyond int64, nested
    '{"event":"agent_status_update","data":{"agent_id":"a-3","name":"A","type":"t","status":"busy","progress":-4e38,'
    '"timestamp":"2026-01-01T00:00:00Z"},"seq":900026}',  # beyond float32, negative
    # pretty-printed: raw newlines between the tokens of a well-formed frame (Arrow reads it)
    '{\n  "event": "processing_job_status",\n  "data": {\n    ' + _JOB.replace(',', ',\n    ') + '\n  },\n  "seq": 900027\n}',
    # two objects in one frame: read back to back with other frames, Arrow finds a row too many
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":900028}'
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":900029}',
]
