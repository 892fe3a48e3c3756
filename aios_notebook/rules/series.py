"""Named series the kit derives from the store's tables: one number per interval of event time.

::

    from aios_notebook.rules import series

    pdf = series.job_counts("pdf", every="5m")        # pdf arrivals per 5 minutes
    pdf.frame(store)                                   # the whole series as a DataFrame (time, value)

    @rule(every="5m", window=pdf.window, detects=("volume_spike",))
    def pdf_surge(job_events, ctx):                    # a hand-written rule over the same numbers
        value = pdf.value(ctx)
        if value > 30:
            return Insight("pdf surge", f"{value:.0f} arrivals", evidence=series.evidence(pdf, ctx, threshold=30))

A :class:`Series` value at ``t`` is computed from the rows of one table in ``(t - lookback, t]``
(``lookback`` is ``every`` for counts and rates, longer for states such as agents offline), so a
rule reading it needs ``window=series.window``. The same code computes it inside a rule (from the
rule's window), in a backtest and over a whole store (:meth:`Series.frame`): the numbers a
detector judged are the numbers a chart of the series shows. An interval with nothing to measure
(no finished task for a duration, no outcome for a rate) is NaN.

=======================  ===============  =========================================================
series                   table            value per interval
=======================  ===============  =========================================================
job_counts(type)         job_events       jobs that arrived (a ``queued`` status), of a type or all
failure_rate(type)       job_events       failed / finished jobs (NaN when none finished)
step_duration(task)      agent_events     median duration of the agent tasks completed (seconds)
agent_errors(agent)      agent_events     agent_error events, of one agent or all
agents_offline()         agent_events     agents whose latest status (in ``lookback``) is offline
silent_jobs(type)        job_events       unfinished jobs that sent nothing for ``stale``
knowledge_growth()       metrics          growth of ``knowledge_items`` per job processed
step_failures(dag)       dag_step_events  step attempts failed or sent back for retry
=======================  ===============  =========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd

from ..exceptions import RuleError
from ..storelike import StoreSource, TableSource
from .aggregates import median as median_of
from .api import RuleContext, format_duration, parse_duration
from .evaluation import as_ns, iso_many
from .windows import Rows, TableSnapshot

__all__ = [
    "Series",
    "agent_errors",
    "agents_offline",
    "evidence",
    "evidence_of",
    "failure_rate",
    "job_counts",
    "knowledge_growth",
    "silent_jobs",
    "step_duration",
    "step_failures",
]


class RowSource(Protocol):
    """Where a series reads rows: a rule's context or a whole table (``rows(table, start, end)``)."""

    def __call__(self, table: str, start: int, end: int) -> Rows: ...


@dataclass(frozen=True)
class Series:
    """One number per ``every`` of event time, computed from one table.

    Attributes:
        name: what it is, e.g. ``"job_counts[pdf]"`` (also the feature name a model sees).
        table: the table it reads.
        every_ns: the interval, nanoseconds.
        lookback_ns: how far back one value reads (``every_ns`` for counts and rates).
        key: what it is about (a job type, an agent id, a DAG): a rule's insight key.
        unit: what the numbers count, for axes.
        compute: ``compute(rows, t) -> float`` from the rows of ``(t - lookback, t]``.
    """

    name: str
    table: str
    every_ns: int
    lookback_ns: int
    key: str
    unit: str
    compute: Callable[[Rows, int], float]

    @property
    def every(self) -> pd.Timedelta:
        return pd.Timedelta(self.every_ns, unit="ns")

    @property
    def window(self) -> str:
        """The window a rule reading this series needs (``@rule(window=series.window)``)."""
        return format_duration(self.lookback_ns)

    def value_at(self, rows: RowSource, t: int) -> float:
        """The value of the interval ending at ``t`` (int ns)."""
        return float(self.compute(rows(self.table, t - self.lookback_ns, t), t))

    def value(self, ctx: RuleContext) -> float:
        """The value of the interval ending at the rule's ``now`` (the rule must read ``table``)."""
        return self.value_at(ctx.rows, ctx.now_ns)

    def history(self, ctx: RuleContext, points: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times ns, values)`` of the last ``points`` intervals that fit in the rule's window."""
        start = ctx.now_ns - int(ctx.window.value)
        first = max(ctx.now_ns - (points - 1) * self.every_ns, start + self.lookback_ns)
        times = np.arange(first, ctx.now_ns + 1, self.every_ns, dtype=np.int64)
        return times, np.array([self.value_at(ctx.rows, int(t)) for t in times], dtype=float)

    def frame(self, store: StoreSource, start: Any = None, end: Any = None) -> pd.DataFrame:
        """The series over a store (or a client): ``time`` (interval ends, UTC) and ``value``.

        Intervals end on multiples of ``every`` (as a rule's evaluations do) from the first one
        with a whole lookback of data to the last full one before ``end``.
        """
        # a client: its store (hasattr, not isinstance: a protocol's isinstance reads every property)
        source = cast(TableSource, store if hasattr(store, "table") else getattr(store, "store", store))
        snapshot = TableSnapshot(self.table, source.table(self.table))
        if not len(snapshot):
            return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]"), "value": []})
        lo = as_ns(start) if start is not None else int(snapshot.times[0]) + self.lookback_ns
        hi = as_ns(end) if end is not None else int(snapshot.times[-1])
        assert lo is not None and hi is not None
        first = -(-lo // self.every_ns) * self.every_ns
        times = np.arange(first, hi // self.every_ns * self.every_ns + 1, self.every_ns, dtype=np.int64)

        def rows(table: str, start: int, end: int) -> Rows:  # the one table this series reads
            return snapshot.rows(start, end)

        values = [self.value_at(rows, int(t)) for t in times]
        return pd.DataFrame({"time": pd.to_datetime(times, utc=True), "value": np.asarray(values, dtype=float)})

    def __repr__(self) -> str:
        return f"Series({self.name!r}, every={format_duration(self.every_ns)}, table={self.table!r})"


def _interval(every: Any, what: str = "every") -> int:
    ns = parse_duration(every, what)
    if ns <= 0:
        raise RuleError(f"{what} must be longer than zero, not {every!r}")
    return ns


def _label(kind: str, key: str | None) -> str:
    return f"{kind}[{key}]" if key else kind


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RuleError(f"{what} must be a non-empty string or None, not {value!r}")
    return value


# -- the series ---------------------------------------------------------------------------------------
def job_counts(type: str | None = None, every: Any = "5m") -> Series:
    """Jobs that arrived (a ``queued`` processing_job_status) per interval, of ``type`` or all."""
    job_type = _text(type, "type")

    def count(rows: Rows, _t: int) -> float:
        mask = rows.isin("event", ("processing_job_status",)) & rows.isin("status", ("queued",))
        if job_type is not None:
            mask &= rows.isin("type", (job_type,))
        return float(mask.sum())

    e = _interval(every)
    return Series(_label("job_counts", job_type), "job_events", e, e, job_type or "", "jobs", count)


def failure_rate(type: str | None = None, every: Any = "10m") -> Series:
    """Failed jobs / finished jobs (completed or failed) per interval; NaN when none finished."""
    job_type = _text(type, "type")

    def rate(rows: Rows, _t: int) -> float:
        mine = rows.isin("type", (job_type,)) if job_type is not None else np.ones(len(rows), bool)
        failed = int((rows.isin("event", ("processing_job_failed",)) & mine).sum())
        done = int((rows.isin("event", ("processing_job_completed",)) & mine).sum())
        return failed / (failed + done) if failed + done else math.nan

    e = _interval(every)
    return Series(_label("failure_rate", job_type), "job_events", e, e, job_type or "", "share failed", rate)


def step_duration(task_type: str | None = None, every: Any = "5m") -> Series:
    """Median duration (seconds) of the agent tasks completed per interval; NaN when none."""
    task = _text(task_type, "task_type")

    def median(rows: Rows, _t: int) -> float:
        mask = rows.isin("event", ("agent_task_completed",))
        if task is not None:
            mask &= rows.isin("task_type", (task,))
        values = rows.column("duration")[mask]
        values = values[~np.isnan(values)]
        return median_of(values)

    e = _interval(every)
    return Series(_label("step_duration", task), "agent_events", e, e, "", "seconds", median)


def agent_errors(agent: str | None = None, every: Any = "10m") -> Series:
    """agent_error events per interval, of ``agent`` or of all agents."""
    agent_id = _text(agent, "agent")

    def count(rows: Rows, _t: int) -> float:
        mask = rows.isin("event", ("agent_error",))
        if agent_id is not None:
            mask &= rows.isin("agent_id", (agent_id,))
        return float(mask.sum())

    e = _interval(every)
    return Series(_label("agent_errors", agent_id), "agent_events", e, e, agent_id or "", "errors", count)


def agents_offline(every: Any = "5m", lookback: Any = "2h") -> Series:
    """Agents whose latest agent_status_update in ``lookback`` says offline, at each interval's end."""
    e, back = _interval(every), _interval(lookback, "lookback")

    def offline(rows: Rows, _t: int) -> float:
        mask = rows.isin("event", ("agent_status_update",))
        latest: dict[Any, Any] = {}
        for agent, status in zip(rows.values("agent_id", mask), rows.values("status", mask), strict=True):
            latest[agent] = status  # rows are in time order: the last one wins
        return float(sum(1 for status in latest.values() if status == "offline"))

    return Series("agents_offline", "agent_events", e, max(back, e), "", "agents", offline)


def silent_jobs(type: str | None = None, stale: Any = "3m", every: Any = "5m", lookback: Any = "90m") -> Series:
    """Unfinished jobs (latest status not completed / failed) silent for ``stale`` at the interval's end."""
    job_type = _text(type, "type")
    e, s, back = _interval(every), _interval(stale, "stale"), _interval(lookback, "lookback")
    terminal = frozenset({"completed", "failed", "cancelled"})

    def silent(rows: Rows, t: int) -> float:
        latest: dict[Any, tuple[int, Any, Any]] = {}
        for when, job, status, kind in zip(rows.times.tolist(), rows.values("job_id"), rows.values("status"),
                                           rows.values("type"), strict=True):
            latest[job] = (when, status, kind)
        return float(sum(1 for job, (when, status, kind) in latest.items()
                         if job is not None and status not in terminal and when <= t - s
                         and (job_type is None or kind == job_type)))

    return Series(_label("silent_jobs", job_type), "job_events", e, max(back, e), job_type or "", "jobs", silent)


def knowledge_growth(every: Any = "10m") -> Series:
    """Growth of ``knowledge_items`` per job processed in the interval (dashboard metrics); NaN when
    no job was processed."""
    e = _interval(every)

    def growth(rows: Rows, _t: int) -> float:
        processed, items = rows.column("total_processed"), rows.column("knowledge_items")
        known = ~(np.isnan(processed) | np.isnan(items))
        if known.sum() < 2:
            return math.nan
        processed, items = processed[known], items[known]
        done = float(processed[-1] - processed[0])
        return float(items[-1] - items[0]) / done if done > 0 else math.nan

    return Series("knowledge_growth", "metrics", e, e, "", "items per job", growth)


def step_failures(dag_id: str | None = None, every: Any = "10m") -> Series:
    """DAG step attempts that failed or were sent back for retry per interval, of ``dag_id`` or all."""
    dag = _text(dag_id, "dag_id")

    def count(rows: Rows, _t: int) -> float:
        mask = rows.isin("status", ("failed", "up_for_retry"))
        if dag is not None:
            mask &= rows.isin("dag_id", (dag,))
        return float(mask.sum())

    e = _interval(every)
    return Series(_label("step_failures", dag), "dag_step_events", e, e, dag or "", "steps", count)


# -- evidence a figure can draw ----------------------------------------------------------------------
def evidence(series: Series, ctx: RuleContext, *, baseline: float | None = None, threshold: float | None = None,
             points: int = 24, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An insight's ``evidence`` with the series it judged, for the feed's evidence figure.

    ``series_time`` / ``series_value`` hold the last ``points`` intervals in the rule's window
    (NaN as None), ``baseline`` and ``threshold`` what they were compared with (in the series'
    units), ``series`` and ``unit`` its name.
    """
    times, values = series.history(ctx, points)
    return evidence_of(series.name, times, values, unit=series.unit, baseline=baseline, threshold=threshold,
                       extra=extra)


def evidence_of(name: str, times: Iterable[int], values: Iterable[float], *, unit: str = "",
                baseline: float | None = None, threshold: float | None = None,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An insight's ``evidence`` from a series already computed: ``times`` (int ns, the ends of
    its intervals, oldest first), ``values`` (NaN: nothing to measure) and what they were compared
    with. The form :func:`evidence` writes and the feed's evidence figure reads; ``extra`` (the
    rule's own numbers) is added last."""
    out: dict[str, Any] = {
        "series": name,
        "unit": unit,
        "series_time": iso_many(int(t) for t in times),
        "series_value": [None if v != v else round(float(v), 6) for v in values],
    }
    if baseline is not None and baseline == baseline:
        out["baseline"] = round(float(baseline), 6)
    if threshold is not None and threshold == threshold:
        out["threshold"] = round(float(threshold), 6)
    out.update(extra or {})
    return out
