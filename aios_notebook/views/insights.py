"""InsightsFeed: server and rule insights, newest first, filtered by type, source and confidence."""

from __future__ import annotations

import json
import threading
from typing import Any, ClassVar

import ipywidgets as widgets
import pandas as pd

from ..exceptions import ConfigurationError
from .base import Rendered, View
from .frames import Frames
from .markup import bar, chip, empty, esc, pill, text_of
from .theme import PALETTE, axis, base_layout, empty_figure, format_time, to_naive_utc

__all__ = ["InsightsFeed"]

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

    def __init__(self, store: Any, *, type: str | None = None, source: str | None = None,
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

    def _feed(self, shown: pd.DataFrame) -> str:
        if shown.empty:
            return empty("no insights match the filters")
        items = []
        for insight in shown.head(self.max_items).itertuples(index=False):
            is_rule = _source_kind(insight.source) == "rule"
            color = _RULE_COLOR if is_rule else _SERVER_COLOR
            label = f"rule {text_of(insight.source)[5:]}" if is_rule else "server"
            confidence = pd.to_numeric(insight.confidence, errors="coerce")
            confidence_html = (bar(confidence * 100, color, label=f"confidence {confidence:.0%}")
                               if confidence == confidence else "")
            items.append(
                f'<div class="aios-feed-item{" aios-rule" if is_rule else ""}" style="border-left-color:{color}" '
                f'data-source="{esc(insight.source)}">'
                f'<div>{pill(label, color)} {chip(insight.type)} <b>{esc(insight.title)}</b></div>'
                f'<div style="margin:2px 0">{esc(insight.description)}</div>'
                f'<div style="max-width:320px">{confidence_html}</div>'
                f'<div class="aios-feed-meta">{esc(format_time(insight.when))} {_metadata_html(insight.metadata)}</div>'
                "</div>"
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
