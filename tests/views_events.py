"""Known events for the views' tests: small builders of AIOS v2 events at chosen times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from aios_notebook.store import EventStore

__all__ = [
    "T0",
    "agent_error",
    "agent_status",
    "at",
    "dag_progress",
    "dag_run",
    "feed",
    "insight",
    "job",
    "knowledge",
    "metrics",
    "new_store",
    "step",
]

#: the origin of the tests' simulated time
T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    """T0 + seconds as the protocol's ISO text."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event": name, "data": {k: v for k, v in data.items() if v is not None}}


def job(job_id: str, status: str, t: float, *, type: str = "pdf", progress: float | None = None,
        step: str | None = None, error: str | None = None, retry_count: int | None = None,
        can_retry: bool | None = None, started: float | None = None, eta: float | None = None) -> dict[str, Any]:
    """A processing_job_status / _completed / _failed event, by status."""
    name = {"completed": "processing_job_completed", "failed": "processing_job_failed"}.get(
        status, "processing_job_status")
    data: dict[str, Any] = {
        "job_id": job_id, "run_id": f"run-{job_id}", "type": type, "status": status, "progress": progress,
        "filename": f"{job_id}.{type}", "current_step": step, "timestamp": at(t),
        "started_at": at(started) if started is not None else None,
        "estimated_completion": at(eta) if eta is not None else None,
    }
    if status == "completed":
        data.update(completed_at=at(t), progress=100)
    if status == "failed":
        data.update(failed_at=at(t), error=error, retry_count=retry_count, can_retry=can_retry)
    return _event(name, data)


def agent_status(agent_id: str, status: str, t: float, *, task: str | None = None, progress: float = 0.0,
                 tasks_completed: int = 0, average: float = 0.0, success_rate: float = 100.0) -> dict[str, Any]:
    return _event("agent_status_update", {
        "agent_id": agent_id, "name": agent_id.replace("_", " ").title(), "type": "analysis", "status": status,
        "current_task": task, "progress": progress, "timestamp": at(t),
        "performance": {"tasks_completed": tasks_completed, "average_processing_time": average,
                        "success_rate": success_rate},
    })


def agent_error(agent_id: str, severity: str, error: str, t: float, *, can_retry: bool = True,
                affected: tuple[str, ...] = ()) -> dict[str, Any]:
    return _event("agent_error", {"agent_id": agent_id, "error": error, "severity": severity, "can_retry": can_retry,
                                  "affected_jobs": list(affected), "timestamp": at(t)})


def knowledge(item_id: str, title: str, type: str, tags: list[str], t: float, *,
              source_job: str = "job-1") -> dict[str, Any]:
    return _event("knowledge_item_created", {"item_id": item_id, "title": title, "type": type, "tags": tags,
                                             "source_job": source_job, "created_at": at(t), "timestamp": at(t)})


def insight(insight_id: str, title: str, type: str, confidence: float, t: float, *,
            metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return _event("insight_generated", {"insight_id": insight_id, "title": title, "description": f"about {title}",
                                        "type": type, "confidence": confidence, "metadata": metadata or {},
                                        "created_at": at(t), "timestamp": at(t)})


def metrics(t: float, total: int, minutes: float, rate: float, agents: int, items: int,
            changes: dict[str, str] | None = None) -> dict[str, Any]:
    return _event("dashboard_metrics_update", {
        "total_processed": total, "processing_time": minutes, "success_rate": rate, "active_agents": agents,
        "knowledge_items": items, "changes": changes or {}, "timestamp": at(t)})


def dag_run(run_id: str, dag_id: str, status: str, t: float, *, started: float) -> dict[str, Any]:
    return _event("dag_run_status", {"dag_id": dag_id, "run_id": run_id, "status": status,
                                     "started_at": at(started), "timestamp": at(t)})


def dag_progress(run_id: str, dag_id: str, t: float, *, completed: int, running: int, failed: int,
                 pending: int) -> dict[str, Any]:
    total = completed + running + failed + pending
    return _event("dag_run_progress", {
        "dag_id": dag_id, "run_id": run_id, "total_steps": total, "completed_steps": completed,
        "running_steps": running, "failed_steps": failed, "pending_steps": pending,
        "completion_percentage": 100.0 * completed / total, "timestamp": at(t)})


def step(run_id: str, dag_id: str, step_id: str, status: str, t: float, *, start: float | None = None,
         end: float | None = None, error: str | None = None) -> dict[str, Any]:
    return _event("step_status", {
        "dag_id": dag_id, "run_id": run_id, "step_id": step_id, "status": status,
        "start_time": at(start) if start is not None else None, "end_time": at(end) if end is not None else None,
        "duration": (end - start) * 1000 if start is not None and end is not None else None,
        "retry_count": 0, "error": error, "timestamp": at(t)})


def new_store() -> EventStore:
    """A store without its background thread: changes are delivered by ``feed`` (store.flush)."""
    return EventStore(background=False)


def feed(store: EventStore, events: list[dict[str, Any]]) -> None:
    """Ingest events and deliver the change batch to subscribers now."""
    store.ingest(events)
    store.flush()
