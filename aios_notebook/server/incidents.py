"""What a scenario changes in the workload, and when (the windows of ``scenarios.py``).

The workload asks :class:`Incidents` at the few points where a scenario can matter (arrival mix,
step duration, failure chances, whether a step hangs, whether knowledge flows) and lets it act at
the edges of each window (an agent going offline, running jobs freezing, an error stream).
Outside the windows every answer is the ``steady`` one. How strong each effect is follows the
scenario's ``magnitude`` (``Scenario.scaled`` and ``Scenario.share``): at 1.0 every answer, and
every draw of the random generator, is the one of the unscaled anomaly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .catalog import JOB_TYPE_WEIGHTS, StepSpec
from .scenarios import SCENARIOS, Window
from .timestamps import HOUR_MS, ms_from_epoch

if TYPE_CHECKING:
    from .entities import AgentState, Job
    from .workload import Workload

__all__ = ["Incidents"]


def _boosted(params: Any, boost: float | None = None) -> dict[str, float]:
    boost = params["arrival_factor"] if boost is None else boost
    kind = params["job_type"]
    return {k: w * boost if k == kind else w for k, w in JOB_TYPE_WEIGHTS.items()}


class Incidents:
    """The active scenario's effects on one :class:`~aios_notebook.server.workload.Workload`."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.scenario = workload.scenario
        self.name = workload.scenario.name
        self.params: Any = workload.scenario.params
        self._erroring: set[str] = set()  # jobs whose current task will hit an agent error

    # -- windows ----------------------------------------------------------------------------
    def schedule_first(self) -> None:
        if self.scenario.has_windows:
            self._schedule(0)

    def _schedule(self, index: int) -> None:
        window = self.scenario.window(self.workload.origin_ms / 1000, index)
        self.workload.at(ms_from_epoch(window.start), self._open, window)

    def _open(self, window: Window) -> None:
        workload = self.workload
        workload.window = window
        workload.at(ms_from_epoch(window.end), self._close, window)
        self._schedule(window.index + 1)
        if self.name == "agent_outage":
            magnitude = self.scenario.magnitude
            if magnitude <= 0:
                return  # no outage at all
            self._outage_begins(window.entities["agent_ids"][0])
            if magnitude < 1:  # offline for that share of the window only
                back = window.start + magnitude * (window.end - window.start)
                workload.at(ms_from_epoch(back), self._outage_ends, window)
        elif self.name == "stuck_jobs":
            until = ms_from_epoch(window.end)
            for job in list(workload.active.values()):
                if self._hangs(job, job.step.spec) and job.step.status == "running":
                    workload.hold(job, until)
        elif self.name == "agent_errors":
            self._next_stream_error(window)

    def _close(self, window: Window) -> None:
        workload = self.workload
        if workload.window is window:
            workload.window = None
        if self.name == "agent_outage" and self.scenario.magnitude >= 1:
            self._outage_ends(window)

    def _outage_ends(self, window: Window) -> None:
        workload = self.workload
        agent = workload.agents[window.entities["agent_ids"][0]]
        agent.status = "idle"
        agent.updated_ms = workload.now_ms
        workload.emit("agent_status_update", agent.status_event(workload.stamp()))

    @property
    def active(self) -> bool:
        return self.workload.window is not None

    # -- arrivals ---------------------------------------------------------------------------
    def max_arrival_boost(self) -> float:
        """The largest factor any scenario applies to the total arrival rate.

        The same for every scenario on purpose: arrivals are thinned from one candidate stream,
        so runs of different scenarios with one seed stay identical until their first window
        (a scenario reshaped beyond the largest default raises it, for its own run).
        """
        boosts = [sum(_boosted(s.params).values()) for s in SCENARIOS.values() if "arrival_factor" in s.params]
        if "arrival_factor" in self.params:
            boosts.append(sum(self._boosted().values()))
        return max([1.0, *boosts])

    def _boosted(self) -> dict[str, float]:
        return _boosted(self.params, self.scenario.scaled("arrival_factor", 1.0))

    def type_weights(self) -> dict[str, float]:
        """Arrival weight per job type now (they sum to the factor on the normal total rate)."""
        if self.name == "volume_spike" and self.active:
            return self._boosted()
        return JOB_TYPE_WEIGHTS

    # -- steps ------------------------------------------------------------------------------
    def duration_factor(self, job: Job, spec: StepSpec, agent: AgentState | None) -> float:
        if not self.active or agent is None:
            return 1.0
        if self.name == "slow_processing":
            return self.scenario.scaled("duration_factor", 1.0)
        if (self.name == "agent_errors" and agent.agent_id == self.params["agent_id"]
                and self.scenario.magnitude > 0 and self.workload.rng.random() < self.scenario.scaled("task_error_probability", 0.0)):
            self._erroring.add(job.job_id)
            return self.scenario.scaled("task_slowdown", 1.0)
        return 1.0

    def hazards(self, job: Job, spec: StepSpec, p_fail: float,
                p_retry: float) -> tuple[float, float, tuple[str, str, bool] | None]:
        """(terminal failure chance, transient failure chance, forced error) of a step attempt."""
        if not self.active:
            return p_fail, p_retry, None
        params = self.params
        if self.name == "success_rate_drop":
            return min(0.9, p_fail * self.scenario.scaled("failure_factor", 1.0)), p_retry, None
        if self.name == "failure_burst":
            if self.scenario.magnitude <= 0:
                return p_fail, p_retry, None
            window_left = ms_from_epoch(self.workload.window.end) - self.workload.now_ms  # type: ignore[union-attr]
            if window_left < 2000 * spec.mean_s:
                # a step that would end after the outage is over is not hit: failures stay inside
                return p_fail, p_retry, None
            forced = (params["error"], params["error_type"], True)
            return max(p_fail, min(0.95, self.scenario.scaled("step_failure_probability", 0.0))), p_retry, forced
        if (self.name == "dag_step_failures" and job.workflow.dag_id == params["dag_id"]
                and spec.step_id == params["step_id"]):
            return p_fail, min(0.99, self.scenario.scaled("retry_probability", p_retry)), None
        return p_fail, p_retry, None

    def _hangs(self, job: Job, spec: StepSpec) -> bool:
        # magnitude: the share of the target jobs that hang
        return (job.type == self.params["job_type"] and spec.step_id == self.params["step_id"]
                and self.scenario.share(job.job_id))

    def hold_until(self, job: Job, spec: StepSpec) -> int | None:
        """When a step that starts now hangs: the end of the stuck_jobs window; else None."""
        window = self.workload.window
        if window is not None and self.name == "stuck_jobs" and self._hangs(job, spec):
            return ms_from_epoch(window.end)
        return None

    def step_started(self, job: Job, agent: AgentState | None) -> None:
        """An agent_errors task error happens part-way through the task it slowed down."""
        if agent is None or job.job_id not in self._erroring:
            return
        self._erroring.discard(job.job_id)
        at = self.workload.now_ms + int(job.step_total_ms * self.workload.rng.uniform(0.2, 0.6))
        self.workload.at(at, self._task_error, job, job.token, agent)

    def _task_error(self, job: Job, token: int, agent: AgentState) -> None:
        if token != job.token:
            return
        agent.record(False)  # the attempt failed; the agent retries it internally
        self.workload.staff.error(agent, "Connection timeout to language model; retrying", "warning",
                                  True, [job.job_id])

    def _next_stream_error(self, window: Window) -> None:
        rate = self.scenario.scaled("errors_per_hour", 0.0)
        if rate <= 0:
            return
        gap = self.workload.rng.expovariate(rate / HOUR_MS)
        self.workload.at(self.workload.now_ms + 1 + int(gap), self._stream_error, window)

    def _stream_error(self, window: Window) -> None:
        workload = self.workload
        if workload.window is not window:
            return
        self._next_stream_error(window)
        agent = workload.agents[self.params["agent_id"]]
        text, severity = workload.rng.choice((
            ("Rate limit exceeded by the language model provider (429)", "warning"),
            ("Language model latency above 20 s", "warning"),
            ("Connection pool to the language model exhausted", "error"),
        ))
        workload.staff.error(agent, text, severity, True, list(agent.active))

    # -- agents -----------------------------------------------------------------------------
    def _outage_begins(self, agent_id: str) -> None:
        workload = self.workload
        agent = workload.agents[agent_id]
        moving = list(agent.active.values())
        workload.staff.error(agent, "Agent heartbeat lost: marked offline", "critical", False,
                             [job.job_id for job, _ in moving])
        agent.status = "offline"
        agent.current_task = None
        agent.progress = 0.0
        agent.updated_ms = workload.now_ms
        workload.emit("agent_status_update", agent.status_event(workload.stamp()))
        for job, _ in moving:
            # the task moves to a peer and continues from where it was
            fraction = workload.fraction(job)
            agent.active.pop(job.job_id, None)
            job.agent = None
            peer = workload.staff.pick(agent.spec.kind)
            if peer is None:
                workload.hold(job, workload.now_ms + HOUR_MS)
                continue
            workload.staff.assign(peer, job)
            workload.plan(job, fraction)

    # -- knowledge --------------------------------------------------------------------------
    def knowledge_flows(self, key: str = "") -> bool:
        """False inside a knowledge_stall window: no item is created or updated (at a magnitude
        below 1, only for that share of the jobs or items, told apart by ``key``)."""
        return not (self.name == "knowledge_stall" and self.active and self.scenario.share(key))
