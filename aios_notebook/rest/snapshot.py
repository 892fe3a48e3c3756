"""REST snapshots: the current state of a deployment, fetched at once and merged into the store.

On connect, and after a gap the server could not fill, the client fetches agents, DAG runs (with
the steps of the running ones), the dashboard metrics, recent insights and recent knowledge items,
and merges them with ``store.merge_snapshot``: snapshot rows are marked ``snapshot=True`` and the
store keeps, per entity, whichever of snapshot and event is newer.

The answers are normalised here to the store's column names (``performance`` flattened, list
envelopes unwrapped), so a server that drifts from the published shapes is absorbed at this one
place. Each part of the snapshot is fetched on its own: one failing endpoint costs that part only,
and is reported in :attr:`Snapshot.problems`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from ..exceptions import APIError, AuthError
from ..protocol.codec import parse_timestamp
from .http import RestClient

__all__ = [
    "SNAPSHOT_KINDS",
    "Snapshot",
    "SnapshotUnavailable",
    "fetch_snapshot",
    "merge_into",
    "normalise",
]

#: the kinds a snapshot holds, in the order they are merged (runs before their steps)
SNAPSHOT_KINDS = ("agents", "dag_runs", "dag_steps", "metrics", "insights", "knowledge")

_METRICS = ("total_processed", "processing_time", "success_rate", "active_agents", "knowledge_items")
_PERFORMANCE = ("tasks_completed", "average_processing_time", "success_rate")
_RUN_COUNTS = ("total_steps", "completed_steps", "running_steps", "failed_steps", "pending_steps")
_RUNNING = frozenset({"running", "queued", "processing", "up_for_retry", "scheduled"})
# every endpoint answering one of these means there is no REST API here: nothing listens (None),
# no such route (404, 405, 501), or a WebSocket-only server asking for an upgrade (426)
_NO_API = frozenset({None, 404, 405, 426, 501})


class SnapshotUnavailable(APIError):
    """The server has no REST API (every endpoint 404 / 426 / refused ...): WebSocket alone."""


class _Store(Protocol):
    def merge_snapshot(self, kind: str, records: list[dict[str, Any]], at: datetime, source: str = "rest") -> Any: ...


@dataclass
class Snapshot:
    """The state fetched over REST at one moment.

    Attributes:
        at: the server's time of the snapshot (its dashboard ``timestamp`` / ``server_time`` when
            it says; else the newest time found in the answers, an underestimate that can only make
            the snapshot lose ties, never overwrite a newer event).
        records: kind -> records with the store's column names.
        problems: one line per part that could not be fetched.
    """

    at: datetime
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """kind -> number of records."""
        return {kind: len(self.records.get(kind, ())) for kind in SNAPSHOT_KINDS}


def _items(answer: Any) -> list[dict[str, Any]]:
    """The records of a list answer: a bare list, or ``{items|data|results|<plural>: [...]}``."""
    if isinstance(answer, list):
        return [item for item in answer if isinstance(item, dict)]
    if isinstance(answer, dict):
        for key in ("items", "data", "results", "agents", "runs", "dag_runs", "insights", "knowledge"):
            value = answer.get(key)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
    return []


def _first(record: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None:
            return value
    return None


def _agent(record: Mapping[str, Any]) -> dict[str, Any] | None:
    agent_id = _first(record, "agent_id", "id")
    if agent_id is None:
        return None
    row = {k: record.get(k) for k in ("name", "type", "status", "current_task", "progress")}
    performance = record.get("performance")
    for key in _PERFORMANCE:
        value = performance.get(key) if isinstance(performance, dict) else None
        row[key] = value if value is not None else record.get(key)
    row["agent_id"] = str(agent_id)
    row["updated_at"] = _first(record, "updated_at", "timestamp", "last_update", "last_seen")
    return row


def _run(record: Mapping[str, Any]) -> dict[str, Any] | None:
    run_id = _first(record, "run_id", "dag_run_id", "id")
    if run_id is None:
        return None
    progress = record.get("progress")
    if not isinstance(progress, dict):
        progress = record
    row: dict[str, Any] = {
        "run_id": str(run_id),
        "dag_id": record.get("dag_id"),
        "status": _first(record, "status", "state"),
        "started_at": _first(record, "started_at", "start_date"),
        "updated_at": _first(record, "updated_at", "timestamp", "end_date", "completed_at"),
    }
    for key in (*_RUN_COUNTS, "completion_percentage"):
        row[key] = progress.get(key)
    steps = record.get("steps")
    if row["total_steps"] is None and isinstance(steps, list) and steps:
        # derive the counts the way dag_run_progress reports them
        states = [str(step.get("status") or "") for step in steps if isinstance(step, dict)]
        done = sum(s in ("success", "completed", "skipped") for s in states)
        row.update(
            total_steps=len(states),
            completed_steps=done,
            running_steps=sum(s in ("running", "up_for_retry") for s in states),
            failed_steps=sum(s in ("failed", "upstream_failed") for s in states),
        )
        row["pending_steps"] = len(states) - done - row["running_steps"] - row["failed_steps"]
        row["completion_percentage"] = round(100.0 * done / len(states), 1)
    return row


def _steps(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    run_id = _first(run, "run_id", "dag_run_id", "id")
    rows = []
    for step in run.get("steps") or ():
        if not isinstance(step, dict):
            continue
        step_id = _first(step, "step_id", "task_id", "id")
        if step_id is None or run_id is None:
            continue
        rows.append({
            "run_id": str(run_id),
            "step_id": str(step_id),
            "dag_id": _first(step, "dag_id") or run.get("dag_id"),
            "status": _first(step, "status", "state"),
            "start_time": _first(step, "start_time", "start_date", "started_at"),
            "end_time": _first(step, "end_time", "end_date", "completed_at"),
            "duration": step.get("duration"),
            "retry_count": _first(step, "retry_count", "try_number"),
            "error": step.get("error"),
            "updated_at": _first(step, "updated_at", "timestamp", "end_time", "start_time"),
        })
    return rows


def _metrics(record: Mapping[str, Any], at: datetime) -> dict[str, Any] | None:
    if not isinstance(record, Mapping) or all(record.get(k) is None for k in _METRICS):
        return None
    row = {key: record.get(key) for key in _METRICS}
    row["timestamp"] = _first(record, "timestamp", "server_time", "updated_at") or at
    changes = record.get("changes")
    row["changes"] = dict(changes) if isinstance(changes, dict) else None
    return row


def _insight(record: Mapping[str, Any]) -> dict[str, Any] | None:
    if not isinstance(record, Mapping) or _first(record, "insight_id", "id", "title") is None:
        return None
    row = {k: record.get(k) for k in ("title", "description", "type", "confidence", "metadata", "created_at")}
    row["insight_id"] = _first(record, "insight_id", "id")
    row["timestamp"] = _first(record, "timestamp", "created_at")
    return row


def _knowledge(record: Mapping[str, Any]) -> dict[str, Any] | None:
    item_id = _first(record, "item_id", "id")
    if item_id is None:
        return None
    tags = record.get("tags")
    return {
        "item_id": str(item_id),
        "title": record.get("title"),
        "type": record.get("type"),
        "source_job": record.get("source_job"),
        "tags": list(tags) if isinstance(tags, (list, tuple)) else tags,
        "created_at": record.get("created_at"),
        "updated_at": _first(record, "updated_at", "timestamp", "created_at"),
        "updated_fields": record.get("updated_fields"),
        "update_count": record.get("update_count"),
    }


def normalise(kind: str, answer: Any, at: datetime) -> list[dict[str, Any]]:
    """Records of one REST answer in the store's column names (unusable records are skipped).

    ``dag_steps`` takes a list of runs that carry ``steps`` (``GET /api/workflows/dag-runs/{id}``).
    """
    if kind == "metrics":
        row = _metrics(answer, at) if isinstance(answer, Mapping) else None
        return [row] if row else []
    if kind == "dag_steps":
        runs = answer if isinstance(answer, list) else [answer]
        return [row for run in runs if isinstance(run, Mapping) for row in _steps(run)]
    build = {"agents": _agent, "dag_runs": _run, "insights": _insight, "knowledge": _knowledge}.get(kind)
    if build is None:
        raise ValueError(f"unknown snapshot kind {kind!r}; kinds: {', '.join(SNAPSHOT_KINDS)}")
    rows = (build(record) for record in _items(answer))
    return [row for row in rows if row is not None]


def _times(records: Iterable[Mapping[str, Any]]) -> Iterable[datetime]:
    for record in records:
        for key in ("updated_at", "timestamp", "created_at", "started_at"):
            moment = parse_timestamp(record.get(key))
            if moment is not None:
                yield moment


async def fetch_snapshot(
    rest: RestClient,
    *,
    runs_limit: int = 100,
    insights_limit: int = 50,
    knowledge_limit: int = 100,
    concurrency: int = 8,
) -> Snapshot:
    """Fetch the current state over REST: the dashboard, then every other part concurrently.

    Each part is fetched on its own: a failing one is named in ``problems`` and costs only itself.

    Raises:
        AuthError: the server refused the token (nothing else would work either).
        SnapshotUnavailable: the server has no REST API at all (404 on every endpoint, or refused).
    """
    gate = asyncio.Semaphore(concurrency)

    async def get(path: str, **params: Any) -> Any:
        async with gate:
            return await rest.get(path, params)

    # the dashboard first, alone: its server_time is then read before every other part, so dating
    # the snapshot by it errs on the early side, where the merge rule can only favour events
    answers: dict[str, Any] = {}
    try:
        answers["metrics"] = await get("/api/analytics/dashboard")
    except AuthError:
        raise
    except Exception as exc:
        answers["metrics"] = exc
    parts = {
        "agents": get("/api/agents"),
        "running": get("/api/workflows/dag-runs", status="running", limit=max(runs_limit, 500)),
        "recent": get("/api/workflows/dag-runs", limit=runs_limit),
        "insights": get("/api/analytics/insights", limit=insights_limit),
        "knowledge": get("/api/knowledge/search", limit=knowledge_limit),
    }
    answers.update(zip(parts, await asyncio.gather(*parts.values(), return_exceptions=True), strict=True))
    for answer in answers.values():
        if isinstance(answer, AuthError):
            raise answer
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # cancellation and the like are not a failed part
    failures = {name: a for name, a in answers.items() if isinstance(a, Exception)}
    if len(failures) == len(answers) and all(
        isinstance(a, APIError) and a.status in _NO_API for a in failures.values()
    ):
        first = next(iter(failures.values()))
        assert isinstance(first, APIError)
        raise SnapshotUnavailable(first.endpoint, first.status, first.server_message)
    if len(failures) == len(answers):  # nothing at all: a failed snapshot, not a partial one
        raise next(iter(failures.values()))

    snapshot = Snapshot(at=datetime.now(timezone.utc))
    problems = [f"{name}: {exc}" for name, exc in failures.items()]

    # the server's own clock (simulated time on the reference server) dates the snapshot
    dashboard = answers["metrics"] if isinstance(answers["metrics"], Mapping) else {}
    server_time = parse_timestamp(_first(dashboard, "server_time", "timestamp"))

    runs: dict[str, dict[str, Any]] = {}
    for name in ("recent", "running"):
        if not isinstance(answers[name], Exception):
            for row in normalise("dag_runs", answers[name], snapshot.at):
                runs[row["run_id"]] = row
    running = [run_id for run_id, row in runs.items() if str(row.get("status") or "").lower() in _RUNNING]
    details = await asyncio.gather(
        *(get(f"/api/workflows/dag-runs/{run_id}") for run_id in running), return_exceptions=True
    )
    detailed: list[Mapping[str, Any]] = []
    for run_id, detail in zip(running, details, strict=True):
        if isinstance(detail, AuthError):
            raise detail
        if isinstance(detail, Exception):
            if not (isinstance(detail, APIError) and detail.status == 404):  # finished and gone: fine
                problems.append(f"steps of {run_id}: {detail}")
            continue
        if isinstance(detail, Mapping):
            detailed.append(detail)
            for row in normalise("dag_runs", [detail], snapshot.at):
                runs[row["run_id"]] = {**runs.get(row["run_id"], {}), **_not_none(row)}

    records = {
        "agents": [] if "agents" in failures else normalise("agents", answers["agents"], snapshot.at),
        "dag_runs": list(runs.values()),
        "dag_steps": normalise("dag_steps", detailed, snapshot.at),
        "insights": [] if "insights" in failures else normalise("insights", answers["insights"], snapshot.at),
        "knowledge": [] if "knowledge" in failures else normalise("knowledge", answers["knowledge"], snapshot.at),
    }
    if server_time is None:
        server_time = max(_times(row for rows in records.values() for row in rows), default=None)
    if server_time is not None:
        snapshot.at = server_time
    records["metrics"] = [] if "metrics" in failures else normalise("metrics", dashboard, snapshot.at)
    snapshot.records = {kind: records[kind] for kind in SNAPSHOT_KINDS}
    snapshot.problems = problems
    return snapshot


def _not_none(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if value is not None}


def _newer_metrics(store: Any, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The KPI records newer than the store's latest metrics row.

    The metrics table is a history, not a latest-state table: a snapshot's KPIs that the stream
    already delivered (or superseded) would only add a duplicate or a step back in time.
    """
    try:
        latest = store.metrics["timestamp"].max()
    except Exception:  # a store without a metrics table: keep them all
        return records
    if latest is None or latest != latest:  # empty table (NaT)
        return records
    return [r for r in records if (t := parse_timestamp(r.get("timestamp"))) is None or t > latest]


def merge_into(store: _Store, snapshot: Snapshot, source: str = "rest") -> dict[str, int]:
    """Merge every part of ``snapshot`` into ``store``; returns kind -> records merged."""
    merged = {}
    for kind in SNAPSHOT_KINDS:
        records = snapshot.records.get(kind) or []
        if kind == "metrics" and records:
            records = _newer_metrics(store, records)
        if records:
            store.merge_snapshot(kind, records, snapshot.at, source=source)
        merged[kind] = len(records)
    return merged
