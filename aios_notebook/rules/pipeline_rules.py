"""Built-in rules over the pipeline's outputs: knowledge growth and DAG step failures.

Both are plain functions (their windows hold few rows). See :mod:`aios_notebook.rules.library`.
Each insight's evidence holds the series the rule judged over its window and the threshold it
fired at, for the feed's evidence figure; the last point is the value judged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .aggregates import binomial_sf, confidence, edge, span_ends
from .api import Insight, Rule, RuleContext, format_duration, parse_duration
from .declare import NS, declare
from .series import evidence_of

__all__ = ["dag_step_failures", "knowledge_stall"]


# -- knowledge and DAGs (plain rules: their windows are small) ------------------------------------------
def knowledge_stall(*, period: Any = "5m", min_completed: int = 5, every: Any = "5m", pending: Any = 0,
                    cooldown: Any = "1h", name: str = "knowledge_stall") -> Rule:
    """Jobs complete (``total_processed`` grows) but ``knowledge_items`` does not, in ``period``.

    Read from the dashboard metrics, whose counters the server keeps for the whole deployment.

    Args:
        period: the span over which both counters are compared.
        min_completed: fewest jobs processed in ``period`` for a stall to mean something.
        every, pending, cooldown, name: the rule's schedule.
    """

    def stall(ctx: RuleContext) -> Insight | None:
        rows = ctx.rows("metrics")
        if len(rows) < 2:
            return None
        processed = rows.column("total_processed")
        items = rows.column("knowledge_items")
        known = ~(np.isnan(processed) | np.isnan(items))
        if known.sum() < 2:
            return None
        processed, items = processed[known], items[known]
        done, grown = float(processed[-1] - processed[0]), float(items[-1] - items[0])
        if done < min_completed or grown > 0:
            return None
        # the items gained since the window began, at (at most 48 of) its metrics snapshots
        shown = np.unique(np.linspace(0, len(items) - 1, min(len(items), 48)).round().astype(int))
        return Insight(
            title="Knowledge Growth Stalled",
            description=(f"{done:.0f} jobs were processed in the last {ctx.window} but the knowledge "
                         f"base stayed at {items[-1]:.0f} items"),
            type="anomaly",
            confidence=round(min(0.99, 1 - 0.1 ** min(done, 10)), 2),
            metadata={"metric": "knowledge_items", "change": "+0", "period": str(ctx.window)},
            evidence=evidence_of(
                "knowledge_items", rows.times[known][shown], items[shown] - items[0],
                unit="items gained in the window", threshold=0,
                extra={"processed": done, "knowledge_items": float(items[-1])}),
        )

    return declare(
        stall, name, ("metrics",),
        {"every": every, "window": period, "pending": pending, "cooldown": cooldown},
        {"period": period, "min_completed": min_completed}, ("knowledge_stall",), knowledge_stall.__doc__,
        incremental=False,
    )


_STEP_FAILING = frozenset({"failed", "up_for_retry"})


def dag_step_failures(*, period: Any = "30m", baseline: Any = "2h", factor: float = 4.0, min_failures: int = 3,
                      alpha: float = 1e-3, every: Any = "15m", pending: Any = 0, cooldown: Any = "1h",
                      name: str = "dag_step_failures") -> Rule:
    """Share of DAG steps failing (failed / up_for_retry, or retried) per DAG and step, against the baseline.

    Reads the step history (``dag_step_events``) of the window and takes each step's (run_id,
    step_id) latest event in it, the state the step was in: it counts as failing when it is
    failed or up for retry, or was retried. Steps last updated in ``period`` are compared with
    those last updated in the ``baseline`` before (binomial test per step of each DAG; the key
    is the ``dag_id``).

    Args:
        period: the recent span.
        baseline: the span before it that sets each step's usual failure share.
        factor: how many times the usual share makes a spike.
        min_failures: fewest failing steps worth a verdict.
        alpha: the binomial tail probability below which the failures are not chance.
        every, pending, cooldown, name: the rule's schedule.
    """
    p, b = parse_duration(period, "period"), parse_duration(baseline, "baseline")
    every_ns = parse_duration(every, "every")

    def spike(ctx: RuleContext) -> list[Insight]:
        rows = ctx.rows("dag_step_events")
        if not len(rows):
            return []
        run_codes, _ = rows.codes("run_id")
        step_codes, steps = rows.codes("step_id")
        # each step's latest event in the window: rows are in time order, so the first of each
        # (run, step) in the reversed order (+1: a missing code is -1)
        step_key = (run_codes + 1) * (len(steps) + 1) + (step_codes + 1)
        _, first_reversed = np.unique(step_key[::-1], return_index=True)
        latest = len(rows) - 1 - first_reversed
        failing = (rows.isin("status", _STEP_FAILING) | (np.nan_to_num(rows.column("retry_count")) > 0))[latest]
        recent = rows.times[latest] > ctx.now_ns - p
        dag_codes, dags = rows.codes("dag_id")
        dag_codes, step_codes = dag_codes[latest], step_codes[latest]
        known = (dag_codes >= 0) & (step_codes >= 0) & (run_codes[latest] >= 0)
        # one group per (dag, step): counts of steps and of failing steps, recent and before
        width = len(steps)
        group = dag_codes * width + step_codes
        size = len(dags) * width

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(group[known & mask], minlength=size)

        n_recent, k_recent = count(recent), count(recent & failing)
        n_before, k_before = count(~recent), count(~recent & failing)
        worst: dict[Any, tuple[float, Any, tuple[int, int, int], float, int]] = {}
        for g in np.flatnonzero(k_recent >= min_failures).tolist():
            n, k, base_n, base_k = int(n_recent[g]), int(k_recent[g]), int(n_before[g]), int(k_before[g])
            # the baseline share, floored: a few quiet hours must not make 3 failures a spike
            p0 = min(0.5, max(base_k / base_n if base_n else 0.0, 0.03))
            if k / n < factor * p0:
                continue
            p_value = binomial_sf(k, n, p0)
            dag, step = dags[g // width], steps[g % width]
            # ties go to the step named first: codes follow the snapshot's first appearances, so
            # taking the first group would name a step by what came before the window
            if p_value < alpha and (dag not in worst or (p_value, str(step)) < (worst[dag][0], str(worst[dag][1]))):
                worst[dag] = (p_value, step, (n, k, base_n), p0, g)
        out = []
        for dag, (p_value, step, (n, k, base_n), p0, g) in worst.items():
            ends, shares = _shares(ctx.now_ns, p + b, p, every_ns, rows.times[latest], failing, known & (group == g))
            fewest = _fewest(k, n, p0, min_failures, factor, alpha)
            out.append(Insight(
                title="DAG Step Failure Spike",
                description=(f"{k} of {n} {dag}.{step} steps failed or were retried in the last "
                             f"{format_duration(p)}, against {p0:.1%} usually"),
                type="alert",
                confidence=confidence(p_value),
                metadata={"metric": "step_failures", "dag_id": dag, "step_id": step, "period": format_duration(p)},
                key=dag,
                evidence=evidence_of(
                    f"step_failures[{dag}.{step}]", ends, shares,
                    unit=f"share of steps failing per {format_duration(p)}", baseline=p0, threshold=fewest / n,
                    extra={"failing_steps": k, "steps": n, "baseline_share": round(p0, 4),
                           "baseline_steps": base_n, "p_value": p_value}),
            ))
        return out

    return declare(
        spike, name, ("dag_step_events",),
        {"every": every, "window": (p + b) / NS, "pending": pending, "cooldown": cooldown},
        {"period": period, "baseline": baseline, "factor": factor, "min_failures": min_failures, "alpha": alpha},
        ("dag_step_failures",), dag_step_failures.__doc__, incremental=False,
    )


def _shares(t: int, window: int, period: int, every: int, times: np.ndarray, failing: np.ndarray,
            mine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The share of one step's latest events failing in every ``period`` of the window, ``every``
    apart (NaN where it has none), as the rule counts them for the last one."""
    order = np.argsort(times[mine], kind="stable")
    when, bad = times[mine][order], np.concatenate(([0], np.cumsum(failing[mine][order])))
    ends = span_ends(t - window, t, period, every)
    hi, lo = np.searchsorted(when, ends, "right"), np.searchsorted(when, ends - period, "right")
    steps = hi - lo
    shares = np.full(len(ends), np.nan)
    shares[steps > 0] = (bad[hi] - bad[lo])[steps > 0] / steps[steps > 0]
    return ends, shares


def _fewest(k: int, n: int, p0: float, min_failures: int, factor: float, alpha: float) -> int:
    """The fewest failing steps of ``n`` the rule fires at (the threshold, as a share of ``n``)."""

    def fires(j: int) -> bool:
        return j >= min_failures and j / n >= factor * p0 and binomial_sf(j, n, p0) < alpha

    return edge(fires, k, 0)
