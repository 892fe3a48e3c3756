"""Built-in rules over job events: volume, success rate, failure bursts, stuck jobs.

See :mod:`aios_notebook.rules.library` for the table of every built-in rule. Each insight's
evidence holds the series the rule judged over its window (the count or rate of every ``period``
in it, from the same binned counts), the baseline it compared with and the threshold it fired
at, for the feed's evidence figure; the last point is the value judged.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from .aggregates import (
    BinnedCounts,
    LatestByKey,
    binomial_sf,
    confidence,
    edge,
    poisson_sf,
    span_ends,
)
from .api import IncrementalRule, Insight, Rule, RuleContext, format_duration, parse_duration
from .declare import NS, declare, two_spans
from .series import evidence_of
from .windows import Rows

__all__ = ["failure_burst", "stuck_jobs", "success_rate_drop", "volume_change"]


# -- counts of job events ---------------------------------------------------------------------------
class _JobCounts(IncrementalRule):
    """Counts of selected job events per key in bins; subclasses decide what to count and fire."""

    tables = ("job_events",)
    events: frozenset[str] = frozenset()
    key_column = "type"

    def __init__(self, width: int) -> None:
        self.counts = BinnedCounts(width)

    def reset(self) -> None:
        self.counts.clear()

    def _select(self, rows: Rows) -> tuple[np.ndarray, list[Any]]:
        mask = rows.isin("event", self.events)
        return rows.times[mask], self._keys(rows, mask)

    def _keys(self, rows: Rows, mask: np.ndarray) -> list[Any]:
        return rows.values(self.key_column, mask)

    def on_new(self, rows: Rows) -> None:
        times, keys = self._select(rows)
        self.counts.add(times, keys)

    def on_old(self, rows: Rows) -> None:
        times, keys = self._select(rows)
        self.counts.remove(times, keys)

    def _series(self, start: int, t: int, span: int, keys: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``(ends, counts)``: the counts of ``keys`` in every ``span`` ending in ``(start, t]``."""
        ends = span_ends(start, t, span, self.counts.width)
        return ends, self.counts.span_totals(ends, span, keys)


class _VolumeChange(_JobCounts):
    events = frozenset({"processing_job_status"})

    def __init__(self, period: int, baseline: int, factor: float, min_count: int, alpha: float,
                 direction: str, width: int) -> None:
        super().__init__(width)
        self.period, self.baseline, self.factor = period, baseline, factor
        self.min_count, self.alpha, self.direction = min_count, alpha, direction

    def _select(self, rows: Rows) -> tuple[np.ndarray, list[Any]]:
        # an arrival is a job's "queued" status (new jobs, and failed jobs sent back to the queue)
        mask = rows.isin("event", self.events) & rows.isin("status", frozenset({"queued"}))
        return rows.times[mask], self._keys(rows, mask)

    def evaluate(self, ctx: RuleContext) -> list[Insight]:
        t = ctx.now_ns
        recent = self.counts.totals(t - self.period, t)
        before = self.counts.totals(t - self.period - self.baseline, t - self.period)
        scale = self.period / self.baseline
        share = self.period / (self.period + self.baseline)
        out = []
        for key in set(recent) | set(before):
            if key is None:
                continue
            count, base = recent.get(key, 0), before.get(key, 0)
            expected = base * scale
            change = (count - expected) / expected if expected > 0 else math.inf
            # two Poisson counts compared exactly: given their sum, the recent one is binomial
            # with the period's share of the time (the baseline's own noise is accounted for)
            if self.direction in ("up", "both") and count >= self.min_count and count >= self.factor * expected:
                p_value = binomial_sf(count, count + base, share)
                word, title = "increased", "Processing Volume Increase Detected"
            elif self.direction in ("down", "both") and expected >= self.min_count and count * self.factor <= expected:
                p_value = 1.0 - binomial_sf(count + 1, count + base, share)
                word, title = "decreased", "Processing Volume Drop Detected"
            else:
                continue
            if p_value >= self.alpha:
                continue
            pct = f"{change:+.0%}" if math.isfinite(change) else "new"
            ends, values = self._series(t - self.period - self.baseline, t, self.period, (key,))
            out.append(Insight(
                title=title,
                description=(f"{key} processing volume has {word} by {abs(change):.0%} in the last "
                             f"{format_duration(self.period)}: {count} jobs against {expected:.1f} expected from "
                             f"the {format_duration(self.baseline)} before"),
                type="trend",
                confidence=confidence(p_value),
                metadata={"metric": "volume", "change": pct, "period": format_duration(self.period),
                          "affected_categories": [key]},
                key=cast(str, key),  # a job type: the type column holds text
                evidence=evidence_of(
                    f"job_counts[{key}]", ends, values, unit=f"jobs per {format_duration(self.period)}",
                    baseline=expected, threshold=self._threshold(word == "increased", count, base, expected),
                    extra={"count": count, "expected": round(expected, 2), "p_value": p_value}),
            ))
        return out

    def _threshold(self, up: bool, count: int, base: int, expected: float) -> int:
        """The count the rule fires at given the baseline's: the smallest (up) or largest (down)."""
        share = self.period / (self.period + self.baseline)
        if up:
            return edge(lambda k: k >= self.min_count and k >= self.factor * expected
                        and binomial_sf(k, k + base, share) < self.alpha, count, 0)
        most = max(count, int(expected / self.factor)) if self.factor > 0 else count
        return edge(lambda k: k * self.factor <= expected
                    and 1.0 - binomial_sf(k + 1, k + base, share) < self.alpha, count, most)


def volume_change(*, period: Any = "10m", baseline: Any = "2h", factor: float = 2.0, min_count: int = 8,
                  alpha: float = 1e-4, direction: str = "up", every: Any = "5m", pending: Any = 0,
                  cooldown: Any = "1h", name: str = "volume_change") -> Rule:
    """Job arrivals per job type in the last ``period`` against the ``baseline`` before it.

    Args:
        period: the recent span whose arrivals are counted.
        baseline: the span before it that sets the expected rate (scaled to ``period``).
        factor: how many times the expected count (or, down, its fraction) makes a change.
        min_count: fewest arrivals (up) or expected arrivals (down) worth a verdict.
        alpha: the tail probability (counts compared exactly, as two Poisson rates) below which
            the change is not chance.
        direction: ``"up"``, ``"down"`` or ``"both"``.
        every, pending, cooldown, name: the rule's schedule (see :func:`~aios_notebook.rules.rule`).
    """
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be 'up', 'down' or 'both', not {direction!r}")
    p, b, width, schedule = two_spans(period, baseline, every, pending, cooldown)
    return declare(
        lambda: _VolumeChange(p, b, factor, min_count, alpha, direction, width), name, ("job_events",),
        schedule,
        {"period": period, "baseline": baseline, "factor": factor, "min_count": min_count, "alpha": alpha,
         "direction": direction}, ("volume_spike",), volume_change.__doc__,
    )


class _Outcomes(_JobCounts):
    events = frozenset({"processing_job_completed", "processing_job_failed"})
    key_column = "event"

    def __init__(self, period: int, baseline: int, drop: float, min_outcomes: int, alpha: float,
                 width: int) -> None:
        super().__init__(width)
        self.period, self.baseline, self.drop = period, baseline, drop
        self.min_outcomes, self.alpha = min_outcomes, alpha

    def evaluate(self, ctx: RuleContext) -> Insight | None:
        t = ctx.now_ns
        before = self.counts.totals(t - self.period - self.baseline, t - self.period)
        base_failed = before.get("processing_job_failed", 0)
        base_total = base_failed + before.get("processing_job_completed", 0)
        if base_total < self.min_outcomes:
            return None
        # the baseline's failure rate, kept off zero so one failure is not infinitely surprising
        p0 = min(0.5, max(base_failed / base_total, 0.01))
        base_rate = 1 - p0
        # the whole period, and its second half: a sharp drop shows in the half first, a slow
        # one only over the whole (each tested at alpha / 2)
        for span in (self.period // 2, self.period):
            recent = self.counts.totals(t - span, t)
            failed = recent.get("processing_job_failed", 0)
            total = failed + recent.get("processing_job_completed", 0)
            if total < self.min_outcomes:
                continue
            rate = 1 - failed / total
            if rate > base_rate - self.drop:
                continue
            p_value = binomial_sf(failed, total, p0)
            if p_value < self.alpha / 2:
                break
        else:
            return None
        ends, failures = self._series(t - self.period - self.baseline, t, span, ("processing_job_failed",))
        outcomes = failures + self.counts.span_totals(ends, span, ("processing_job_completed",))
        rates = np.full(len(ends), math.nan)
        rates[outcomes > 0] = 1 - failures[outcomes > 0] / outcomes[outcomes > 0]
        # the highest success rate that fires with this many outcomes
        fewest = edge(lambda f: 1 - f / total <= base_rate - self.drop
                      and binomial_sf(f, total, p0) < self.alpha / 2, failed, 0)
        return Insight(
            title="Success Rate Drop Detected",
            description=(f"job success rate fell to {rate:.0%} in the last {format_duration(span)} "
                         f"({failed} of {total} jobs failed) from {base_rate:.0%} in the "
                         f"{format_duration(self.baseline)} before"),
            type="anomaly",
            confidence=confidence(p_value),
            metadata={"metric": "success_rate", "change": f"{(rate - base_rate) * 100:+.1f} points",
                      "period": format_duration(span)},
            evidence=evidence_of(
                "success_rate", ends, rates, unit=f"share completed per {format_duration(span)}",
                baseline=base_rate, threshold=1 - fewest / total,
                extra={"failed": failed, "outcomes": total, "success_rate": round(rate, 4),
                       "baseline_success_rate": round(base_rate, 4), "p_value": p_value}),
        )


def success_rate_drop(*, period: Any = "20m", baseline: Any = "2h", drop: float = 0.1, min_outcomes: int = 10,
                      alpha: float = 1e-3, every: Any = "10m", pending: Any = 0, cooldown: Any = "1h",
                      name: str = "success_rate_drop") -> Rule:
    """The share of finished jobs that completed (not failed) in ``period`` against the baseline.

    The period and its second half are both tested (at ``alpha / 2`` each): a sharp drop shows
    in the half first, a gradual one over the whole period.

    Args:
        period: the recent span whose job outcomes are counted.
        baseline: the span before it that sets the usual success rate.
        drop: how far (0..1) the success rate must fall below the baseline's.
        min_outcomes: fewest finished jobs, in both spans, worth a verdict.
        alpha: the binomial tail probability below which the failures are not chance.
        every, pending, cooldown, name: the rule's schedule.
    """
    p, b, width, schedule = two_spans(period, baseline, every, pending, cooldown)
    return declare(
        lambda: _Outcomes(p, b, drop, min_outcomes, alpha, width), name, ("job_events",),
        schedule,
        {"period": period, "baseline": baseline, "drop": drop, "min_outcomes": min_outcomes, "alpha": alpha},
        ("success_rate_drop",), success_rate_drop.__doc__,
    )


class _FailureBurst(_JobCounts):
    events = frozenset({"processing_job_failed"})

    def __init__(self, period: int, baseline: int, factor: float, min_failures: int, alpha: float,
                 width: int) -> None:
        super().__init__(width)
        self.period, self.baseline, self.factor = period, baseline, factor
        self.min_failures, self.alpha = min_failures, alpha

    def evaluate(self, ctx: RuleContext) -> list[Insight]:
        t = ctx.now_ns
        recent = self.counts.totals(t - self.period, t)
        before = self.counts.totals(t - self.period - self.baseline, t - self.period)
        out = []
        for key, count in recent.items():
            if key is None or count < self.min_failures:
                continue
            expected = before.get(key, 0) * self.period / self.baseline
            if count < self.factor * expected:
                continue
            mean = max(expected, 0.25)
            p_value = poisson_sf(count, mean)
            if p_value >= self.alpha:
                continue
            ends, values = self._series(t - self.period - self.baseline, t, self.period, (key,))
            fewest = self._fewest(count, expected, mean)
            out.append(Insight(
                title="Failure Burst Detected",
                description=(f"{count} {key} jobs failed in the last {format_duration(self.period)}, against "
                             f"{expected:.1f} expected from the {format_duration(self.baseline)} before"),
                type="alert",
                confidence=confidence(p_value),
                metadata={"metric": "failures", "job_type": key, "period": format_duration(self.period)},
                key=cast(str, key),  # a job type: the type column holds text
                evidence=evidence_of(
                    f"failed_jobs[{key}]", ends, values, unit=f"jobs failed per {format_duration(self.period)}",
                    baseline=expected, threshold=fewest,
                    extra={"failures": count, "expected": round(expected, 2), "p_value": p_value}),
            ))
        return out

    def _fewest(self, count: int, expected: float, mean: float) -> int:
        """The fewest failures the rule fires at given the baseline's (the threshold)."""

        def fires(k: int) -> bool:
            return k >= self.min_failures and k >= self.factor * expected and poisson_sf(k, mean) < self.alpha

        return edge(fires, count, 0)


def failure_burst(*, period: Any = "10m", baseline: Any = "2h", factor: float = 4.0, min_failures: int = 4,
                  alpha: float = 1e-3, every: Any = "5m", pending: Any = 0, cooldown: Any = "1h",
                  name: str = "failure_burst") -> Rule:
    """Failed jobs per job type in ``period`` against the baseline's failure rate.

    Args:
        period: the recent span whose failures are counted.
        baseline: the span before it that sets the usual failure rate.
        factor: how many times the expected failures make a burst.
        min_failures: fewest failures of a type worth a verdict.
        alpha: the Poisson tail probability below which the burst is not chance.
        every, pending, cooldown, name: the rule's schedule.
    """
    p, b, width, schedule = two_spans(period, baseline, every, pending, cooldown)
    return declare(
        lambda: _FailureBurst(p, b, factor, min_failures, alpha, width), name, ("job_events",),
        schedule,
        {"period": period, "baseline": baseline, "factor": factor, "min_failures": min_failures,
         "alpha": alpha}, ("failure_burst",), failure_burst.__doc__,
    )


# -- job silence ------------------------------------------------------------------------------------
_TERMINAL = frozenset({"completed", "failed", "cancelled"})


class _StuckJobs(IncrementalRule):
    tables = ("job_events",)

    def __init__(self, stale: int, min_jobs: int) -> None:
        self.stale, self.min_jobs = stale, min_jobs
        self.latest = LatestByKey()

    def reset(self) -> None:
        self.latest.clear()

    def on_new(self, rows: Rows) -> None:
        jobs = rows.values("job_id")
        statuses = rows.values("status")
        types = rows.values("type")
        self.latest.add(rows.times, jobs, zip(statuses, types, strict=True))

    def on_old(self, rows: Rows) -> None:
        self.latest.remove(rows.times, rows.values("job_id"))

    def evaluate(self, ctx: RuleContext) -> list[Insight]:
        cutoff = ctx.now_ns - self.stale
        stuck: dict[str | None, list[tuple[Any, int]]] = {}  # by job type
        for job, (t, (status, job_type)) in self.latest.latest.items():
            if t <= cutoff and status not in _TERMINAL and job is not None:
                stuck.setdefault(job_type, []).append((job, t))
        out = []
        silent: _Silent | None = None
        for job_type, jobs in stuck.items():
            if len(jobs) < self.min_jobs:
                continue
            if silent is None:
                silent = _Silent(ctx, self.stale)
            jobs.sort(key=lambda item: item[1])
            silent_min = (ctx.now_ns - jobs[0][1]) / (60 * NS)
            out.append(Insight(
                title="Stuck Jobs Detected",
                description=(f"{len(jobs)} unfinished {job_type} job(s) sent no update for "
                             f"{format_duration(self.stale)} or more (the oldest for {silent_min:.0f} minutes)"),
                type="alert",
                confidence=0.9,
                metadata={"metric": "stuck_jobs", "job_type": job_type, "jobs": [j for j, _ in jobs[:20]]},
                key="" if job_type is None else job_type,
                evidence=evidence_of(
                    f"silent_jobs[{job_type}]", silent.ends, silent.count(job_type), unit="jobs",
                    threshold=self.min_jobs,
                    extra={"stuck_jobs": len(jobs), "oldest_silence_minutes": round(silent_min, 1)}),
            ))
        return out


class _Silent:
    """How many unfinished jobs of a type had been silent for ``stale`` at each ``every`` of the
    window (as the rule counts them at its end), from the window's rows in one pass."""

    def __init__(self, ctx: RuleContext, stale: int) -> None:
        rows = ctx.rows("job_events")
        t, every = ctx.now_ns, int(ctx.every.value)
        self.ends = span_ends(t - int(ctx.window.value), t, every, every)
        jobs, _ = rows.codes("job_id")
        order = np.argsort(jobs, kind="stable")  # each job's rows together, in time order
        jobs, times = jobs[order], rows.times[order]
        # a row is its job's latest from its time until the job's next row (or for good)
        until = np.full(len(times), np.iinfo(np.int64).max, dtype=np.int64)
        same = jobs[:-1] == jobs[1:]
        until[:-1][same] = times[1:][same]
        silent_from = times + stale
        self._rows = (jobs >= 0) & ~rows.isin("status", _TERMINAL)[order] & (silent_from < until)
        self._from, self._until = silent_from, until
        self._types, self._type_values = rows.codes("type")
        self._types = self._types[order]

    def count(self, job_type: Any) -> np.ndarray:
        found = np.flatnonzero(self._type_values[:-1] == job_type) if job_type is not None else np.zeros(0, int)
        code = int(found[0]) if len(found) else -1
        mine = self._rows & (self._types == code)
        starts, stops = np.sort(self._from[mine]), np.sort(self._until[mine])
        # silent at e: a row with silent_from <= e < until
        return np.searchsorted(starts, self.ends, "right") - np.searchsorted(stops, self.ends, "right")


def stuck_jobs(*, stale: Any = "3m", min_jobs: int = 1, window: Any = "90m", every: Any = "5m",
               pending: Any = 0, cooldown: Any = "1h", name: str = "stuck_jobs") -> Rule:
    """Unfinished jobs (last status not completed / failed) that sent nothing for ``stale``.

    Args:
        stale: silence after which a running job counts as stuck.
        min_jobs: stuck jobs of one type needed to fire (the key is the job type).
        window: how far back jobs are followed (a job silent for longer drops out).
        every, pending, cooldown, name: the rule's schedule.
    """
    s = parse_duration(stale, "stale")
    return declare(
        lambda: _StuckJobs(s, min_jobs), name, ("job_events",),
        {"every": every, "window": window, "pending": pending, "cooldown": cooldown},
        {"stale": stale, "min_jobs": min_jobs}, ("stuck_jobs",), stuck_jobs.__doc__,
    )
