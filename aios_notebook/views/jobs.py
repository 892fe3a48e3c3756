"""JobsView: active jobs with progress, counts by status and type, recent failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames
from .markup import bar, empty, esc, pill, table, text_of
from .theme import (
    axis,
    base_layout,
    count_axis,
    empty_figure,
    format_age,
    format_duration,
    format_time,
    status_buckets,
    status_color,
)

if TYPE_CHECKING:  # the name only: views import history when given an archive
    from ..history import Archive

__all__ = ["JobsView"]

_ACTIVE_ORDER = ("processing", "running", "retrying", "queued", "pending")
_FINISHED_ORDER = ("completed", "success", "failed", "cancelled")


def _status(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("unknown").str.strip().str.lower()


def _ordered(statuses: list[str], preferred: tuple[str, ...]) -> list[str]:
    return [s for s in preferred if s in statuses] + sorted(s for s in statuses if s not in preferred)


def _counts_figure(jobs: pd.DataFrame) -> dict[str, Any]:
    """Two stacked bar charts side by side: active jobs and finished jobs, by type and status."""
    buckets = status_buckets(jobs["status"])
    frame = pd.DataFrame({
        "type": jobs["type"].astype("string").fillna("unknown"),
        "status": jobs["status"],
        "finished": buckets.isin(["completed", "failed"]).to_numpy(),
    })
    types = sorted(frame["type"].unique())
    data: list[dict[str, Any]] = []
    for finished, axis_ref, preferred in ((False, "", _ACTIVE_ORDER), (True, "2", _FINISHED_ORDER)):
        part = frame[frame["finished"] == finished]
        counts = part.groupby(["status", "type"]).size()
        for status in _ordered(list(part["status"].unique()), preferred):
            data.append({
                "type": "bar", "name": status, "legendgroup": status,
                "x": types, "y": [int(counts.get((status, t), 0)) for t in types],
                "marker": {"color": status_color(status)},
                "xaxis": f"x{axis_ref}", "yaxis": f"y{axis_ref}",
                "hovertemplate": f"{status}<br>%{{x}}: %{{y}} jobs<extra></extra>",
            })
    # the highest stack of each chart (jobs of one type), for whole-number ticks on small counts
    tallest = {}
    for ref, finished in (("", False), ("2", True)):
        stacks = frame[frame["finished"] == finished].groupby("type").size()
        tallest[ref] = int(stacks.max()) if len(stacks) else 0
    layout = base_layout(height=300, uirevision="jobs", barmode="stack")
    layout["xaxis"] = axis("job type (active)", domain=[0, 0.46])
    layout["yaxis"] = count_axis("jobs", tallest[""])
    layout["xaxis2"] = axis("job type (finished)", domain=[0.54, 1], anchor="y2")
    layout["yaxis2"] = count_axis("jobs", tallest["2"], anchor="x2")
    return {"data": data, "layout": layout}


class JobsView(View):
    """Active jobs with progress bars and current step, counts by status and type, recent failures.

    Args:
        store: the EventStore (or a client), or an ``Archive`` for a static summary of its jobs.
        max_rows: rows shown in the active and failure tables.
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "Processing jobs"
    tables: ClassVar[tuple[str, ...]] = ("jobs",)
    slots: ClassVar[tuple[str, ...]] = ("summary", "active", "figure", "failures")

    def __init__(self, store: StoreSource | Archive, *, max_rows: int = 12, **kwargs: Any) -> None:
        from ..history.sources import view_source

        super().__init__(view_source(store), **kwargs)  # an Archive: the jobs' state at its end
        self.max_rows = int(max_rows)

    def _render(self, frames: Frames) -> Rendered:
        jobs = frames["jobs"]
        if jobs.empty:
            message = "waiting for job events..."
            return Rendered(
                empty_figure(message, uirevision="jobs"),
                {"summary": "", "active": empty(message), "failures": ""},
                {"total": 0, "active": 0, "by_status": {}, "by_type": {}, "failures": 0},
            )
        jobs = jobs.assign(status=_status(jobs["status"]))
        buckets = status_buckets(jobs["status"])
        active = jobs[buckets.isin(["running", "pending"]).to_numpy()]
        failed = jobs[(buckets == "failed").to_numpy()]
        by_status = {str(k): int(v) for k, v in jobs["status"].value_counts().items()}
        by_type = {str(k): int(v) for k, v in jobs["type"].astype("string").fillna("unknown").value_counts().items()}
        summary = " · ".join(f"{count:,} {status}" for status, count in sorted(by_status.items(), key=lambda kv: -kv[1]))
        # what is counted: the jobs this store has seen, not the server's all-time total (a KPI tile)
        seen = pd.to_datetime(jobs["started_at"], utc=True, errors="coerce").fillna(
            pd.to_datetime(jobs["updated_at"], utc=True, errors="coerce")).min()
        since = f" seen since {format_time(seen, seconds=False)}" if pd.notna(seen) else " seen"
        panels = {
            "summary": f'<div class="aios-summary">{len(jobs):,} jobs{esc(since)}: {esc(summary)}'
                       f' <span class="aios-muted">(the jobs this stream has shown; the server\'s '
                       f'"total processed" counts every job it ever ran)</span></div>',
            "active": self._active_table(active, frames.now),
            "failures": self._failures_table(failed, frames.now),
        }
        values = {"total": len(jobs), "active": len(active), "by_status": by_status, "by_type": by_type,
                  "failures": len(failed)}
        return Rendered(_counts_figure(jobs), panels, values)

    def _active_table(self, active: pd.DataFrame, now: pd.Timestamp | None) -> str:
        if active.empty:
            return empty("no active jobs right now")
        order = active["status"].map({s: i for i, s in enumerate(_ACTIVE_ORDER)}).fillna(len(_ACTIVE_ORDER))
        started = pd.to_datetime(active["started_at"], utc=True, errors="coerce")
        shown = active.assign(sort_order=order.to_numpy(), sort_started=started).sort_values(
            ["sort_order", "sort_started"], ascending=[True, False], na_position="last").head(self.max_rows)
        rows = []
        for job in shown.itertuples(index=False):
            progress = pd.to_numeric(job.progress, errors="coerce")
            eta = ""
            if now is not None and text_of(job.estimated_completion):
                remaining = (pd.to_datetime(job.estimated_completion, utc=True, errors="coerce") - now).total_seconds()
                eta = "in " + format_duration(remaining) if remaining == remaining and remaining > 0 else "overdue"
            rows.append((
                f'<b>{esc(job.job_id)}</b><div class="aios-muted">{esc(job.filename)}</div>',
                esc(job.type),
                pill(job.status, status_color(job.status)),
                esc(job.current_step),
                bar(progress, status_color(job.status), label=f"{progress:.0f} %" if progress == progress else ""),
                esc(format_age(job.started_at, now).removesuffix(" ago")) if now is not None else "",
                esc(eta),
            ))
        more = len(active) - len(shown)
        tail = f'<div class="aios-muted">… and {more:,} more active jobs</div>' if more > 0 else ""
        return table(("job", "type", "status", "step", "progress", "running for", "ETA"), rows) + tail

    def _failures_table(self, failed: pd.DataFrame, now: pd.Timestamp | None) -> str:
        if failed.empty:
            return '<div class="aios-summary">No failed jobs.</div>'
        when = pd.to_datetime(failed["failed_at"], utc=True, errors="coerce")
        when = when.fillna(pd.to_datetime(failed["updated_at"], utc=True, errors="coerce"))
        shown = failed.assign(failed_when=when).sort_values("failed_when", ascending=False, na_position="last").head(self.max_rows)
        rows = []
        for job in shown.itertuples(index=False):
            retries = pd.to_numeric(job.retry_count, errors="coerce")
            retry_text = (f"{int(retries)} {'retry' if retries == 1 else 'retries'}" if retries == retries
                          else "no retries yet")
            can_retry = text_of(job.can_retry).lower()
            state = "can retry" if can_retry == "true" else ("final" if can_retry == "false" else "unknown")
            error = text_of(job.error)
            rows.append((
                f'<span style="white-space:nowrap">{esc(format_time(job.failed_when))}</span>',
                f'<b>{esc(job.job_id)}</b><div class="aios-muted">{esc(job.filename)}</div>',
                esc(job.type),
                f'<span class="aios-error">{esc(error[:200] + ("…" if len(error) > 200 else ""))}</span>',
                f"{esc(retry_text)} · {pill(state, status_color('retrying' if state == 'can retry' else 'failed'))}",
            ))
        title = f'<h3 class="aios-title">Recent failures ({len(failed):,})</h3>'
        return title + table(("failed at", "job", "type", "error", "retry state"), rows)
