"""REST snapshots: the current state of a deployment, fetched at once and merged into the store.

On connect, and after a gap the server could not fill, the client fetches agents, DAG runs (with
the steps of the running ones), the dashboard metrics, recent insights and recent knowledge items,
and merges them with ``store.merge_snapshot``: snapshot rows are marked ``snapshot=True`` and the
store keeps, per entity, whichever of snapshot and event is newer.

The answers are normalised here to the store's column names (``performance`` flattened, list
envelopes unwrapped), so a server that drifts from the published shapes is absorbed at this one
place. Each part of the snapshot is fetched on its own: one failing endpoint costs that part only,
and is reported in :attr:`Snapshot.problems`.

The routes are the server's dialect's (:mod:`.routes`): on ``autopilot`` the runs come from
``GET /api/dag-runs`` and a run's steps from ``GET /api/dag-runs/{id}``, with its statuses read as
the dialect reads them in its events (``created`` is ``queued``). A part the dialect has no route
for is not asked for at all: it is listed in :attr:`Snapshot.skipped`, not in ``problems``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..exceptions import APIError, AuthError
from ..protocol.codec import parse_timestamp
from ..protocol.dialects import Dialect
from ..protocol.models import PROTOCOL_NAME
from ..storelike import StoreLike
from .http import RestClient
from .routes import PUBLISHED_ROUTES, published_dialect

__all__ = [
    "SNAPSHOT_KINDS",
    "Snapshot",
    "SnapshotUnavailable",
    "fetch_snapshot",
    "merge_into",
    "normalise",
    "published_run",
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
#: snapshot part -> the ``Routes`` attribute it is fetched from (dag_steps: a run's own route)
_PART_ROUTES = {"metrics": "dashboard", "agents": "agents", "dag_runs": "dag_runs", "dag_steps": "dag_run",
                "insights": "insights", "knowledge": "knowledge_search"}


class SnapshotUnavailable(APIError):
    """The server has no REST API (every endpoint 404 / 426 / refused ...): WebSocket alone."""


@dataclass
class Snapshot:
    """The state fetched over REST at one moment.

    Attributes:
        at: the server's time of the snapshot (its dashboard ``timestamp`` / ``server_time`` when
            it says; else the newest time found in the answers, an underestimate that can only make
            the snapshot lose ties, never overwrite a newer event).
        records: kind -> records with the store's column names.
        problems: one line per part that could not be fetched.
        dialect: the name of the dialect whose routes were asked.
        skipped: kind -> the published route the dialect has no counterpart of (not asked for).
    """

    at: datetime
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dialect: str = PROTOCOL_NAME
    skipped: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """kind -> number of records."""
        return {kind: len(self.records.get(kind, ())) for kind in SNAPSHOT_KINDS}


def _items(answer: Any, key: str | None = None) -> list[dict[str, Any]]:
    """The records of a list answer: a bare list, ``{key: [...]}``, or ``{items|data|results|<plural>: [...]}``."""
    if isinstance(answer, list):
        return [item for item in answer if isinstance(item, dict)]
    if isinstance(answer, dict):
        keys = ((key,) if key else ()) + ("items", "data", "results", "agents", "runs", "dag_runs",
                                          "insights", "knowledge")
        for name in keys:
            value = answer.get(name)
            if isinstance(value, list):
                return [item for item in value if isinstance(item, dict)]
    return []


def _first(record: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = record.get(key)
        # "" is no value: autopilot's steps say timestamp "" until they start
        if value is not None and value != "":
            return value
    return None


def _vocabulary(dialect: Dialect | None) -> tuple[dict[str, str], dict[str, str]]:
    """The field renames and status words a dialect applies to its DAG-run events.

    A server's REST runs speak as its events do (autopilot's ``workflow_name``, ``created``): the
    dialect's own mapping of ``dag_run_status`` serves both, so it is written once, in the dialect.
    """
    rename: dict[str, str] = {}
    status: dict[str, str] = {}
    for mapping in (dialect.events.values() if dialect is not None else ()):
        if mapping.event == "dag_run_status":
            rename.update((k, v) for k, v in mapping.rename.items() if "." not in k)
            status.update(mapping.status)
    return rename, status


def published_run(record: Mapping[str, Any], dialect: Dialect | None = None) -> dict[str, Any]:
    """A DAG run as the server answers it, with the published names added: ``run_id``,
    ``dag_id``, the published status words, and ``steps`` as a list of objects with a ``step_id``
    (a dict keyed by step id, as ``autopilot-dag-updates`` sends, becomes that list).

    The server's own keys are kept; ``dialect`` None is the published protocol (names as they are).
    """
    rename, words = _vocabulary(dialect)
    run = dict(record)
    for published, foreign in rename.items():
        if run.get(published) is None and record.get(foreign) is not None:
            run[published] = record[foreign]
    if run.get("run_id") is None and _first(record, "dag_run_id", "id") is not None:
        run["run_id"] = _first(record, "dag_run_id", "id")
    if isinstance(run.get("status"), str):
        run["status"] = words.get(run["status"], run["status"])
    steps = record.get("steps")
    if isinstance(steps, Mapping):
        steps = [{"step_id": key, **value} if isinstance(value, Mapping) else {"step_id": key, "status": value}
                 for key, value in steps.items()]
    if isinstance(steps, list):
        run["steps"] = [_published_step(step, words) if isinstance(step, Mapping) else step for step in steps]
    return run


def _published_step(step: Mapping[str, Any], words: Mapping[str, str]) -> dict[str, Any]:
    out = dict(step)
    if out.get("step_id") is None and _first(step, "task_id", "id") is not None:
        out["step_id"] = _first(step, "task_id", "id")
    if isinstance(out.get("status"), str):
        out["status"] = words.get(out["status"], out["status"])
    return out


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
            "duration": _duration(step),
            "retry_count": _first(step, "retry_count", "try_number"),
            "error": step.get("error"),
            "updated_at": _first(step, "updated_at", "timestamp", "end_time", "start_time"),
        })
    return rows


def _duration(step: Mapping[str, Any]) -> Any:
    """A step's duration in ms, the published unit (``duration_seconds`` is the dag-updates app's)."""
    duration = _first(step, "duration", "duration_ms")
    seconds = step.get("duration_seconds")
    if duration is None and isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        duration = seconds * 1000.0
    return duration


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


def normalise(kind: str, answer: Any, at: datetime, dialect: Dialect | None = None) -> list[dict[str, Any]]:
    """Records of one REST answer in the store's column names (unusable records are skipped).

    ``dag_steps`` takes a list of runs that carry ``steps`` (``GET /api/workflows/dag-runs/{id}``).
    ``dialect``: the server's, whose DAG-run names and status words are read as its events' are.
    """
    if kind == "metrics":
        row = _metrics(answer, at) if isinstance(answer, Mapping) else None
        return [row] if row else []
    if kind == "dag_steps":
        runs = answer if isinstance(answer, list) else [answer]
        return [row for run in runs if isinstance(run, Mapping) for row in _steps(published_run(run, dialect))]
    build = {"agents": _agent, "dag_runs": _run, "insights": _insight, "knowledge": _knowledge}.get(kind)
    if build is None:
        raise ValueError(f"unknown snapshot kind {kind!r}; kinds: {', '.join(SNAPSHOT_KINDS)}")
    records = _items(answer, dialect.routes.list_key if dialect is not None else None)
    if kind == "dag_runs":
        records = [published_run(record, dialect) for record in records]
    rows = (build(record) for record in records)
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
    dialect: Dialect | None = None,
    runs_limit: int = 100,
    insights_limit: int = 50,
    knowledge_limit: int = 100,
    concurrency: int = 8,
) -> Snapshot:
    """Fetch the current state over REST: the dashboard, then every other part concurrently.

    Each part is fetched on its own: a failing one is named in ``problems`` and costs only itself.
    ``dialect`` is the server's (None: the published protocol): its routes are asked, and the parts
    it has no route for are skipped and listed in ``Snapshot.skipped``.

    Raises:
        AuthError: the server refused the token (nothing else would work either).
        SnapshotUnavailable: the server has no REST API at all (404 on every endpoint, or refused).
    """
    dialect = dialect if dialect is not None else published_dialect()
    routes = dialect.routes
    gate = asyncio.Semaphore(concurrency)
    skipped = {kind: f"GET {getattr(PUBLISHED_ROUTES, name)}"
               for kind, name in _PART_ROUTES.items() if getattr(routes, name) is None}

    async def get(path: str, **params: Any) -> Any:
        async with gate:
            return await rest.get(path, params)

    def limited(limit: int) -> int:
        return limit if routes.list_limit is None else min(limit, routes.list_limit)

    # the dashboard first, alone: its server_time is then read before every other part, so dating
    # the snapshot by it errs on the early side, where the merge rule can only favour events
    answers: dict[str, Any] = {}
    if routes.dashboard is not None:
        try:
            answers["metrics"] = await get(routes.dashboard)
        except AuthError:
            raise
        except Exception as exc:
            answers["metrics"] = exc
    parts = {}
    if routes.agents is not None:
        parts["agents"] = get(routes.agents)
    if routes.dag_runs is not None:
        parts["running"] = get(routes.dag_runs, status="running", limit=limited(max(runs_limit, 500)))
        parts["recent"] = get(routes.dag_runs, limit=limited(runs_limit))
    if routes.insights is not None:
        parts["insights"] = get(routes.insights, limit=insights_limit)
    if routes.knowledge_search is not None:
        parts["knowledge"] = get(routes.knowledge_search, limit=knowledge_limit)
    answers.update(zip(parts, await asyncio.gather(*parts.values(), return_exceptions=True), strict=True))
    for answer in answers.values():
        if isinstance(answer, AuthError):
            raise answer
        if isinstance(answer, BaseException) and not isinstance(answer, Exception):
            raise answer  # cancellation and the like are not a failed part
    failures = {name: a for name, a in answers.items() if isinstance(a, Exception)}
    if answers and len(failures) == len(answers) and all(
        isinstance(a, APIError) and a.status in _NO_API for a in failures.values()
    ):
        first = next(iter(failures.values()))
        assert isinstance(first, APIError)
        raise SnapshotUnavailable(first.endpoint, first.status, first.server_message)
    if answers and len(failures) == len(answers):  # nothing at all: a failed snapshot, not a partial one
        raise next(iter(failures.values()))

    snapshot = Snapshot(at=datetime.now(timezone.utc), dialect=dialect.name, skipped=skipped)
    problems = [f"{name}: {exc}" for name, exc in failures.items()]

    # the server's own clock (simulated time on the reference server) dates the snapshot
    metrics = answers.get("metrics")
    dashboard: Mapping[str, Any] = metrics if isinstance(metrics, Mapping) else {}
    server_time = parse_timestamp(_first(dashboard, "server_time", "timestamp"))

    runs: dict[str, dict[str, Any]] = {}
    for name in ("recent", "running"):
        if name in answers and not isinstance(answers[name], Exception):
            for row in normalise("dag_runs", answers[name], snapshot.at, dialect):
                runs[row["run_id"]] = row
    running = [run_id for run_id, row in runs.items() if str(row.get("status") or "").lower() in _RUNNING]
    if routes.dag_run is None:
        running = []  # no route to a run's steps: the list's own counts are all there is
    details = await asyncio.gather(
        *(get(routes.path("dag_run", run_id=quote(run_id, safe="")) or "") for run_id in running),
        return_exceptions=True,
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
            for row in normalise("dag_runs", [detail], snapshot.at, dialect):
                runs[row["run_id"]] = {**runs.get(row["run_id"], {}), **_not_none(row)}

    def part(kind: str) -> list[dict[str, Any]]:
        if kind not in answers or kind in failures:
            return []
        return normalise(kind, answers[kind], snapshot.at, dialect)

    records = {
        "agents": part("agents"),
        "dag_runs": list(runs.values()),
        "dag_steps": normalise("dag_steps", detailed, snapshot.at, dialect),
        "insights": part("insights"),
        "knowledge": part("knowledge"),
    }
    if server_time is None:
        server_time = max(_times(row for rows in records.values() for row in rows), default=None)
    if server_time is not None:
        snapshot.at = server_time
    records["metrics"] = [] if "metrics" not in answers or "metrics" in failures else \
        normalise("metrics", dashboard, snapshot.at)
    snapshot.records = {kind: records[kind] for kind in SNAPSHOT_KINDS}
    snapshot.problems = problems
    return snapshot


def _not_none(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if value is not None}


def _newer_metrics(store: StoreLike, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The KPI records newer than the store's latest metrics row.

    The metrics table is a history, not a latest-state table: a snapshot's KPIs that the stream
    already delivered (or superseded) would only add a duplicate or a step back in time.
    """
    latest = store.table("metrics")["timestamp"].max()
    if latest is None or latest != latest:  # empty table (NaT)
        return records
    return [r for r in records if (t := parse_timestamp(r.get("timestamp"))) is None or t > latest]


def merge_into(store: StoreLike, snapshot: Snapshot, source: str = "rest") -> dict[str, int]:
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
