"""Built-in rules over agent events: slow processing, error bursts, agents offline.

See :mod:`aios_notebook.rules.library` for the table of every built-in rule. Each insight's
evidence holds the series the rule judged over its window (from its aggregates, or the window's
rows of the one agent it is about) and the threshold it fired at, for the feed's evidence figure;
the last point is the value judged.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from .aggregates import BinnedCounts, BinnedValues, LatestByKey, median, span_ends
from .api import IncrementalRule, Insight, Rule, RuleContext, format_duration, parse_duration
from .declare import NS, declare, two_spans
from .series import evidence_of
from .windows import Rows

__all__ = ["agent_error_burst", "agent_offline", "slow_processing"]


# -- agents ---------------------------------------------------------------------------------------
_TASK_DONE = frozenset({"agent_task_completed"})


class _SlowProcessing(IncrementalRule):
    tables = ("agent_events",)

    def __init__(self, period: int, baseline: int, factor: float, min_tasks: int, width: int) -> None:
        self.period, self.baseline, self.factor, self.min_tasks = period, baseline, factor, min_tasks
        self.durations = BinnedValues(width)

    def reset(self) -> None:
        self.durations.clear()

    def _select(self, rows: Rows) -> tuple[np.ndarray, list[Any], list[float]]:
        mask = rows.isin("event", _TASK_DONE)
        mask &= ~np.isnan(rows.column("duration"))
        return rows.times[mask], rows.values("task_type", mask), rows.column("duration")[mask].tolist()

    def on_new(self, rows: Rows) -> None:
        self.durations.add(*self._select(rows))

    def on_old(self, rows: Rows) -> None:
        self.durations.remove(*self._select(rows))

    def evaluate(self, ctx: RuleContext) -> Insight | None:
        t = ctx.now_ns
        recent = self.durations.values(t - self.period, t)
        before = self.durations.values(t - self.period - self.baseline, t - self.period)
        ratios, per_type, medians = [], {}, {}
        for task_type, values in recent.items():
            usual = before.get(task_type)
            if usual is None or len(usual) < 5:
                continue
            usual_median = median(usual)
            if usual_median <= 0:
                continue
            medians[task_type] = usual_median
            ratios.append(values / usual_median)
            per_type[task_type] = round(median(values) / usual_median, 2)
        if not ratios:
            return None
        all_ratios = np.concatenate(ratios)
        if len(all_ratios) < self.min_tasks:
            return None
        ratio = median(all_ratios)
        if ratio < self.factor:
            return None
        # the same median ratio over every period of the window, against today's usual durations
        ends = span_ends(t - self.period - self.baseline, t, self.period, self.durations.width)
        series = []
        for end in ends.tolist():
            parts = [v / medians[k] for k, v in self.durations.values(end - self.period, end).items() if k in medians]
            series.append(median(np.concatenate(parts)) if parts else math.nan)
        return Insight(
            title="Slow Processing Detected",
            description=(f"agent tasks finished in the last {format_duration(self.period)} took {ratio:.1f}x "
                         f"their usual time ({len(all_ratios)} tasks, against the median of the "
                         f"{format_duration(self.baseline)} before)"),
            type="anomaly",
            confidence=round(min(0.99, 0.5 + 0.1 * ratio), 2),
            metadata={"metric": "processing_time", "change": f"x{ratio:.1f}", "period": format_duration(self.period),
                      "by_task_type": per_type},
            evidence=evidence_of(
                "duration_ratio", ends, series, unit=f"x usual duration, median per {format_duration(self.period)}",
                baseline=1.0, threshold=self.factor,
                extra={"median_ratio": round(ratio, 3), "tasks": len(all_ratios)}),
        )


def slow_processing(*, period: Any = "5m", baseline: Any = "2h", factor: float = 1.6, min_tasks: int = 10,
                    every: Any = "5m", pending: Any = 0, cooldown: Any = "1h",
                    name: str = "slow_processing") -> Rule:
    """Durations of agent tasks finished in ``period``, each against its task type's baseline median.

    Args:
        period: the recent span whose finished tasks are measured.
        baseline: the span before it that sets each task type's usual (median) duration.
        factor: the median of (duration / usual duration) that counts as slow.
        min_tasks: fewest recent tasks worth a verdict.
        every, pending, cooldown, name: the rule's schedule.
    """
    p, b, width, schedule = two_spans(period, baseline, every, pending, cooldown)
    return declare(
        lambda: _SlowProcessing(p, b, factor, min_tasks, width), name, ("agent_events",),
        schedule,
        {"period": period, "baseline": baseline, "factor": factor, "min_tasks": min_tasks},
        ("slow_processing",), slow_processing.__doc__,
    )


class _AgentErrors(IncrementalRule):
    tables = ("agent_events",)
    events = frozenset({"agent_error"})

    def __init__(self, min_errors: int, width: int) -> None:
        self.min_errors = min_errors
        self.counts = BinnedCounts(width)
        self.severity = BinnedCounts(width)

    def reset(self) -> None:
        self.counts.clear()
        self.severity.clear()

    def _select(self, rows: Rows) -> tuple[np.ndarray, list[Any], list[Any]]:
        mask = rows.isin("event", self.events)
        agents = rows.values("agent_id", mask)
        severities = rows.values("severity", mask)
        return rows.times[mask], agents, list(zip(agents, severities, strict=True))

    def on_new(self, rows: Rows) -> None:
        times, agents, pairs = self._select(rows)
        self.counts.add(times, agents)
        self.severity.add(times, pairs)

    def on_old(self, rows: Rows) -> None:
        times, agents, pairs = self._select(rows)
        self.counts.remove(times, agents)
        self.severity.remove(times, pairs)

    def evaluate(self, ctx: RuleContext) -> list[Insight]:
        t = ctx.now_ns
        start = t - int(ctx.window.value)
        counts = self.counts.totals(start, t)
        # keyed by the (agent, severity) pairs on_new counts
        severities = cast("dict[tuple[Any, Any], int]", self.severity.totals(start, t))
        out = []
        for agent, count in counts.items():
            if agent is None or count < self.min_errors:
                continue
            # the errors of the window so far, a minute or so apart (its bins are too coarse)
            rows = ctx.rows("agent_events")
            times = rows.times[rows.isin("event", self.events) & rows.isin("agent_id", (agent,))]
            step = max(1, (t - start) // 20)
            ends = span_ends(start, t, step, step, points=20)
            by_severity = {str(s): n for (a, s), n in severities.items() if a == agent}
            out.append(Insight(
                title="Agent Error Burst Detected",
                description=f"agent {agent} raised {count} errors in the last {format_duration(t - start)}",
                type="alert",
                confidence=round(min(0.99, 0.6 + 0.05 * count), 2),
                metadata={"metric": "agent_errors", "agent_id": agent, "severity": by_severity},
                key=cast(str, agent),  # the agent_id column holds text
                evidence=evidence_of(
                    f"agent_errors[{agent}]", ends, np.searchsorted(times, ends, "right"),
                    unit="errors in the window so far", threshold=self.min_errors,
                    extra={"errors": count, "by_severity": by_severity}),
            ))
        return out


def agent_error_burst(*, window: Any = "20m", min_errors: int = 3, every: Any = "10m", pending: Any = 0,
                      cooldown: Any = "1h", name: str = "agent_error_burst") -> Rule:
    """agent_error events per agent in ``window`` (the usual rate is well under one an hour).

    Args:
        window: the span whose errors are counted.
        min_errors: errors of one agent that make a burst (the key is the agent id).
        every, pending, cooldown, name: the rule's schedule.
    """
    w, e = parse_duration(window, "window"), parse_duration(every, "every")
    return declare(
        lambda: _AgentErrors(min_errors, math.gcd(w, e)), name, ("agent_events",),
        {"every": every, "window": window, "pending": pending, "cooldown": cooldown},
        {"window": window, "min_errors": min_errors}, ("agent_errors",), agent_error_burst.__doc__,
    )


class _AgentOffline(IncrementalRule):
    tables = ("agent_events",)
    events = frozenset({"agent_status_update"})

    def __init__(self, statuses: frozenset[str]) -> None:
        self.statuses = statuses
        self.latest = LatestByKey()

    def reset(self) -> None:
        self.latest.clear()

    def on_new(self, rows: Rows) -> None:
        mask = rows.isin("event", self.events)
        self.latest.add(rows.times[mask], rows.values("agent_id", mask), rows.values("status", mask))

    def on_old(self, rows: Rows) -> None:
        mask = rows.isin("event", self.events)
        self.latest.remove(rows.times[mask], rows.values("agent_id", mask))

    def evaluate(self, ctx: RuleContext) -> list[Insight]:
        out = []
        for agent, (t, status) in self.latest.latest.items():
            if agent is None or status not in self.statuses:
                continue
            minutes = (ctx.now_ns - t) / (60 * NS)
            ends, states = self._states(ctx, agent)
            out.append(Insight(
                title="Agent Offline",
                description=f"agent {agent} has been {status} for {minutes:.0f} minutes",
                type="alert",
                confidence=0.95,
                metadata={"metric": "agent_status", "agent_id": agent, "status": status},
                key=cast(str, agent),  # the agent_id column holds text
                evidence=evidence_of(
                    f"offline[{agent}]", ends, states, unit=f"1 = {' / '.join(sorted(self.statuses))}", threshold=1,
                    extra={"status": status, "minutes": round(minutes, 1)}),
            ))
        return out

    def _states(self, ctx: RuleContext, agent: Any) -> tuple[np.ndarray, np.ndarray]:
        """1 where the agent's latest status (in the window) was one of ``statuses``, else 0."""
        rows = ctx.rows("agent_events")
        mask = rows.isin("event", self.events) & rows.isin("agent_id", (agent,))
        times, down = rows.times[mask], rows.isin("status", self.statuses)[mask]
        t = ctx.now_ns
        every = int(ctx.every.value)
        ends = span_ends(t - int(ctx.window.value), t, every, every)
        latest = np.searchsorted(times, ends, "right") - 1
        return ends, np.where(latest >= 0, down[np.maximum(latest, 0)], False).astype(float)


def agent_offline(*, statuses: tuple[str, ...] = ("offline",), window: Any = "2h", every: Any = "1m",
                  pending: Any = 0, cooldown: Any = "1h", name: str = "agent_offline") -> Rule:
    """Agents whose latest agent_status_update in ``window`` reports one of ``statuses``.

    Args:
        statuses: the statuses that mean out of service.
        window: how far back an agent's last status is looked for (longer than outages last).
        every, pending, cooldown, name: the rule's schedule.
    """
    wanted = frozenset(statuses)
    return declare(
        lambda: _AgentOffline(wanted), name, ("agent_events",),
        {"every": every, "window": window, "pending": pending, "cooldown": cooldown},
        {"statuses": list(statuses), "window": window}, ("agent_outage",), agent_offline.__doc__,
    )
