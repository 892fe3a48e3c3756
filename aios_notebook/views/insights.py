"""InsightsFeed: server and rule insights, newest first, filtered by type, source and confidence.

A rule insight whose ``evidence`` holds the series it judged (``series_time`` / ``series_value``,
written by ``rules.series.evidence``, ``rules.adapters.from_river`` and the nine built-ins) opens a small figure of
it: the series over the rule's recent intervals, its ``baseline`` (dashed) and ``threshold``
(red), the evaluated interval shaded, and for a model's verdict its anomaly ``score`` against
``score_threshold`` below. It is inline SVG, so it draws the same in the live feed, in
``snapshot()`` and in a report; :func:`evidence_figure` gives it as a Plotly figure.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import ipywidgets as widgets
import pandas as pd

from ..exceptions import ConfigurationError
from ..storelike import StoreSource
from .base import Rendered, View
from .frames import Frames
from .markup import bar, chip, empty, esc, pill, text_of
from .theme import PALETTE, axis, base_layout, empty_figure, format_time, to_naive_utc

__all__ = ["InsightsFeed", "evidence_figure", "evidence_svg"]

ALL = "all"
RULES = "rules"
_SERVER_COLOR = PALETTE["blue"]
_RULE_COLOR = PALETTE["purple"]


def _source_kind(source: Any) -> str:
    text = text_of(source)
    return "rule" if text.startswith("rule:") else ("server" if text in ("", "server") else text)


def _metadata_html(metadata: Any) -> str:
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return chip(metadata[:80]) if metadata else ""
    if not isinstance(metadata, dict):
        return ""
    chips = []
    for key, value in list(metadata.items())[:8]:
        shown = value if isinstance(value, str | int | float | bool) else json.dumps(value, default=str)
        chips.append(chip(f"{key}: {text_of(shown)[:60]}"))
    return "".join(chips)


def _evidence_of(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


def _numbers(values: Any) -> list[float]:
    out = []
    for value in values if isinstance(values, Sequence) and not isinstance(values, str) else ():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        out.append(number)
    return out


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _panel(values: list[float], lines: list[tuple[float, str, str, str]], *, width: int, height: int, color: str,
           label: str) -> str:
    """One SVG panel: a polyline of ``values`` and horizontal ``lines`` (value, colour, dash, name)."""
    known = [v for v in values if math.isfinite(v)] + [v for v, *_ in lines]
    low, high = min(known), max(known)
    pad = (high - low) * 0.1 or max(abs(high), 1.0) * 0.1
    low, high = low - pad, high + pad
    left, top, plot_w, plot_h = 4, 14, width - 70, height - 18
    step = plot_w / max(1, len(values) - 1)

    def x(i: int) -> float:
        return left + i * step

    def y(v: float) -> float:
        return top + plot_h - (v - low) / (high - low) * plot_h

    parts = [f'<text x="{left}" y="10" font-size="10" fill="#59636e">{esc(label)}</text>']
    # the evaluated interval: the last step of the series
    if len(values) > 1:
        parts.append(f'<rect x="{x(len(values) - 2):.1f}" y="{top}" width="{step:.1f}" height="{plot_h}" '
                     'fill="#d62728" fill-opacity="0.08"/>')
    for value, line_color, dash, name in lines:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="{line_color}" stroke-width="1.2"{dash}/>'
                     f'<text x="{left + plot_w + 4}" y="{y(value) + 3:.1f}" font-size="9.5" fill="{line_color}">'
                     f'{esc(name)} {value:.3g}</text>')
    segment: list[str] = []
    segments = []
    for i, value in enumerate(values):
        if math.isfinite(value):
            segment.append(f"{x(i):.1f},{y(value):.1f}")
        elif segment:
            segments.append(segment)
            segment = []
    if segment:
        segments.append(segment)
    for points in segments:
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{" ".join(points)}"/>')
    if values and math.isfinite(values[-1]):
        parts.append(f'<circle cx="{x(len(values) - 1):.1f}" cy="{y(values[-1]):.1f}" r="3" fill="{color}"/>')
    return f'<g>{"".join(parts)}</g>'


def evidence_svg(evidence: Any, *, width: int = 340) -> str:
    """The small evidence figure of a rule insight as inline SVG ('' when it holds no series)."""
    found = _evidence_of(evidence)
    if found is None:
        return ""
    values = _numbers(found.get("series_value"))
    if sum(1 for v in values if math.isfinite(v)) < 2:
        return ""
    lines = []
    baseline, threshold = _finite(found.get("baseline")), _finite(found.get("threshold"))
    if baseline is not None:
        lines.append((baseline, "#59636e", ' stroke-dasharray="4 3"', "baseline"))
    if threshold is not None:
        lines.append((threshold, "#d62728", "", "threshold"))
    times = found.get("series_time") or []
    span = f" · {esc(str(times[0])[11:16])}–{esc(str(times[-1])[11:16])} UTC" if len(times) > 1 else ""
    unit = f" ({found['unit']})" if found.get("unit") else ""
    label = f"{found.get('series', 'series')}{unit}{span}"
    panels = [_panel(values, lines, width=width, height=86, color=_RULE_COLOR, label=label)]
    scores = _numbers(found.get("score"))
    score_threshold = _finite(found.get("score_threshold"))
    if len(scores) == len(values) and score_threshold is not None and any(math.isfinite(v) for v in scores):
        panels.append(_panel(scores, [(score_threshold, "#d62728", "", "threshold")], width=width, height=62,
                             color=PALETTE["blue"], label="anomaly score"))
    height = 86 + (62 if len(panels) > 1 else 0)
    body = panels[0] + (f'<g transform="translate(0,86)">{panels[1]}</g>' if len(panels) > 1 else "")
    return (f'<svg class="aios-evidence-figure" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="evidence: {esc(label)}">{body}</svg>')


def evidence_figure(evidence: Any, title: str | None = None) -> dict[str, Any]:
    """The evidence of a rule insight as a Plotly figure dict: series, baseline, threshold (and the
    anomaly score against its threshold on a second axis)."""
    found = _evidence_of(evidence) or {}
    times = list(found.get("series_time") or [])
    values = _numbers(found.get("series_value"))
    if not values:
        return empty_figure("this insight's evidence holds no series", uirevision="evidence")
    x = (list(to_naive_utc(pd.to_datetime(pd.Series(times), utc=True))) if len(times) == len(values)
         else list(range(len(values))))
    data: list[dict[str, Any]] = [{"type": "scatter", "mode": "lines+markers", "name": str(found.get("series", "series")),
                                   "x": x, "y": [v if math.isfinite(v) else None for v in values],
                                   "line": {"color": _RULE_COLOR}}]
    for key, color, dash in (("baseline", "#59636e", "dash"), ("threshold", "#d62728", "solid")):
        value = _finite(found.get(key))
        if value is not None:
            data.append({"type": "scatter", "mode": "lines", "name": key, "x": [x[0], x[-1]], "y": [value, value],
                         "line": {"color": color, "dash": dash}})
    layout = base_layout(height=300, uirevision="evidence")
    layout["xaxis"] = axis("time (UTC)", type="date" if len(times) == len(values) else "linear")
    layout["yaxis"] = axis(str(found.get("unit") or "value"))
    scores = _numbers(found.get("score"))
    score_threshold = _finite(found.get("score_threshold"))
    if len(scores) == len(values) and score_threshold is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "anomaly score", "x": x, "yaxis": "y2",
                     "y": [v if math.isfinite(v) else None for v in scores], "line": {"color": PALETTE["blue"]}})
        data.append({"type": "scatter", "mode": "lines", "name": "score threshold", "x": [x[0], x[-1]], "yaxis": "y2",
                     "y": [score_threshold, score_threshold], "line": {"color": "#d62728", "dash": "dot"}})
        layout["yaxis2"] = {"title": {"text": "anomaly score"}, "overlaying": "y", "side": "right", "showgrid": False}
    layout["title"] = {"text": title or f"Evidence: {found.get('series', 'series')}"}
    return {"data": data, "layout": layout}


class InsightsFeed(View):
    """Insights newest first: title, description, type, confidence, metadata and source.

    Server insights (``source == "server"``) and local-rule insights (``source == "rule:<name>"``)
    are told apart by colour, label and border style.

    Args:
        store: the EventStore (or a client).
        type: show only this insight type (``None``: all).
        source: ``None``/``"all"``, ``"server"``, ``"rules"`` (every rule) or ``"rule:<name>"``.
        min_confidence: hide insights below this confidence (0-1).
        max_items: items in the feed.
        **kwargs: ``max_redraws_per_second``, ``scheduler`` (see :class:`~.base.View`).
    """

    title = "Insights"
    tables: ClassVar[tuple[str, ...]] = ("insights",)
    slots: ClassVar[tuple[str, ...]] = ("summary", "figure", "feed")

    def __init__(self, store: StoreSource, *, type: str | None = None, source: str | None = None,
                 min_confidence: float = 0.0, max_items: int = 30, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self._filters_lock = threading.Lock()
        self._type = type or ALL
        self._source = source or ALL
        self._min_confidence = self._check_confidence(min_confidence)
        self.max_items = int(max_items)
        self._type_picker: widgets.Dropdown | None = None
        self._source_picker: widgets.Dropdown | None = None
        self._confidence_slider: widgets.FloatSlider | None = None
        self._syncing = False

    @staticmethod
    def _check_confidence(value: float) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"min_confidence must be a number from 0 to 1, not {value!r}") from None
        if not 0.0 <= number <= 1.0:
            raise ConfigurationError(f"min_confidence must be from 0 to 1, not {value!r}")
        return number

    # ---- filters (settable from code; the controls follow)
    def set_filters(self, *, type: str | None = None, source: str | None = None,
                    min_confidence: float | None = None) -> None:
        """Change the filters (``"all"`` clears one) and redraw soon."""
        with self._filters_lock:
            if type is not None:
                self._type = type
            if source is not None:
                self._source = source
            if min_confidence is not None:
                self._min_confidence = self._check_confidence(min_confidence)
        self._sync_controls(None)
        self._changed()

    @property
    def filters(self) -> dict[str, Any]:
        """The current filters: type, source, min_confidence."""
        with self._filters_lock:
            return {"type": self._type, "source": self._source, "min_confidence": self._min_confidence}

    def _controls(self) -> list[widgets.Widget]:
        style = {"description_width": "initial"}
        self._type_picker = widgets.Dropdown(options=[ALL], value=ALL, description="type", style=style,
                                             layout=widgets.Layout(width="200px"))
        self._source_picker = widgets.Dropdown(options=[ALL, "server", RULES], value=ALL, description="source",
                                               style=style, layout=widgets.Layout(width="230px"))
        self._confidence_slider = widgets.FloatSlider(
            value=self._min_confidence, min=0.0, max=1.0, step=0.05, description="min confidence",
            readout_format=".2f", style=style, continuous_update=False, layout=widgets.Layout(width="300px"))
        for control in (self._type_picker, self._source_picker, self._confidence_slider):
            control.observe(self._on_control, names="value")
        return [self._type_picker, self._source_picker, self._confidence_slider]

    def _on_control(self, _change: Any) -> None:
        if (self._syncing or self._type_picker is None or self._source_picker is None
                or self._confidence_slider is None):  # all three or none: _controls makes them together
            return
        with self._filters_lock:
            self._type = self._type_picker.value or ALL
            self._source = self._source_picker.value or ALL
            self._min_confidence = float(self._confidence_slider.value)
        self._changed()

    def _sync_controls(self, insights: pd.DataFrame | None) -> None:
        """Offer the types and rules seen so far; keep the pickers on the current filters."""
        if self._type_picker is None or self._source_picker is None or self._confidence_slider is None:
            return  # all three or none: _controls makes them together
        filters = self.filters
        types = [ALL]
        sources = [ALL, "server", RULES]
        if insights is not None:
            types += sorted(str(t) for t in insights["type"].dropna().astype("string").unique())
            sources += sorted(s for s in insights["source"].dropna().astype("string").unique() if s.startswith("rule:"))
        for options, value in ((types, filters["type"]), (sources, filters["source"])):
            if value not in options:
                options.append(value)
        self._syncing = True  # option changes must not read back as user choices
        try:
            if insights is not None and list(self._type_picker.options) != types:
                self._type_picker.options = types
            if insights is not None and list(self._source_picker.options) != sources:
                self._source_picker.options = sources
            self._type_picker.value = filters["type"]
            self._source_picker.value = filters["source"]
            self._confidence_slider.value = filters["min_confidence"]
        finally:
            self._syncing = False

    def _filtered(self, insights: pd.DataFrame) -> pd.DataFrame:
        filters = self.filters
        keep = pd.Series(True, index=insights.index)
        if filters["type"] != ALL:
            keep &= (insights["type"].astype("string") == filters["type"]).fillna(False)
        source = insights["source"].astype("string").fillna("server")
        if filters["source"] == RULES:
            keep &= source.str.startswith("rule:")
        elif filters["source"] != ALL:
            keep &= source == filters["source"]
        if filters["min_confidence"] > 0:
            keep &= (pd.to_numeric(insights["confidence"], errors="coerce") >= filters["min_confidence"]).fillna(False)
        return insights[keep.to_numpy()]

    def _render(self, frames: Frames) -> Rendered:
        insights = frames["insights"]
        self._sync_controls(insights)
        if insights.empty:
            message = "waiting for insights..."
            return Rendered(empty_figure(message, uirevision="insights"), {"summary": "", "feed": empty(message)},
                            {"total": 0, "shown": 0, "server": 0, "rules": 0})
        when = pd.to_datetime(insights["timestamp"], utc=True, errors="coerce")
        when = when.fillna(pd.to_datetime(insights["created_at"], utc=True, errors="coerce"))
        insights = insights.assign(when=when, source=insights["source"].astype("string").fillna("server"))
        kinds = insights["source"].map(_source_kind)
        shown = self._filtered(insights).sort_values("when", ascending=False, na_position="last")
        n_server, n_rules = int((kinds == "server").sum()), int((kinds == "rule").sum())
        filters = self.filters
        active = [f"{k} {v}" for k, v in (("type", filters["type"]), ("source", filters["source"])) if v != ALL]
        if filters["min_confidence"] > 0:
            active.append(f"confidence ≥ {filters['min_confidence']:.2f}")
        summary = (f'<div class="aios-summary">{len(insights):,} insights ({n_server:,} from the server, '
                   f'{n_rules:,} from local rules); showing {len(shown):,}'
                   f'{" with " + esc(", ".join(active)) if active else ""}.</div>')
        panels = {"summary": summary, "feed": self._feed(shown)}
        values = {"total": len(insights), "shown": len(shown), "server": n_server, "rules": n_rules,
                  "shown_ids": shown["insight_id"].astype("string").head(self.max_items).tolist()}
        return Rendered(self._figure(shown), panels, values)

    def evidence_figure(self, insight_id: str | None = None) -> Any:
        """The evidence of a rule insight (default: the newest one with a series) as a Plotly figure."""
        import plotly.graph_objects as go

        insights = self.store.table("insights")
        if insight_id is not None:
            chosen = insights[insights["insight_id"].astype("string") == insight_id]
            if chosen.empty:
                raise ConfigurationError(f"no insight with insight_id {insight_id!r}")
        else:
            with_series = [i for i, e in enumerate(insights["evidence"]) if evidence_svg(e)]
            chosen = insights.iloc[with_series[-1:]]
        row = chosen.iloc[-1] if len(chosen) else None
        evidence = row["evidence"] if row is not None else None
        title = f"Evidence: {row['title']}" if row is not None else None
        return go.Figure(evidence_figure(evidence, title=title))

    def _feed(self, shown: pd.DataFrame) -> str:
        if shown.empty:
            return empty("no insights match the filters")
        items = []
        opened = False
        for insight in shown.head(self.max_items).itertuples(index=False):
            is_rule = _source_kind(insight.source) == "rule"
            color = _RULE_COLOR if is_rule else _SERVER_COLOR
            label = f"rule {text_of(insight.source)[5:]}" if is_rule else "server"
            confidence = pd.to_numeric(insight.confidence, errors="coerce")
            confidence_html = (bar(confidence * 100, color, label=f"confidence {confidence:.0%}")
                               if confidence == confidence else "")
            figure = evidence_svg(getattr(insight, "evidence", None)) if is_rule else ""
            if figure:
                # the newest figure is open, so a report (or a PDF of it) shows one without a click
                evidence_html = (f'<details class="aios-evidence"{" open" if not opened else ""}>'
                                 f"<summary>evidence</summary>{figure}</details>")
                opened = True
            else:
                evidence_html = ""
            items.append(
                f'<div class="aios-feed-item{" aios-rule" if is_rule else ""}" style="border-left-color:{color}" '
                f'data-source="{esc(insight.source)}">'
                f'<div>{pill(label, color)} {chip(insight.type)} <b>{esc(insight.title)}</b></div>'
                f'<div style="margin:2px 0">{esc(insight.description)}</div>'
                f'<div style="max-width:320px">{confidence_html}</div>'
                f'<div class="aios-feed-meta">{esc(format_time(insight.when))} {_metadata_html(insight.metadata)}</div>'
                f"{evidence_html}</div>"
            )
        more = len(shown) - self.max_items
        tail = f'<div class="aios-muted">… and {more:,} older insights</div>' if more > 0 else ""
        return "".join(items) + tail

    @staticmethod
    def _figure(shown: pd.DataFrame) -> dict[str, Any]:
        """Confidence over time, server and rule insights in two colours (hover: title)."""
        if shown.empty:
            return empty_figure("no insights match the filters", uirevision="insights")
        kinds = shown["source"].map(_source_kind)
        data = []
        for kind, name, color, symbol in (("server", "server insight", _SERVER_COLOR, "circle"),
                                          ("rule", "rule insight", _RULE_COLOR, "diamond")):
            part = shown[(kinds == kind).to_numpy()]
            if part.empty:
                continue
            data.append({
                "type": "scatter", "mode": "markers", "name": name,
                "x": to_naive_utc(part["when"]), "y": pd.to_numeric(part["confidence"], errors="coerce") * 100,
                "marker": {"color": color, "symbol": symbol, "size": 9, "line": {"width": 0}},
                "customdata": list(zip(part["title"].map(text_of), part["type"].map(text_of),
                                       part["source"].map(text_of), strict=True)),
                "hovertemplate": "<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]}"
                                 "<br>confidence %{y:.0f} %<br>%{x|%Y-%m-%d %H:%M:%S} UTC<extra></extra>",
            })
        layout = base_layout(height=260, uirevision="insights")
        layout["xaxis"] = axis("time (UTC)", type="date")
        layout["yaxis"] = axis("confidence (%)", range=[0, 105])
        return {"data": data, "layout": layout}
