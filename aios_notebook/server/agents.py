"""The agent pool of the simulated deployment: who takes a step, and what agents report.

Each agent serves one pool (``catalog.AGENTS``: analysis, summarization, ingestion ...). A step
goes to the least busy online agent of its pool; the agent then reports itself ``working`` on it
(agent_status_update with ``current_task`` and ``progress``), and when the step ends it reports
``agent_task_completed`` (on success) and its new status. Its ``performance`` (tasks completed,
mean task time in seconds, success rate over its last 50 attempts) follows. Rare background
``agent_error`` events (1.5 an hour over the whole pool) come from all agents alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .catalog import AGENTS, STEP_ERRORS
from .content import agent_summary, task_description
from .entities import AgentState, Job
from .timestamps import HOUR_MS

if TYPE_CHECKING:
    from .workload import Workload

__all__ = ["AGENT_ERRORS_PER_HOUR", "AgentPool"]

AGENT_ERRORS_PER_HOUR = 1.5

#: agent pool -> the step whose error texts its background errors borrow
_KIND_STEP = {
    "analysis": "analysis",
    "summarization": "summarization",
    "ingestion": "fetch",
    "extraction": "text_extraction",
    "transcription": "transcription",
    "indexing": "indexing",
}


class AgentPool:
    """The agents of one :class:`~aios_notebook.server.workload.Workload`."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.agents: dict[str, AgentState] = {s.agent_id: AgentState(s, workload.now_ms) for s in AGENTS}
        self.pools: dict[str, list[AgentState]] = {}
        for agent in self.agents.values():
            self.pools.setdefault(agent.spec.kind, []).append(agent)
        self._task_seq = 0

    def pick(self, kind: str) -> AgentState | None:
        """The least busy online agent of a pool (ties: the one that started fewer tasks)."""
        best = None
        for agent in self.pools.get(kind, ()):
            if agent.status == "offline":
                continue
            if best is None or (len(agent.active), agent.tasks_started) < (len(best.active), best.tasks_started):
                best = agent
        return best

    def assign(self, agent: AgentState, job: Job) -> None:
        """Give the job's current step to ``agent``: it reports itself working on it."""
        workload = self.workload
        description = task_description(job.step.spec.step_id, job.type, job.document)
        agent.active[job.job_id] = (job, description)
        agent.tasks_started += 1
        agent.status = "working"
        agent.current_task = description
        agent.progress = 0.0
        agent.updated_ms = workload.now_ms
        job.agent = agent
        workload.emit("agent_status_update", agent.status_event(workload.stamp()))

    def release(self, agent: AgentState, job: Job, ok: bool) -> None:
        """The agent is done with the job's step (``ok``: it succeeded)."""
        workload = self.workload
        agent.active.pop(job.job_id, None)
        job.agent = None
        stamp = workload.stamp()
        if ok:
            spec = job.step.spec
            duration = (workload.now_ms - (job.step.start_ms or workload.now_ms)) / 1000
            agent.tasks_completed += 1
            agent.record(True, duration)
            self._task_seq += 1
            workload.emit("agent_task_completed", {
                "agent_id": agent.agent_id, "task_id": f"task-{self._task_seq}", "job_id": job.job_id,
                "task_type": spec.task_type, "duration": round(duration, 1),
                "result": {"summary": agent_summary(spec.step_id, job.document),
                           "confidence": round(workload.rng.uniform(0.78, 0.99), 2)},
                "timestamp": stamp,
            })
        else:
            agent.record(False)
        if agent.status != "offline":
            if agent.active:  # it reports the task it started last
                other, description = next(reversed(agent.active.values()))
                agent.current_task = description
                agent.progress = round(100 * workload.fraction(other), 1)
            else:
                agent.status = "idle"
                agent.current_task = None
                agent.progress = 0.0
        agent.updated_ms = workload.now_ms
        workload.emit("agent_status_update", agent.status_event(stamp))

    def error(self, agent: AgentState, text: str, severity: str, can_retry: bool, affected: list[str]) -> None:
        """An ``agent_error`` from ``agent`` now."""
        workload = self.workload
        agent.errors.append(workload.now_ms)
        workload.emit("agent_error", {
            "agent_id": agent.agent_id, "error": text, "severity": severity, "can_retry": can_retry,
            "affected_jobs": affected, "timestamp": workload.stamp(),
        })

    def early_warning(self) -> None:
        """The first background error of a run, at a fixed point early on (see ``Workload``)."""
        rng = self.workload.rng
        agent = rng.choice([a for a in self.agents.values() if a.status != "offline"])
        text, _, _ = rng.choice([e for e in STEP_ERRORS[_KIND_STEP[agent.spec.kind]] if e[2]])
        self.error(agent, text, "warning", True, list(agent.active))

    def schedule_background_errors(self) -> None:
        """The next rare error of the normal background (a Poisson process)."""
        gap = self.workload.rng.expovariate(AGENT_ERRORS_PER_HOUR / HOUR_MS)
        self.workload.at(self.workload.now_ms + 1 + int(gap), self._background_error)

    def _background_error(self) -> None:
        self.schedule_background_errors()
        rng = self.workload.rng
        agent = rng.choice(list(self.agents.values()))
        if agent.status == "offline":
            return
        text, _, retryable = rng.choice(STEP_ERRORS[_KIND_STEP[agent.spec.kind]])
        severity = "warning" if rng.random() < 0.8 else "error"
        self.error(agent, text, severity, retryable, list(agent.active))
