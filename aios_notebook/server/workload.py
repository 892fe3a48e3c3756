"""The simulated AIOS v2 deployment: a seeded discrete-event simulation on a simulated clock.

One :class:`Workload` holds the whole state (jobs with their DAG runs, agents, knowledge items,
insights, metrics) and a heap of future happenings keyed by integer simulated milliseconds.
``advance(until)`` pops the heap up to ``until`` and returns the events that happened, in time
order. The live server calls it on every tick with "now" on the simulated clock; :func:`generate`
calls it in chunks without any socket, so both emit exactly the same events for a seed.

What happens (``catalog.py`` has the workflows, agents and texts; ``scenarios.py`` the anomalies):

- Jobs (pdf 55 %, audio 20 %, url 25 %) arrive as a Poisson process, 120 an hour on average,
  with a daily cycle (x0.6 at 02:00 UTC to x1.4 at 14:00 UTC) and quieter weekends (x0.65).
- Each job has one DAG run (``manual__<time>``, unique) and walks its steps. A step start sends
  step_status running, dag_run_progress, processing_job_status (rising progress, current_step,
  estimated_completion) and, for agent steps, agent_status_update; long steps report progress
  every ~30 s; the end sends step_status and agent_task_completed. About 3 % of jobs fail
  (processing_job_failed, the ``error`` event with code processing_error, dag_run_status failed);
  retryable failures come back 2-10 minutes later on the same run. A step may also fail
  transiently (up_for_retry) and be retried by the DAG 30-90 s later.
- Agents take steps from their pool (``agents.py``: the least busy online agent); their status,
  current task, progress and performance follow the work. Rare agent_error events (1.5 an hour).
- So that every run shows every kind of event within its first hour, whatever the hour of day,
  one agent warning comes 10-40 minutes in and one retryable job failure 5-30 minutes in.
- 90 % of completed jobs create a knowledge item; a quarter of those are updated later.
- dashboard_metrics_update every 30 s and insight_generated from ``analytics.py``.

All randomness comes from one ``random.Random(seed)``; the same seed, scenario and start give the
same events. Progress never goes down, dag_run_progress counts always add up to total_steps, and
every job sends processing_job_status before it completes or fails.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ..exceptions import ConfigurationError
from .agents import AgentPool
from .analytics import Analytics
from .catalog import JOB_TYPE_WEIGHTS, STEP_ERRORS, WORKFLOWS
from .content import clean_filename, document_for_upload, job_result, new_document
from .entities import AgentState, Job, KnowledgeItem, StepState
from .incidents import Incidents
from .scenarios import Scenario, Window, get_scenario
from .timestamps import DAY_MS, HOUR_MS, MINUTE_MS, epoch_of, iso_ms, ms_from_epoch, run_id_ms

__all__ = ["DEFAULT_START", "Event", "Workload", "generate"]

#: the fixed start of offline generation: 2026-01-05T00:00:00Z, a Monday
DEFAULT_START = 1_767_571_200.0

Event = tuple[float, str, dict[str, Any]]

ARRIVALS_PER_HOUR = 120.0
JOB_FAILURE_RATE = 0.03  # share of job attempts that fail outside anomalies
STEP_RETRY_HAZARD = 0.004  # chance that a step attempt fails transiently (up_for_retry)
MAX_STEP_RETRIES = 3
MAX_JOB_RETRIES = 3
KNOWLEDGE_PROBABILITY = 0.9
KNOWLEDGE_UPDATE_PROBABILITY = 0.25
TICK_MS = 30_000  # a running job reports progress about this often
MAX_TICKS = 6
DURATION_SIGMA = 0.35  # log-normal spread of step durations
METRICS_EVERY_MS = 30_000
DETECT_EVERY_MS = 5 * MINUTE_MS
_KNOWLEDGE_TYPE = {"pdf": "document", "audio": "transcript", "url": "article"}


class Workload:
    """The simulated deployment. Not thread-safe: one owner advances it and reads its state.

    Args:
        seed: seed of the only random generator.
        scenario: a name of ``scenarios.SCENARIOS``.
        start: the simulation's start: epoch seconds, a datetime or an ISO time
            (default :data:`DEFAULT_START`).
        scenario_params: reshape the anomaly (``magnitude``, window times, target ...; see
            :meth:`~aios_notebook.server.scenarios.Scenario.reshape`).
        arrivals_per_hour: mean job arrival rate before the daily and weekly cycles.
        keep_runs: finished runs kept for REST look-ups (the oldest are forgotten first).
        keep_items: knowledge items kept for REST look-ups.
        first_id: where job and knowledge-item numbers start counting (job-10001 and kb-item-1
            by default): stretches of one long history simulated apart need ids of their own.
    """

    def __init__(
        self,
        seed: int = 7,
        scenario: str = "steady",
        start: float | datetime | str | None = None,
        *,
        scenario_params: Mapping[str, Any] | None = None,
        arrivals_per_hour: float = ARRIVALS_PER_HOUR,
        keep_runs: int = 20_000,
        keep_items: int = 20_000,
        first_id: int = 0,
    ) -> None:
        self.seed = seed
        self.scenario: Scenario = get_scenario(scenario).reshape(scenario_params)
        origin = epoch_of(start)
        self.origin_ms = ms_from_epoch(DEFAULT_START if origin is None else origin)
        self.now_ms = self.origin_ms
        self.arrivals_per_hour = arrivals_per_hour
        self.rng = random.Random(seed)
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._out: list[Event] = []
        self._now_s = self.now_ms / 1000
        self._stamp_ms = -1
        self._stamp_text = ""
        self._keep_runs = keep_runs
        self._keep_items = keep_items
        # state (read by the REST layer)
        self.staff = AgentPool(self)
        self.agents: dict[str, AgentState] = self.staff.agents
        self.active: dict[str, Job] = {}
        self.runs: OrderedDict[str, Job] = OrderedDict()
        self.run_of_job: dict[str, str] = {}
        self.knowledge: OrderedDict[str, KnowledgeItem] = OrderedDict()
        self.insights: deque[dict[str, Any]] = deque(maxlen=1000)
        self.metrics: dict[str, Any] | None = None
        self.recent_activity: deque[dict[str, Any]] = deque(maxlen=20)
        self.window: Window | None = None
        if isinstance(first_id, bool) or not isinstance(first_id, int) or first_id < 0:
            raise ConfigurationError(f"first_id must be a whole number >= 0, got {first_id!r}")
        self._job_seq = 10_000 + first_id
        self._item_seq = first_id
        self._last_run_us = 0
        self._first_failure_due: int | None = None  # see _start
        self._prepare_workflows()
        self.analytics = Analytics(
            self._expected_minutes(),
            self.expected_arrivals,
            {job_type: flow.dag_id for job_type, flow in WORKFLOWS.items()},
        )
        self.incidents = Incidents(self)
        self._max_rate = arrivals_per_hour * 1.4 * self.incidents.max_arrival_boost()
        self._start()

    # -- the clock and the heap -------------------------------------------------------------
    def at(self, t_ms: int, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` at simulated time ``t_ms`` (never before now)."""
        heapq.heappush(self._heap, (max(t_ms, self.now_ms), next(self._order), fn, args))

    def advance(self, until: float) -> list[Event]:
        """Run the simulation up to epoch seconds ``until``; the events that happened, in order."""
        return self.advance_ms(ms_from_epoch(until))

    def advance_ms(self, until_ms: int) -> list[Event]:
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until_ms:
            t, _, fn, args = pop(heap)
            if t != self.now_ms:
                self.now_ms = t
                self._now_s = t / 1000
            fn(*args)
        if until_ms > self.now_ms:
            self.now_ms = until_ms
            self._now_s = until_ms / 1000
        return self.flush()

    def flush(self) -> list[Event]:
        """The events produced since the last call (an upload's, before the next ``advance``)."""
        out, self._out = self._out, []
        return out

    @property
    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return self.now_ms / 1000

    def stamp(self) -> str:
        """The ISO timestamp of now (cached: many events share an instant)."""
        if self._stamp_ms != self.now_ms:
            self._stamp_ms = self.now_ms
            self._stamp_text = iso_ms(self.now_ms)
        return self._stamp_text

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self._out.append((self._now_s, event, data))

    # -- set-up -----------------------------------------------------------------------------
    def _prepare_workflows(self) -> None:
        # per job type: each step's terminal failure chance (3 % a job in all, shared by weight),
        # where its progress band starts and how wide it is, and the mean time left after it
        self._fail_p: dict[str, list[float]] = {}
        self._band: dict[str, list[tuple[float, float]]] = {}
        self._tail_ms: dict[str, list[int]] = {}
        for job_type, flow in WORKFLOWS.items():
            weights = sum(step.failure_weight for step in flow.steps)
            self._fail_p[job_type] = [
                1 - (1 - JOB_FAILURE_RATE) ** (step.failure_weight / weights) for step in flow.steps
            ]
            total = flow.mean_total_s
            bands, done = [], 0.0
            for step in flow.steps:
                bands.append((100 * done / total, 100 * step.mean_s / total))
                done += step.mean_s
            self._band[job_type] = bands
            self._tail_ms[job_type] = [
                int(1000 * sum(s.mean_s for s in flow.steps[i + 1:])) for i in range(len(flow.steps))
            ]

    def _expected_minutes(self) -> float:
        return sum(JOB_TYPE_WEIGHTS[t] * WORKFLOWS[t].mean_total_s for t in WORKFLOWS) / 60

    def _start(self) -> None:
        stamp = self.stamp()
        for agent in self.agents.values():
            self.emit("agent_status_update", agent.status_event(stamp))
        self._next_arrival()
        self.at(self.now_ms + METRICS_EVERY_MS, self._metrics_tick)
        self.at(self.now_ms + DETECT_EVERY_MS, self._detect_tick)
        self.at(self.now_ms + HOUR_MS, self._hourly_tick)
        self.at(self.now_ms + 45 * MINUTE_MS, self._pattern_tick)
        self.staff.schedule_background_errors()
        self.incidents.schedule_first()
        # every run shows every kind of event within its first hour, whatever the hour of day:
        # one agent warning 10-40 minutes in, and one retryable job failure 5-30 minutes in
        self.at(self.now_ms + self.rng.randint(10 * MINUTE_MS, 40 * MINUTE_MS), self.staff.early_warning)
        self._first_failure_due = self.now_ms + self.rng.randint(5 * MINUTE_MS, 30 * MINUTE_MS)

    # -- arrivals ---------------------------------------------------------------------------
    def base_rate(self, t_ms: int) -> float:
        """Normal arrivals per hour at ``t_ms``: the daily and weekly cycles, no anomaly."""
        hour = (t_ms % DAY_MS) / HOUR_MS
        weekday = (t_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        week = 0.65 if weekday >= 5 else 1.0
        return self.arrivals_per_hour * week * (1 + 0.4 * math.sin(2 * math.pi * (hour - 8) / 24))

    def expected_arrivals(self, start_ms: int, end_ms: int) -> float:
        """The normal number of arrivals between two instants (rate at the midpoint)."""
        return self.base_rate((start_ms + end_ms) // 2) * (end_ms - start_ms) / HOUR_MS

    def _next_arrival(self) -> None:
        # thinning: candidates at the highest possible rate, each kept with rate(t) / max_rate
        gap = self.rng.expovariate(self._max_rate / HOUR_MS)
        self.at(self.now_ms + 1 + int(gap), self._arrival)

    def _arrival(self) -> None:
        self._next_arrival()
        rng = self.rng
        weights = self.incidents.type_weights()
        rate = self.base_rate(self.now_ms) * sum(weights.values())
        if rng.random() * self._max_rate >= rate:
            return
        pick = rng.random() * sum(weights.values())
        job_type = "url"
        for job_type, weight in weights.items():  # noqa: B007 - the last type takes any rounding rest
            pick -= weight
            if pick < 0:
                break
        self.create_job(job_type, new_document(job_type, rng), "workload")

    def submit(self, job_type: str, filename: str) -> Job:
        """Start a job for a REST upload now (call ``flush`` or ``advance`` for its first events).

        ``filename`` is only shown in events (cleaned); nothing is read from or written to disk.
        """
        if job_type not in WORKFLOWS:
            raise ValueError(f"unknown job type {job_type!r}; expected one of {sorted(WORKFLOWS)}")
        display = filename if job_type == "url" else clean_filename(filename)
        return self.create_job(job_type, document_for_upload(job_type, display, self.rng), "upload")

    def create_job(self, job_type: str, document: Any, source: str) -> Job:
        self._job_seq += 1
        us = max(self.now_ms * 1000, self._last_run_us + 1)  # run ids unique to the microsecond
        self._last_run_us = us
        job = Job(f"job-{self._job_seq}", run_id_ms(us), WORKFLOWS[job_type], document, self.now_ms, source)
        self.active[job.job_id] = job
        self.runs[job.run_id] = job
        self.run_of_job[job.job_id] = job.run_id
        if len(self.runs) > self._keep_runs:
            _, old = self.runs.popitem(last=False)
            self.run_of_job.pop(old.job_id, None)
        self.analytics.arrival(self.now_ms, job_type)
        stamp = self.stamp()
        delay = self.rng.randint(500, 4000)  # scheduler latency before the first step
        self.emit("processing_job_status", job.status_event(stamp, self._eta(job, 0.0) + delay))
        self.emit("dag_run_status", job.dag_status_event(stamp))
        self.emit("dag_run_progress", job.dag_progress_event(stamp))
        self.at(self.now_ms + delay, self._begin_step, job, job.token)
        return job

    # -- steps ------------------------------------------------------------------------------
    def _begin_step(self, job: Job, token: int) -> None:
        if token == job.token:
            self.start_step(job)

    def start_step(self, job: Job) -> None:
        """Start (or restart) the job's current step now."""
        step = job.step
        spec = step.spec
        agent = None
        if spec.agent_kind is not None:
            agent = self.staff.pick(spec.agent_kind)
            if agent is None:  # the whole pool is offline: try again shortly
                job.token += 1
                self.at(self.now_ms + 30_000, self._begin_step, job, job.token)
                return
        rng = self.rng
        mean = spec.mean_s * 1000
        duration = rng.lognormvariate(math.log(mean) - DURATION_SIGMA**2 / 2, DURATION_SIGMA)
        job.outcome, job.error_info = self._decide(job, step)
        job.step_end_frac = 1.0 if job.outcome == "success" else rng.uniform(0.2, 0.9)
        duration *= self.incidents.duration_factor(job, spec, agent)
        job.step_total_ms = max(500, int(duration))
        stamp = self.stamp()
        step.status = "running"
        step.start_ms = self.now_ms
        step.end_ms = None
        step.error = None
        job.status = "processing"
        job.updated_ms = self.now_ms
        if job.dag_status != "running":
            job.dag_status = "running"
            self.emit("dag_run_status", job.dag_status_event(stamp))
        self.emit("step_status", step.event(job, stamp))
        self.emit("dag_run_progress", job.dag_progress_event(stamp))
        self._report(job, 0.0)
        if agent is not None:
            self.staff.assign(agent, job)
        hold = self.incidents.hold_until(job, spec)
        if hold is not None:
            job.frac_at = 0.0
            self.hold(job, hold)
        else:
            self.plan(job, 0.0)
            self.incidents.step_started(job, agent)

    def _decide(self, job: Job, step: StepState) -> tuple[str, tuple[str, str, bool] | None]:
        """Will this attempt succeed, fail for good, or fail transiently (up_for_retry)?"""
        spec = step.spec
        p_fail, p_retry, forced = self.incidents.hazards(
            job, spec, self._fail_p[job.type][job.index], STEP_RETRY_HAZARD
        )
        draw = self.rng.random()
        errors = STEP_ERRORS[spec.step_id]
        due = self._first_failure_due
        if due is not None and self.now_ms >= due and any(e[2] for e in errors):
            self._first_failure_due = None
            return "failed", self.rng.choice([e for e in errors if e[2]])
        if draw < p_fail:
            return "failed", forced or self.rng.choice(errors)
        if draw < p_fail + p_retry:
            error = self.rng.choice([e for e in errors if e[2]] or list(errors))
            return ("up_for_retry" if step.retry_count < MAX_STEP_RETRIES else "failed"), error
        return "success", None

    def fraction(self, job: Job) -> float:
        """How far the current step attempt has got (0..step_end_frac)."""
        done = job.frac_at + (self.now_ms - job.seg_start_ms) / job.step_total_ms
        return min(job.step_end_frac, done)

    def plan(self, job: Job, start_frac: float) -> None:
        """Schedule the rest of the current step attempt from ``start_frac``, starting now."""
        job.token += 1
        token = job.token
        now = self.now_ms
        job.frac_at = start_frac
        job.seg_start_ms = now
        total = job.step_total_ms
        end = job.step_end_frac
        ticks = min(MAX_TICKS, total // TICK_MS)
        middle = (ticks + 1) // 2
        for k in range(1, ticks + 1):
            f = k / (ticks + 1)
            if start_frac < f < end:
                self.at(now + int((f - start_frac) * total), self._tick, job, token, f, k == middle)
        self.at(now + max(1, int((end - start_frac) * total)), self._end_step, job, token)

    def hold(self, job: Job, until_ms: int) -> None:
        """Freeze the current step (nothing is sent) until ``until_ms`` plus up to two minutes."""
        job.frac_at = self.fraction(job) if job.step_total_ms else 0.0
        job.token += 1
        self.at(until_ms + self.rng.randint(0, 120_000), self._resume, job, job.token)

    def _resume(self, job: Job, token: int) -> None:
        if token == job.token:
            self.plan(job, job.frac_at)

    def _eta(self, job: Job, fraction: float) -> int:
        left = (1 - fraction) * (job.step_total_ms or job.step.spec.mean_s * 1000)
        return self.now_ms + int(left) + self._tail_ms[job.type][min(job.index, len(job.steps) - 1)]

    def _report(self, job: Job, fraction: float) -> None:
        start, width = self._band[job.type][job.index]
        job.progress = max(job.progress, min(99, int(start + width * fraction)))
        job.last_update_ms = job.updated_ms = self.now_ms
        self.emit("processing_job_status", job.status_event(self.stamp(), self._eta(job, fraction)))

    def _tick(self, job: Job, token: int, fraction: float, agent_update: bool) -> None:
        if token != job.token:
            return
        self._report(job, fraction)
        agent = job.agent
        if agent_update and agent is not None:
            entry = agent.active.get(job.job_id)
            if entry is not None:
                agent.current_task = entry[1]
                agent.progress = round(100 * fraction, 1)
                agent.updated_ms = self.now_ms
                self.emit("agent_status_update", agent.status_event(self.stamp()))

    def _end_step(self, job: Job, token: int) -> None:
        if token != job.token:
            return
        step = job.step
        step.end_ms = self.now_ms
        stamp = self.stamp()
        agent = job.agent
        if job.outcome == "success":
            step.status = "success"
            self.emit("step_status", step.event(job, stamp))
            if agent is not None:
                self.staff.release(agent, job, True)
            job.index += 1
            if job.index >= len(job.steps):
                job.index = len(job.steps) - 1
                self._complete(job)
            else:
                self.start_step(job)
            return
        text, error_type, retryable = job.error_info or ("Unknown error", "internal_error", True)
        step.status = job.outcome  # failed | up_for_retry
        step.error = text
        self.emit("step_status", step.event(job, stamp))
        if agent is not None:
            self.staff.release(agent, job, False)
        self.emit("dag_run_progress", job.dag_progress_event(stamp))
        self.analytics.step_failure(self.now_ms, job.workflow.dag_id)
        job.token += 1
        if job.outcome == "up_for_retry":
            self.at(self.now_ms + self.rng.randint(30_000, 90_000), self._retry_step, job, job.token)
        else:
            self._fail(job, text, error_type, retryable)

    def _retry_step(self, job: Job, token: int) -> None:
        if token == job.token:
            job.step.retry_count += 1
            self.start_step(job)

    # -- outcomes ---------------------------------------------------------------------------
    def _fail(self, job: Job, text: str, error_type: str, retryable: bool) -> None:
        stamp = self.stamp()
        job.status = job.dag_status = "failed"
        job.error = text
        job.failed_ms = job.updated_ms = self.now_ms
        job.can_retry = retryable and job.retry_count < MAX_JOB_RETRIES
        self.emit("processing_job_failed", {
            "job_id": job.job_id, "run_id": job.run_id, "type": job.type, "status": "failed",
            "error": text, "failed_at": stamp, "retry_count": job.retry_count,
            "can_retry": job.can_retry, "timestamp": stamp,
        })
        self.emit("dag_run_status", job.dag_status_event(stamp))
        self.emit("error", {
            "code": "processing_error",
            "message": f"Failed to process {job.document.filename}",
            "details": {"job_id": job.job_id, "run_id": job.run_id, "error_type": error_type,
                        "retry_available": job.can_retry},
            "timestamp": stamp,
        })
        self.analytics.outcome(self.now_ms, False, (self.now_ms - job.attempt_ms) / 60_000)
        self._activity("processing_job_failed", job, f"{job.type} job failed: {text}")
        if job.can_retry:
            self.at(self.now_ms + self.rng.randint(2 * MINUTE_MS, 10 * MINUTE_MS), self._retry_job, job, job.token)
        else:
            self.active.pop(job.job_id, None)

    def _retry_job(self, job: Job, token: int) -> None:
        if token != job.token:
            return
        stamp = self.stamp()
        job.retry_count += 1
        job.attempt_ms = self.now_ms
        job.error = None
        job.step.retry_count += 1
        job.step.status = "pending"
        job.status = job.dag_status = "queued"
        job.last_update_ms = job.updated_ms = self.now_ms
        delay = self.rng.randint(500, 4000)
        self.emit("processing_job_status", job.status_event(stamp, self._eta(job, 0.0) + delay))
        self.emit("dag_run_status", job.dag_status_event(stamp))
        self.emit("dag_run_progress", job.dag_progress_event(stamp))
        self.at(self.now_ms + delay, self._begin_step, job, job.token)

    def _complete(self, job: Job) -> None:
        stamp = self.stamp()
        job.status = "completed"
        job.dag_status = "success"
        job.progress = 100
        job.completed_ms = job.updated_ms = self.now_ms
        job.result = job_result(job.document, self.rng)
        self.emit("dag_run_progress", job.dag_progress_event(stamp))
        self.emit("processing_job_completed", {
            "job_id": job.job_id, "run_id": job.run_id, "type": job.type, "status": "completed",
            "progress": 100, "completed_at": stamp, "result": job.result, "timestamp": stamp,
        })
        self.emit("dag_run_status", job.dag_status_event(stamp))
        self.analytics.outcome(self.now_ms, True, (self.now_ms - job.attempt_ms) / 60_000)
        self._activity("processing_job_completed", job, f"{job.type} job completed: {job.document.title}")
        self.active.pop(job.job_id, None)
        if self.rng.random() < KNOWLEDGE_PROBABILITY and self.incidents.knowledge_flows(job.job_id):
            self._create_item(job)

    def _activity(self, event: str, job: Job, description: str) -> None:
        self.recent_activity.append({"timestamp": self.stamp(), "event": event, "job_id": job.job_id,
                                     "run_id": job.run_id, "description": description})

    # -- knowledge --------------------------------------------------------------------------
    def _create_item(self, job: Job) -> None:
        self._item_seq += 1
        topic = job.document.topic
        tags = self.rng.sample(topic.tags, k=min(len(topic.tags), self.rng.randint(2, 3)))
        item = KnowledgeItem(f"kb-item-{self._item_seq}", job.document.title, _KNOWLEDGE_TYPE[job.type],
                             job.job_id, tags, (job.result or {}).get("summary", ""), self.now_ms)
        self.knowledge[item.item_id] = item
        if len(self.knowledge) > self._keep_items:
            self.knowledge.popitem(last=False)
        self.analytics.knowledge_created(self.now_ms, topic.key)
        self.emit("knowledge_item_created", item.created_event(self.stamp()))
        if self.rng.random() < KNOWLEDGE_UPDATE_PROBABILITY:
            self.at(self.now_ms + self.rng.randint(5 * MINUTE_MS, 120 * MINUTE_MS), self._update_item, item)

    def _update_item(self, item: KnowledgeItem) -> None:
        fields = self.rng.sample(("content", "tags", "summary", "entities", "title"), k=self.rng.randint(1, 2))
        if not self.incidents.knowledge_flows(item.item_id):
            return
        item.updated_fields = sorted(fields)
        item.updated_ms = self.now_ms
        item.update_count += 1
        stamp = self.stamp()
        self.emit("knowledge_item_updated", {"item_id": item.item_id, "updated_fields": list(item.updated_fields),
                                             "updated_at": stamp, "timestamp": stamp})

    # -- periodic ---------------------------------------------------------------------------
    def _metrics_tick(self) -> None:
        self.at(self.now_ms + METRICS_EVERY_MS, self._metrics_tick)
        working = sum(1 for agent in self.agents.values() if agent.status == "working")
        self.metrics = self.analytics.metrics(self.now_ms, working)
        self.emit("dashboard_metrics_update", self.metrics)

    def _insight(self, data: dict[str, Any] | None) -> None:
        if data is not None:
            self.insights.append(data)
            self.emit("insight_generated", data)

    def _detect_tick(self) -> None:
        self.at(self.now_ms + DETECT_EVERY_MS, self._detect_tick)
        for data in self.analytics.detect(self.now_ms, self.agents.values(), self.active.values()):
            self._insight(data)

    def _hourly_tick(self) -> None:
        self.at(self.now_ms + HOUR_MS, self._hourly_tick)
        self._insight(self.analytics.hourly(self.now_ms))

    def _pattern_tick(self) -> None:
        self.at(self.now_ms + 3 * HOUR_MS, self._pattern_tick)
        self._insight(self.analytics.pattern(self.now_ms))

    # -- look-ups for the server ------------------------------------------------------------
    def run(self, run_id: str) -> Job | None:
        return self.runs.get(run_id)

    def job(self, job_id: str) -> Job | None:
        run_id = self.run_of_job.get(job_id)
        return self.runs.get(run_id) if run_id is not None else None

    def labels(self, until: float) -> list[dict[str, Any]]:
        """Ground-truth labels of the windows that start before ``until`` (epoch seconds)."""
        return self.scenario.labels(self.origin_ms / 1000, until)


def generate(
    seed: int = 7,
    scenario: str = "steady",
    hours: float = 10.0,
    start: float | datetime | str | None = None,
    scenario_params: Mapping[str, Any] | None = None,
    first_id: int = 0,
) -> Iterator[Event]:
    """The events of ``hours`` simulated hours, offline: ``(epoch_seconds, event, data)``.

    Exactly what a live server with the same seed, scenario, ``scenario_params`` and start sends
    (without seq). ``start`` defaults to :data:`DEFAULT_START` so that the output is the same on
    every run. ``first_id``: see :class:`Workload`.
    """
    workload = Workload(seed, scenario, start, scenario_params=scenario_params, first_id=first_id)
    end = workload.origin_ms + int(hours * HOUR_MS)
    t = workload.origin_ms
    yield from workload.flush()
    while t < end:
        t = min(end, t + 10 * MINUTE_MS)
        yield from workload.advance_ms(t)
