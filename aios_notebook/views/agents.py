"""AgentsView: one card per agent, and the agents' recent errors by severity."""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames
from .markup import bar, dot, empty, esc, pill, table, text_of
from .theme import (
    SEVERITY_COLORS,
    axis,
    base_layout,
    count_axis,
    empty_figure,
    format_number,
    format_time,
    status_color,
)

__all__ = ["AgentsView"]

_SEVERITY_ORDER = ("critical", "error", "warning", "info")


def _severity(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("unknown").str.strip().str.lower()


def _count_items(value: Any) -> int:
    """Length of a list-like cell (a list, tuple or array); 0 for missing or scalar values."""
    if value is None or isinstance(value, str | bytes):
        return 0
    try:
        return len(value)
    except TypeError:
        return 0


def _figure(agents: pd.DataFrame, errors: pd.DataFrame) -> dict[str, Any]:
    """Tasks completed per agent (coloured by status) beside agent errors per agent by severity."""
    names = agents["agent_id"].astype("string").tolist()
    statuses = agents["status"].astype("string").fillna("unknown").tolist()
    done = pd.to_numeric(agents["tasks_completed"], errors="coerce").fillna(0).tolist()
    data: list[dict[str, Any]] = [{
        "type": "bar", "orientation": "h", "name": "tasks completed", "showlegend": False,
        "y": names, "x": done, "marker": {"color": [status_color(s) for s in statuses]},
        "customdata": statuses, "hovertemplate": "%{y} (%{customdata})<br>%{x:,} tasks completed<extra></extra>",
    }]
    if not errors.empty:
        counts = errors.groupby(["severity", "agent_id"]).size()
        present = set(errors["severity"])
        for severity in [s for s in _SEVERITY_ORDER if s in present] + sorted(present - set(_SEVERITY_ORDER)):
            data.append({
                "type": "bar", "orientation": "h", "name": severity, "xaxis": "x2", "yaxis": "y",
                "y": names, "x": [int(counts.get((severity, n), 0)) for n in names],
                "marker": {"color": SEVERITY_COLORS.get(severity, "#8b949e")},
                "hovertemplate": f"%{{y}}<br>%{{x}} {severity} errors<extra></extra>",
            })
    layout = base_layout(height=max(220, 70 + 28 * len(names)), uirevision="agents", barmode="stack")
    split = not errors.empty  # without errors the tasks chart takes the whole width
    layout["xaxis"] = axis("tasks completed", domain=[0, 0.48] if split else [0, 1], rangemode="tozero",
                           tickformat=",d")
    if split:
        most = int(errors.groupby("agent_id", observed=True).size().max())
        layout["xaxis2"] = count_axis("agent errors (count)", most, domain=[0.56, 1], anchor="y")
    layout["yaxis"] = axis("", autorange="reversed")
    return {"data": data, "layout": layout}


class AgentsView(View):
    """One card per agent (status colour, task, progress, tasks done, average time, success rate)
    and the agents' recent errors by severity.

    Args:
        store: the EventStore (or a client).
        max_errors: error rows shown.
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "Agents"
    tables: ClassVar[tuple[str, ...]] = ("agents", "agent_events")
    slots: ClassVar[tuple[str, ...]] = ("summary", "cards", "figure", "errors")

    def __init__(self, store: StoreSource, *, max_errors: int = 10, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.max_errors = int(max_errors)

    def _render(self, frames: Frames) -> Rendered:
        agents = frames["agents"]
        events = frames["agent_events"]
        errors = events[(events["event"].astype("string") == "agent_error").fillna(False).to_numpy()]
        errors = errors.assign(severity=_severity(errors["severity"]))
        if agents.empty and errors.empty:
            message = "waiting for agent events..."
            return Rendered(empty_figure(message, uirevision="agents"),
                            {"summary": "", "cards": empty(message), "errors": ""},
                            {"agents": 0, "by_status": {}, "errors_by_severity": {}})
        # by name, not by the categorical's order of first appearance
        agents = agents.iloc[agents["agent_id"].astype("string").argsort(kind="stable")]
        statuses = agents["status"].astype("string").fillna("unknown").str.lower()
        by_status = {str(k): int(v) for k, v in statuses.value_counts().items()}
        by_severity = {str(k): int(v) for k, v in errors["severity"].value_counts().items()}
        summary = " · ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        panels = {
            "summary": f'<div class="aios-summary">{len(agents)} agents: {esc(summary)}</div>',
            "cards": self._cards(agents.assign(status=statuses)),
            "errors": self._errors(errors, by_severity),
        }
        values = {"agents": len(agents), "by_status": by_status, "errors_by_severity": by_severity}
        return Rendered(_figure(agents, errors), panels, values)

    def _cards(self, agents: pd.DataFrame) -> str:
        if agents.empty:
            return empty("no agent status yet")
        cards = []
        for agent in agents.itertuples(index=False):
            color = status_color(agent.status)
            progress = pd.to_numeric(agent.progress, errors="coerce")
            working = progress == progress and agent.status == "working"
            task = esc(agent.current_task) if text_of(agent.current_task) else '<span class="aios-muted">no task</span>'
            success = pd.to_numeric(agent.success_rate, errors="coerce")
            cards.append(
                f'<div class="aios-card" data-agent="{esc(agent.agent_id)}">'
                f'<div>{dot(color, title=text_of(agent.status))}<span class="aios-card-title">{esc(agent.name or agent.agent_id)}</span> '
                f'<span class="aios-muted">{esc(agent.type)}</span> {pill(agent.status, color)}</div>'
                f'<div class="aios-muted" style="margin:3px 0">{task}</div>'
                + (bar(progress, color, label=f"{progress:.0f} %") if working else "")
                + '<div class="aios-kv" style="margin-top:4px">'
                f'<span class="aios-muted">tasks completed</span><span>{format_number(agent.tasks_completed)}</span>'
                f'<span class="aios-muted">average time</span><span>{format_number(agent.average_processing_time, decimals=1, unit="s")}</span>'
                f'<span class="aios-muted">success rate</span><span>{format_number(success, decimals=1, unit="%")}</span>'
                "</div></div>"
            )
        return f'<div class="aios-grid">{"".join(cards)}</div>'

    def _errors(self, errors: pd.DataFrame, by_severity: dict[str, int]) -> str:
        if errors.empty:
            return '<div class="aios-summary">No agent errors.</div>'
        counts = " ".join(
            f"{pill(f'{severity} {count:,}', SEVERITY_COLORS.get(severity, '#8b949e'))}"
            for severity, count in sorted(by_severity.items(), key=lambda kv: -kv[1])
        )
        when = pd.to_datetime(errors["timestamp"], utc=True, errors="coerce")
        shown = errors.assign(error_time=when).sort_values("error_time", ascending=False, na_position="last")
        rows = []
        for error in shown.head(self.max_errors).itertuples(index=False):
            n_affected = _count_items(error.affected_jobs)
            retry = text_of(error.can_retry).lower()
            rows.append((
                f'<span style="white-space:nowrap">{esc(format_time(error.error_time))}</span>',
                esc(error.agent_id),
                pill(error.severity, SEVERITY_COLORS.get(error.severity, "#8b949e")),
                f'<span class="aios-error">{esc(error.error)}</span>',
                "can retry" if retry == "true" else ("no retry" if retry == "false" else ""),
                f"{n_affected}" if n_affected else "",
            ))
        return (f'<h3 class="aios-title">Recent agent errors</h3><div style="margin-bottom:4px">{counts}</div>'
                + table(("time", "agent", "severity", "error", "retry", "jobs affected"), rows))
