"""Dashboard: a connection badge, KPI tiles, and tabs holding every view.

Only the view of the selected tab redraws live; the others are paused (their changes are kept as
a dirty flag) and catch up the moment their tab is shown, so a dashboard costs the redraws of
what is on screen. In the browser the same holds for drawing: plotly.js is loaded once for the
kernel and a figure is drawn when its tab is first shown.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypedDict

import ipywidgets as widgets
import pandas as pd
import plotly.graph_objects as go

from ..storelike import StoreSource
from .agents import AgentsView
from .base import Rendered, View, resolve_store
from .dag import DagProgressView
from .frames import Frames
from .insights import InsightsFeed
from .jobs import JobsView
from .knowledge import KnowledgeView
from .markup import dot, esc, sparkline
from .scheduler import DEFAULT_MAX_RATE, RedrawScheduler
from .static import plotlyjs_for_fallback, standalone_page, wants_static
from .theme import PALETTE, format_duration, format_number, format_signed, format_time
from .trend import SuccessRateTrend

__all__ = ["KPIS", "ConnectionHeader", "Dashboard"]

#: the KPI tiles: metrics column -> (label, decimals, unit, True if higher is better)
KPIS: dict[str, tuple[str, int, str, bool]] = {
    "total_processed": ("total processed", 0, "", True),
    # the mean duration of recently completed jobs, in minutes (the reference server's unit)
    "processing_time": ("processing time", 1, "min", False),
    "success_rate": ("success rate", 1, "%", True),
    "active_agents": ("active agents", 0, "", True),
    "knowledge_items": ("knowledge items", 0, "", True),
}
_STATE_COLORS = {
    "connected": PALETTE["green"],
    "connecting": PALETTE["amber"],
    "reconnecting": PALETTE["amber"],
    "auth_failed": PALETTE["red"],
    "closed": PALETTE["red"],
}
_SPARK_POINTS = 40


#: the span of stream time a tile's change is measured over (shorter while the history is)
CHANGE_SPAN_S = 900.0


def _span_text(seconds: float) -> str:
    """``"15 min"``, ``"1 h 30 min"``, ``"40 s"``: how long a tile's change was measured over."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{minutes} min" if not hours else (f"{hours} h" + (f" {minutes} min" if minutes else ""))


def _kpis(metrics: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Latest value, its change over :data:`CHANGE_SPAN_S` of stream time (or the history there
    is: ``span_s`` says which), and recent history.

    The server's own ``*_change`` is against its previous update, seconds ago: "±0" while the
    number climbs. It is used only while a single update has arrived.
    """
    if metrics.empty:
        return {}
    ordered = metrics.assign(t=pd.to_datetime(metrics["timestamp"], utc=True, errors="coerce"))
    ordered = ordered.sort_values("t", kind="stable", na_position="first")
    out: dict[str, dict[str, Any]] = {}
    for name in KPIS:
        series = pd.to_numeric(ordered[name], errors="coerce")
        present = series.dropna()
        if present.empty:
            out[name] = {"value": None, "change": None, "span_s": None, "history": []}
            continue
        value = float(present.iloc[-1])
        times = ordered["t"].loc[present.index]
        change: float | None = None
        span_s: float | None = None
        if len(present) > 1 and pd.notna(times.iloc[-1]):
            earlier = present[(times <= times.iloc[-1] - pd.Timedelta(seconds=CHANGE_SPAN_S)).to_numpy()]
            if len(earlier):
                change, span_s = value - float(earlier.iloc[-1]), CHANGE_SPAN_S
            elif pd.notna(times.iloc[0]):
                change = value - float(present.iloc[0])
                span_s = (times.iloc[-1] - times.iloc[0]).total_seconds()
        if change is None:
            server = pd.to_numeric(ordered[f"{name}_change"], errors="coerce").iloc[-1]
            change = None if pd.isna(server) else float(server)
        out[name] = {"value": value, "change": change, "span_s": span_s,
                     "history": present.tail(_SPARK_POINTS).tolist()}
    return out


class ConnectionHeader(View):
    """The dashboard's top: a connection badge (from the client) and the KPI tiles (from metrics).

    Redraws every second as well, because the badge shows ages.
    """

    title = "AIOS live dashboard"
    tables: ClassVar[tuple[str, ...]] = ("metrics",)
    slots: ClassVar[tuple[str, ...]] = ("badge", "tiles")
    every: ClassVar[float | None] = 1.0

    def __init__(self, store: StoreSource, client: Any = None, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.client = client

    def _render(self, frames: Frames) -> Rendered:
        kpis = _kpis(frames["metrics"])
        badge, badge_values = self._badge(frames)
        values: dict[str, Any] = {name: (kpi["value"], kpi["change"]) for name, kpi in kpis.items()}
        values.update(badge_values)
        return Rendered({"data": [], "layout": {}}, {"badge": badge, "tiles": self._tiles(kpis)}, values)

    def _badge(self, frames: Frames) -> tuple[str, dict[str, Any]]:
        stream_time = format_time(frames.now) if frames.now is not None else "no events yet"
        if self.client is None:
            parts = [f"{dot(PALETTE['grey'])}<b>offline store</b>", f"stream time {esc(stream_time)}"]
            return f'<div class="aios-badge" data-state="offline">{"".join(f"<span>{p}</span>" for p in parts)}</div>', {
                "state": "offline"}
        stats = self.client.stats
        state = str(getattr(stats, "state", None) or getattr(self.client, "state", "unknown"))
        age = stats.last_event_age
        dialect = str(getattr(self.client, "dialect", None) or "aios-v2")
        parts = [
            f'{dot(_STATE_COLORS.get(state, PALETTE["grey"]), title=state)}<b data-field="state">{esc(state)}</b>',
            f'<span class="aios-muted">server</span> {esc(getattr(self.client, "url", ""))}',
            # which dialect the server speaks ("auto" until its greeting says)
            f'<span class="aios-muted">dialect</span> <span data-field="dialect">{esc(dialect)}</span>',
            f'<span class="aios-muted">last event</span> <span data-field="age">'
            f'{esc(format_duration(age) + " ago" if age is not None else "none yet")}</span>',
            f'<span class="aios-muted">events/s</span> <span data-field="rate">{stats.events_per_s:,.1f}</span>',
            f'<span class="aios-muted">events</span> <span data-field="events">{stats.events_received:,}</span>',
            f'<span class="aios-muted">reconnects</span> {stats.reconnects:,}',
            f'<span class="aios-muted">gaps</span> {stats.gaps:,}',
            f'<span class="aios-muted">stream time</span> {esc(stream_time)}',
        ]
        html = (f'<div class="aios-badge" data-state="{esc(state)}">'
                + "".join(f"<span>{p}</span>" for p in parts) + "</div>")
        return html, {"state": state, "dialect": dialect, "events": stats.events_received,
                      "reconnects": stats.reconnects, "gaps": stats.gaps, "events_per_s": stats.events_per_s}

    @staticmethod
    def _tiles(kpis: dict[str, dict[str, Any]]) -> str:
        tiles = []
        for name, (label, decimals, unit, higher_is_better) in KPIS.items():
            kpi = kpis.get(name, {"value": None, "change": None, "span_s": None, "history": []})
            change = kpi["change"]
            change_html = '<span class="aios-muted">waiting for metrics...</span>' if kpi["value"] is None else ""
            if change is not None:
                # the colour follows what is shown: a change that rounds to zero is neutral, "±0"
                change = round(change, decimals) + 0.0
                good = (change > 0) == higher_is_better
                css = "aios-muted" if change == 0 else ("aios-up" if good else "aios-down")
                span = kpi.get("span_s")
                over = f" in {_span_text(span)}" if span is not None else " since the last update"
                title = (f"change over the last {_span_text(span)} of the stream" if span is not None
                         else "change since the server's previous update")
                change_html = (f'<span class="{css}" title="{esc(title)}">'
                               f'{esc(format_signed(change, decimals=decimals, unit=unit) + over)}</span>')
            color = PALETTE["blue"] if name != "success_rate" else PALETTE["green"]
            tiles.append(
                f'<div class="aios-tile" data-kpi="{name}"><div class="aios-tile-label">{esc(label)}</div>'
                f'<div class="aios-tile-value">{esc(format_number(kpi["value"], decimals=decimals, unit=unit))}</div>'
                f'<div class="aios-tile-change">{change_html}</div>{sparkline(kpi["history"], color=color)}</div>'
            )
        return f'<div class="aios-tiles">{"".join(tiles)}</div>'


class _ViewOptions(TypedDict):
    """What the dashboard passes to each of its parts."""

    max_redraws_per_second: float
    scheduler: RedrawScheduler | None


class Dashboard:
    """Connection badge, KPI tiles and tabs with every view, live in a notebook.

    Args:
        client: an ``AIOSClient`` (its ``.store`` feeds the views, its ``.stats`` the badge), or an
            EventStore (the badge then says "offline store").
        max_redraws_per_second: the throttle of each part (default 4).
        scheduler: the redraw scheduler (default: the process's shared one).
    """

    def __init__(self, client: Any, *, max_redraws_per_second: float = DEFAULT_MAX_RATE,
                 scheduler: RedrawScheduler | None = None) -> None:
        store = resolve_store(client, "Dashboard")
        self.client = client if client is not store else None
        options: _ViewOptions = {"max_redraws_per_second": max_redraws_per_second, "scheduler": scheduler}
        self.header = ConnectionHeader(store, self.client, **options)
        #: tab title -> view
        self.views: dict[str, View] = {
            "Jobs": JobsView(store, **options),
            "Agents": AgentsView(store, **options),
            "Success rate": SuccessRateTrend(store, **options),
            "Insights": InsightsFeed(store, **options),
            "Knowledge": KnowledgeView(store, **options),
            "DAG runs": DagProgressView(store, **options),
        }
        self._widget: widgets.VBox | None = None
        self._tabs: widgets.Tab | None = None

    @property
    def store(self) -> Any:
        """The EventStore the dashboard reads."""
        return self.header.store

    @property
    def values(self) -> dict[str, Any]:
        """KPI (value, change) pairs and the badge's numbers, as last drawn."""
        return self.header.values

    @property
    def widget(self) -> widgets.VBox:
        """The live widget (built on first access)."""
        if self._widget is None:
            titles = list(self.views)
            self._tabs = widgets.Tab(children=[view.widget for view in self.views.values()], titles=titles)
            self._tabs.selected_index = 0
            self._tabs.observe(self._on_tab, names="selected_index")
            self._on_tab({"new": 0})
            self._widget = widgets.VBox([self.header.widget, self._tabs], layout=widgets.Layout(width="100%"))
            self._widget.add_class("aios-dashboard")
        return self._widget

    def _on_tab(self, change: dict[str, Any]) -> None:
        selected = change.get("new")
        for index, view in enumerate(self.views.values()):
            view.set_active(index == selected)

    def refresh(self) -> None:
        """Redraw every part now (on the calling thread)."""
        self.header.refresh()
        for view in self.views.values():
            view.refresh()

    def figure(self) -> dict[str, go.Figure]:
        """Each tab's picture as a plain Plotly figure, by tab title."""
        return {title: view.figure() for title, view in self.views.items()}

    def snapshot(self, *, include_plotlyjs: bool | str = True, full_html: bool = False) -> str:
        """The whole dashboard as static HTML: badge, tiles, then every view (plotly.js at most once)."""
        parts = [self.header.snapshot(include_plotlyjs=False)]
        for index, view in enumerate(self.views.values()):
            parts.append(view.snapshot(include_plotlyjs=include_plotlyjs if index == 0 else False))
        body = "".join(parts)
        return standalone_page(ConnectionHeader.title, body) if full_html else body

    def close(self) -> None:
        """Stop every part and close the widgets."""
        self.header.close()
        for view in self.views.values():
            view.close()
        if self._widget is not None:
            self._widget.close()
            if self._tabs is not None:
                self._tabs.close()
        self._widget = self._tabs = None

    def __repr__(self) -> str:
        return f"<Dashboard {len(self.views)} views, {'live' if self._widget is not None else 'not shown'}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if wants_static():
            return {"text/html": self.snapshot(include_plotlyjs=plotlyjs_for_fallback()), "text/plain": repr(self)}
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/html"] = self._fallback_html(plotlyjs_for_fallback())
        bundle["text/plain"] = repr(self)
        return bundle

    def _fallback_html(self, include_plotlyjs: bool) -> str:
        """The static form from what the widgets last drew (no second pass over the store)."""
        parts = [self.header._static_html(self.header._last or self.header.render(), False)]
        for index, view in enumerate(self.views.values()):
            rendered = view._last or view.render()
            parts.append(view._static_html(rendered, include_plotlyjs if index == 0 else False))
        return "".join(parts)

