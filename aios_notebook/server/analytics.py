"""Dashboard metrics and the server's own detections, computed from the simulated state.

``dashboard_metrics_update`` (every 30 simulated seconds):

- ``total_processed``: processing_job_completed + processing_job_failed events so far (int)
- ``processing_time``: mean duration of the jobs completed in the last 30 minutes, in minutes
  (from the start of their last attempt); the previous value when none completed
- ``success_rate``: completed / (completed + failed) over the last 30 minutes, in percent
- ``active_agents``: agents whose status is ``working``; ``knowledge_items``: items created so far
- ``changes``: the difference from the previous update of each of the five, as a signed string
  (``"+5"``, ``"-0.4"``, ``"+0"``)

``insight_generated`` comes from three sources: an hourly volume trend (type ``trend``; the very
first hour gives a ``summary``), a recurring-topic note every three hours (``pattern``), and checks
every five minutes (``anomaly``) whose thresholds sit far outside normal variation, so ``steady``
never trips them: success rate under 85 %, processing time over 1.8x its expected value, an agent
offline, jobs silent for 10 minutes, an agent with 5+ errors in 30 minutes, 15+ completions and no
knowledge item in 30 minutes, a DAG with 8+ step failures in 30 minutes (and at least 25 % of
its runs started), arrivals in 15 minutes far
above the expected rate. Each check has a 30-minute cool-down per subject.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .timestamps import HOUR_MS, MINUTE_MS, iso_ms

__all__ = ["Analytics", "format_change"]

WINDOW_MS = 30 * MINUTE_MS
VOLUME_WINDOW_MS = 15 * MINUTE_MS
COOLDOWN_MS = 30 * MINUTE_MS
SUCCESS_THRESHOLD = 85.0
SLOWDOWN_FACTOR = 1.8
STALL_MS = 10 * MINUTE_MS
AGENT_ERROR_THRESHOLD = 5
KNOWLEDGE_MIN_COMPLETIONS = 15
STEP_FAILURE_THRESHOLD = 8
STEP_FAILURE_SHARE = 0.25


class _Agent(Protocol):
    # read-only: AgentState derives both from its spec, and the checks only read them
    @property
    def agent_id(self) -> str: ...
    @property
    def name(self) -> str: ...

    status: str
    errors: deque[int]


class _Job(Protocol):
    job_id: str
    type: str
    status: str
    last_update_ms: int


def format_change(delta: float, decimals: int) -> str:
    """A signed difference as the protocol's ``changes`` strings: ``+5``, ``-0.4``, ``+0``."""
    if decimals == 0:
        return f"{round(delta):+d}"
    text = f"{delta:+.{decimals}f}"
    return "+0" if float(text) == 0 else text


def _prune(queue: deque[Any], before: int) -> None:
    while queue and queue[0][0] < before:
        queue.popleft()


class Analytics:
    """Rolling counters of the simulated deployment, and what the server concludes from them.

    Args:
        expected_job_minutes: the mean processing time of the workload's job mix.
        expected_arrivals: ``(start_ms, end_ms) -> float``, the normal number of arrivals there.
        dag_of_type: job type -> the dag_id of its workflow.
    """

    def __init__(
        self,
        expected_job_minutes: float,
        expected_arrivals: Callable[[int, int], float],
        dag_of_type: dict[str, str],
    ) -> None:
        self.dag_of_type = dag_of_type
        self.expected_job_minutes = expected_job_minutes
        self.expected_arrivals = expected_arrivals
        self.outcomes: deque[tuple[int, bool, float]] = deque()  # (t, ok, minutes)
        self.arrivals: deque[tuple[int, str]] = deque()  # (t, job type), last 2 hours
        self.step_failures: deque[tuple[int, str]] = deque()  # (t, dag_id)
        self.knowledge: deque[tuple[int, str]] = deque()  # (t, topic), last 3 hours
        self.total_processed = 0
        self.knowledge_items = 0
        self.hours = 0
        self._processing_time = 0.0
        self._success_rate = 100.0
        self._last: dict[str, float] | None = None
        self._quiet_until: dict[str, int] = {}
        self._offline_reported: set[str] = set()
        self._insight_seq = 0

    # -- what happened ------------------------------------------------------------------------
    def arrival(self, t: int, job_type: str) -> None:
        self.arrivals.append((t, job_type))

    def outcome(self, t: int, ok: bool, minutes: float) -> None:
        self.total_processed += 1
        self.outcomes.append((t, ok, minutes))

    def step_failure(self, t: int, dag_id: str) -> None:
        self.step_failures.append((t, dag_id))

    def knowledge_created(self, t: int, topic: str) -> None:
        self.knowledge_items += 1
        self.knowledge.append((t, topic))

    # -- dashboard_metrics_update ---------------------------------------------------------------
    def metrics(self, now: int, active_agents: int) -> dict[str, Any]:
        """The data of a dashboard_metrics_update at ``now``."""
        _prune(self.outcomes, now - WINDOW_MS)
        done = [minutes for _, ok, minutes in self.outcomes if ok]
        if self.outcomes:
            self._success_rate = round(100.0 * len(done) / len(self.outcomes), 1)
        if done:
            self._processing_time = round(sum(done) / len(done), 2)
        current = {
            "total_processed": self.total_processed,
            "processing_time": self._processing_time,
            "success_rate": self._success_rate,
            "active_agents": active_agents,
            "knowledge_items": self.knowledge_items,
        }
        last = self._last or current
        changes = {
            "total_processed": format_change(current["total_processed"] - last["total_processed"], 0),
            "processing_time": format_change(current["processing_time"] - last["processing_time"], 2),
            "success_rate": format_change(current["success_rate"] - last["success_rate"], 1),
            "active_agents": format_change(current["active_agents"] - last["active_agents"], 0),
            "knowledge_items": format_change(current["knowledge_items"] - last["knowledge_items"], 0),
        }
        self._last = current
        return {**current, "changes": changes, "timestamp": iso_ms(now)}

    # -- insight_generated ----------------------------------------------------------------------
    def _insight(self, now: int, title: str, description: str, kind: str, confidence: float,
                 metadata: dict[str, Any]) -> dict[str, Any]:
        self._insight_seq += 1
        stamp = iso_ms(now)
        return {
            "insight_id": f"insight-{self._insight_seq}",
            "title": title,
            "description": description,
            "type": kind,
            "confidence": round(confidence, 2),
            "metadata": metadata,
            "created_at": stamp,
            "timestamp": stamp,
        }

    def hourly(self, now: int) -> dict[str, Any]:
        """The hourly volume note: a trend against the hour before (a summary the first time)."""
        self.hours += 1
        _prune(self.arrivals, now - 2 * HOUR_MS)
        last_hour = [kind for t, kind in self.arrivals if t >= now - HOUR_MS]
        before = len(self.arrivals) - len(last_hour)
        by_type = Counter(last_hour)
        categories = sorted(by_type, key=lambda k: (-by_type[k], k))
        if self.hours == 1 or before == 0:
            rate = self._success_rate
            return self._insight(
                now,
                "Hourly Processing Summary",
                f"{len(last_hour)} documents arrived in the last hour; success rate {rate:.1f}%",
                "summary",
                0.9,
                {"metric": "volume", "change": "+0%", "period": "hour", "affected_categories": categories,
                 "value": len(last_hour)},
            )
        change = 100.0 * (len(last_hour) - before) / before
        if change >= 10:
            title = "Processing Volume Increase Detected"
        elif change <= -10:
            title = "Processing Volume Decrease Detected"
        else:
            title = "Processing Volume Stable"
        word = "increased" if change >= 0 else "decreased"
        return self._insight(
            now,
            title,
            f"Document processing volume has {word} by {abs(change):.0f}% over the last hour "
            f"({before} -> {len(last_hour)} documents)",
            "trend",
            min(0.99, 0.6 + abs(change) / 250),
            {"metric": "volume", "change": f"{change:+.0f}%", "period": "hour",
             "affected_categories": categories, "value": len(last_hour), "previous": before},
        )

    def pattern(self, now: int) -> dict[str, Any] | None:
        """The most frequent topic of the knowledge items of the last three hours."""
        _prune(self.knowledge, now - 3 * HOUR_MS)
        if not self.knowledge:
            return None
        counts = Counter(topic for _, topic in self.knowledge)
        topic, count = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        share = count / len(self.knowledge)
        return self._insight(
            now,
            f"Recurring Topic: {topic}",
            f"{count} of the last {len(self.knowledge)} knowledge items are about {topic}",
            "pattern",
            min(0.95, 0.5 + share),
            {"metric": "topic", "change": f"{100 * share:.0f}%", "period": "3h",
             "affected_categories": [topic], "value": count},
        )

    def _once(self, key: str, now: int) -> bool:
        if self._quiet_until.get(key, -1) > now:
            return False
        self._quiet_until[key] = now + COOLDOWN_MS
        return True

    def detect(self, now: int, agents: Iterable[_Agent], jobs: Iterable[_Job]) -> list[dict[str, Any]]:
        """The anomaly checks at ``now``: zero or more insight_generated data dicts."""
        found: list[dict[str, Any]] = []
        _prune(self.outcomes, now - WINDOW_MS)
        _prune(self.step_failures, now - WINDOW_MS)
        finished = len(self.outcomes)
        ok = [minutes for _, good, minutes in self.outcomes if good]
        if finished >= 10:
            rate = 100.0 * len(ok) / finished
            if rate < SUCCESS_THRESHOLD and self._once("success_rate", now):
                found.append(self._insight(
                    now, "Success Rate Drop Detected",
                    f"Only {rate:.1f}% of the last {finished} jobs succeeded (30 minutes)", "anomaly",
                    min(0.99, 0.7 + (SUCCESS_THRESHOLD - rate) / 100),
                    {"metric": "success_rate", "change": f"{rate - 97.0:+.1f}%", "period": "30m",
                     "affected_categories": [], "value": round(rate, 1)}))
        if len(ok) >= 5:
            mean = sum(ok) / len(ok)
            if mean > SLOWDOWN_FACTOR * self.expected_job_minutes and self._once("processing_time", now):
                change = 100.0 * (mean / self.expected_job_minutes - 1)
                found.append(self._insight(
                    now, "Processing Slowdown Detected",
                    f"Jobs now take {mean:.1f} minutes on average, {change:.0f}% above normal", "anomaly",
                    min(0.99, 0.7 + change / 1000),
                    {"metric": "processing_time", "change": f"{change:+.0f}%", "period": "30m",
                     "affected_categories": [], "value": round(mean, 2)}))
        found.extend(self._agent_checks(now, agents))
        stalled = [job for job in jobs if job.status == "processing" and now - job.last_update_ms > STALL_MS]
        if stalled and self._once("stalled_jobs", now):
            kinds = sorted({job.type for job in stalled})
            found.append(self._insight(
                now, "Stalled Jobs Detected",
                f"{len(stalled)} jobs have not reported progress for over 10 minutes", "anomaly", 0.9,
                {"metric": "job_updates", "change": f"+{len(stalled)}", "period": "10m",
                 "affected_categories": kinds, "job_ids": sorted(job.job_id for job in stalled)[:20]}))
        self._knowledge_check(now, ok, found)
        by_dag = Counter(dag for _, dag in self.step_failures)
        runs = Counter(self.dag_of_type[kind] for t, kind in self.arrivals if t >= now - WINDOW_MS)
        for dag, count in sorted(by_dag.items()):
            # relative to the runs started, so that a busy hour alone does not trip it
            share = count / max(1, runs[dag])
            if (count >= STEP_FAILURE_THRESHOLD and share >= STEP_FAILURE_SHARE
                    and self._once(f"dag:{dag}", now)):
                found.append(self._insight(
                    now, f"Repeated Step Failures in {dag}",
                    f"{count} steps of {dag} failed in the last 30 minutes ({runs[dag]} runs started)",
                    "anomaly", min(0.99, 0.6 + share / 2),
                    {"metric": "step_failures", "change": f"+{count}", "period": "30m",
                     "affected_categories": [dag], "value": count}))
        self._volume_check(now, found)
        return found

    def _agent_checks(self, now: int, agents: Iterable[_Agent]) -> list[dict[str, Any]]:
        found = []
        for agent in agents:
            while agent.errors and agent.errors[0] < now - WINDOW_MS:
                agent.errors.popleft()
            if agent.status == "offline":
                if agent.agent_id not in self._offline_reported:  # once per outage
                    self._offline_reported.add(agent.agent_id)
                    found.append(self._insight(
                        now, f"Agent Offline: {agent.name}",
                        f"{agent.name} ({agent.agent_id}) stopped responding; its work moved to its peers",
                        "anomaly", 0.95,
                        {"metric": "agent_status", "change": "offline", "period": "now",
                         "affected_categories": [agent.agent_id]}))
            else:
                self._offline_reported.discard(agent.agent_id)
            errors = len(agent.errors)
            if errors >= AGENT_ERROR_THRESHOLD and self._once(f"errors:{agent.agent_id}", now):
                found.append(self._insight(
                    now, f"Agent Error Rate Elevated: {agent.name}",
                    f"{agent.name} reported {errors} errors in the last 30 minutes", "anomaly",
                    min(0.99, 0.7 + errors / 100),
                    {"metric": "agent_errors", "change": f"+{errors}", "period": "30m",
                     "affected_categories": [agent.agent_id]}))
        return found

    def _knowledge_check(self, now: int, ok: list[float], found: list[dict[str, Any]]) -> None:
        recent = sum(1 for t, _ in self.knowledge if t >= now - WINDOW_MS)
        if len(ok) >= KNOWLEDGE_MIN_COMPLETIONS and recent == 0 and self._once("knowledge", now):
            found.append(self._insight(
                now, "Knowledge Ingestion Stalled",
                f"{len(ok)} jobs completed in the last 30 minutes but no knowledge item was created",
                "anomaly", 0.9,
                {"metric": "knowledge_items", "change": "+0", "period": "30m", "affected_categories": []}))

    def _volume_check(self, now: int, found: list[dict[str, Any]]) -> None:
        start = now - VOLUME_WINDOW_MS
        recent = [kind for t, kind in self.arrivals if t >= start]
        expected = self.expected_arrivals(start, now)
        if expected <= 0:
            return
        limit = max(2 * expected, expected + 5 * math.sqrt(expected))
        if len(recent) > limit and self._once("volume", now):
            by_type = Counter(recent)
            change = 100.0 * (len(recent) / expected - 1)
            found.append(self._insight(
                now, "Processing Volume Spike",
                f"{len(recent)} documents arrived in 15 minutes, {change:.0f}% above the usual rate",
                "anomaly", min(0.99, 0.7 + change / 1000),
                {"metric": "volume", "change": f"{change:+.0f}%", "period": "15m",
                 "affected_categories": sorted(by_type, key=lambda k: (-by_type[k], k))}))
