"""The simulated things: jobs (each with its DAG run and steps), agents and knowledge items.

Plain mutable records with ``__slots__``, owned by the workload. Each knows how to describe
itself as event data (``*_event``) and as a REST record (``to_rest``); those dicts are always new
objects, so nothing sent or buffered changes when the simulation moves on.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .catalog import AgentSpec, StepSpec, Workflow
from .content import Document
from .timestamps import iso_ms

__all__ = ["AgentState", "Job", "KnowledgeItem", "StepState"]

_RUNNING = "running"
_DONE = "success"
_FAILED = "failed"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


class StepState:
    """One task instance of a DAG run (Airflow states: pending, running, success, failed, up_for_retry)."""

    __slots__ = ("end_ms", "error", "retry_count", "spec", "start_ms", "status")

    def __init__(self, spec: StepSpec) -> None:
        self.spec = spec
        self.status = "pending"
        self.start_ms: int | None = None
        self.end_ms: int | None = None
        self.retry_count = 0
        self.error: str | None = None

    def event(self, job: Job, stamp: str) -> dict[str, Any]:
        """``step_status`` data; ``duration`` in milliseconds once the attempt ended."""
        ended = self.end_ms is not None and self.start_ms is not None
        return {
            "dag_id": job.workflow.dag_id,
            "run_id": job.run_id,
            "step_id": self.spec.step_id,
            "status": self.status,
            "start_time": _iso(self.start_ms),
            "end_time": _iso(self.end_ms),
            "duration": float(self.end_ms - self.start_ms) if ended else None,  # type: ignore[operator]
            "retry_count": self.retry_count,
            "error": self.error,
            "timestamp": stamp,
        }

    def to_rest(self, job: Job) -> dict[str, Any]:
        data = self.event(job, "")
        del data["timestamp"]
        data["agent_kind"] = self.spec.agent_kind
        return data


class Job:
    """A processing job and its DAG run (one run per job; a retried job reuses its run)."""

    __slots__ = (
        "agent",
        "attempt_ms",
        "can_retry",
        "completed_ms",
        "created_ms",
        "dag_status",
        "document",
        "error",
        "error_info",
        "failed_ms",
        "frac_at",
        "index",
        "job_id",
        "last_update_ms",
        "outcome",
        "progress",
        "result",
        "retry_count",
        "run_id",
        "seg_start_ms",
        "source",
        "started_text",
        "status",
        "step_end_frac",
        "step_total_ms",
        "steps",
        "token",
        "type",
        "updated_ms",
        "workflow",
    )

    def __init__(self, job_id: str, run_id: str, workflow: Workflow, document: Document, now: int,
                 source: str) -> None:
        self.job_id = job_id
        self.run_id = run_id
        self.workflow = workflow
        self.type = workflow.job_type
        self.document = document
        self.source = source  # "workload" or "upload"
        self.created_ms = now
        self.started_text = iso_ms(now)  # formatted once: every status event repeats it
        self.attempt_ms = now
        self.updated_ms = now
        self.last_update_ms = now  # last processing_job_status (the stall check reads it)
        self.status = "queued"
        self.dag_status = "queued"
        self.progress = 0
        self.index = 0
        self.steps = [StepState(spec) for spec in workflow.steps]
        self.token = 0  # bumped whenever the scheduled future of the current step is replanned
        self.retry_count = 0
        self.error: str | None = None
        self.error_info: tuple[str, str, bool] | None = None
        self.can_retry = False
        self.completed_ms: int | None = None
        self.failed_ms: int | None = None
        self.result: dict[str, Any] | None = None
        self.agent: AgentState | None = None
        # the current step attempt: planned length, where it ends (1.0 = success), progress so far
        self.step_total_ms = 0
        self.step_end_frac = 1.0
        self.frac_at = 0.0
        self.seg_start_ms = now
        self.outcome = "success"

    @property
    def step(self) -> StepState:
        return self.steps[min(self.index, len(self.steps) - 1)]

    def counts(self) -> tuple[int, int, int, int, int]:
        """(total, completed, running, failed, pending); up_for_retry counts as pending."""
        completed = running = failed = 0
        for step in self.steps:
            status = step.status
            if status == _DONE:
                completed += 1
            elif status == _RUNNING:
                running += 1
            elif status == _FAILED:
                failed += 1
        total = len(self.steps)
        return total, completed, running, failed, total - completed - running - failed

    # -- events -----------------------------------------------------------------------------------
    def status_event(self, stamp: str, eta_ms: int | None) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "run_id": self.run_id,
            "type": self.type,
            "status": self.status,
            "progress": self.progress,
            "filename": self.document.filename,
            "started_at": self.started_text,
            "estimated_completion": _iso(eta_ms),
            "current_step": self.step.spec.step_id,
            "timestamp": stamp,
        }

    def dag_status_event(self, stamp: str) -> dict[str, Any]:
        return {
            "dag_id": self.workflow.dag_id,
            "run_id": self.run_id,
            "status": self.dag_status,
            "started_at": self.started_text,
            "timestamp": stamp,
        }

    def progress_fields(self) -> dict[str, Any]:
        """The step counts of dag_run_progress (also part of the run's REST form)."""
        total, completed, running, failed, pending = self.counts()
        return {
            "total_steps": total,
            "completed_steps": completed,
            "running_steps": running,
            "failed_steps": failed,
            "pending_steps": pending,
            "completion_percentage": round(100.0 * completed / total, 1),
        }

    def dag_progress_event(self, stamp: str) -> dict[str, Any]:
        return {"dag_id": self.workflow.dag_id, "run_id": self.run_id, **self.progress_fields(), "timestamp": stamp}

    # -- REST -------------------------------------------------------------------------------------
    def to_rest(self, with_steps: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "dag_id": self.workflow.dag_id,
            "job_id": self.job_id,
            "type": self.type,
            "status": self.dag_status,
            "job_status": self.status,
            "filename": self.document.filename,
            "title": self.document.title,
            "progress": self.progress,
            "current_step": self.step.spec.step_id,
            "started_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
            "completed_at": _iso(self.completed_ms),
            "failed_at": _iso(self.failed_ms),
            "error": self.error,
            "retry_count": self.retry_count,
            **self.progress_fields(),
        }
        if with_steps:
            data["steps"] = [step.to_rest(self) for step in self.steps]
            data["result"] = self.result
        return data


class AgentState:
    """An agent of the pool: its status follows the tasks it runs."""

    __slots__ = (
        "_duration_total",
        "_successes",
        "active",
        "current_task",
        "durations",
        "errors",
        "outcomes",
        "progress",
        "spec",
        "status",
        "tasks_completed",
        "tasks_started",
        "updated_ms",
    )

    def __init__(self, spec: AgentSpec, now: int) -> None:
        self.spec = spec
        self.status = "idle"  # idle | working | offline
        self.active: dict[str, tuple[Job, str]] = {}  # job_id -> (job, task description)
        self.current_task: str | None = None
        self.progress = 0.0
        self.tasks_completed = 0
        self.tasks_started = 0
        self.durations: deque[float] = deque(maxlen=50)  # seconds, last 50 successful tasks
        self.outcomes: deque[bool] = deque(maxlen=50)
        self._duration_total = 0.0  # running sums of the two windows, kept by record()
        self._successes = 0
        self.errors: deque[int] = deque()  # times of recent agent_error events (analytics prunes)
        self.updated_ms = now

    @property
    def agent_id(self) -> str:
        return self.spec.agent_id

    @property
    def name(self) -> str:
        return self.spec.name

    def record(self, ok: bool, duration: float | None = None) -> None:
        """A task attempt ended (``duration`` in seconds for a successful one)."""
        outcomes = self.outcomes
        if len(outcomes) == outcomes.maxlen:
            self._successes -= outcomes[0]
        outcomes.append(ok)
        self._successes += ok
        if duration is not None:
            durations = self.durations
            if len(durations) == durations.maxlen:
                self._duration_total -= durations[0]
            durations.append(duration)
            self._duration_total += duration

    def performance(self) -> dict[str, Any]:
        durations, outcomes = self.durations, self.outcomes
        return {
            "tasks_completed": self.tasks_completed,
            "average_processing_time": round(self._duration_total / len(durations), 1) if durations else 0.0,
            "success_rate": round(100.0 * self._successes / len(outcomes), 1) if outcomes else 100.0,
        }

    def status_event(self, stamp: str) -> dict[str, Any]:
        return {
            "agent_id": self.spec.agent_id,
            "name": self.spec.name,
            "type": self.spec.type,
            "status": self.status,
            "current_task": self.current_task,
            "progress": self.progress,
            "performance": self.performance(),
            "timestamp": stamp,
        }

    def to_rest(self) -> dict[str, Any]:
        data = self.status_event(iso_ms(self.updated_ms))
        data["updated_at"] = data.pop("timestamp")
        data["active_jobs"] = list(self.active)
        data["handles"] = self.spec.kind
        return data


class KnowledgeItem:
    """A knowledge-base entry created from a completed job."""

    __slots__ = ("created_ms", "item_id", "source_job", "summary", "tags", "title", "type",
                 "update_count", "updated_fields", "updated_ms")

    def __init__(self, item_id: str, title: str, kind: str, source_job: str, tags: list[str],
                 summary: str, now: int) -> None:
        self.item_id = item_id
        self.title = title
        self.type = kind
        self.source_job = source_job
        self.tags = tags
        self.summary = summary
        self.created_ms = now
        self.updated_ms = now
        self.updated_fields: list[str] = []
        self.update_count = 0

    def created_event(self, stamp: str) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "type": self.type,
            "source_job": self.source_job,
            "tags": list(self.tags),
            "created_at": iso_ms(self.created_ms),
            "timestamp": stamp,
        }

    def to_rest(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "type": self.type,
            "source_job": self.source_job,
            "tags": list(self.tags),
            "summary": self.summary,
            "created_at": iso_ms(self.created_ms),
            "updated_at": iso_ms(self.updated_ms),
            "updated_fields": list(self.updated_fields),
            "update_count": self.update_count,
        }
