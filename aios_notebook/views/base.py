"""The base of every view: store subscription, throttled redraws, widget, static forms, display.

A view is a pure ``_render(frames) -> Rendered`` (a figure dict plus HTML panels) around which this
class builds the rest:

- ``view.widget``: built on first use; an ipywidgets ``VBox`` with the view's controls, its HTML
  panels and one :class:`~.figure_widget.PlotlyFigure`. Building it subscribes to the store and
  registers with the redraw scheduler; the store's callback only marks the view dirty.
- ``view.redraw()`` (the scheduler's call) and ``view.refresh()`` (the same, for users and
  tests): read the store, render, and send only what changed (one message per changed widget).
- ``view.figure()``: a plain ``plotly.graph_objects.Figure``; ``view.snapshot()``: HTML.
- Displaying the view shows the widget with the static HTML as fallback (see ``static.py``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import ipywidgets as widgets
import plotly.graph_objects as go
from plotly.io.json import to_json_plotly

from ..exceptions import ConfigurationError
from ..storelike import StoreSource, TableSource
from .figure_widget import PlotlyFigure
from .frames import Frames, read_frames
from .markup import esc
from .scheduler import DEFAULT_MAX_RATE, RedrawScheduler, check_rate, default_scheduler
from .static import figure_html, plotlyjs_for_fallback, standalone_page, wants_static
from .theme import STYLESHEET

__all__ = ["Rendered", "View", "resolve_store"]

log = logging.getLogger("aios_notebook.views")


@dataclass
class Rendered:
    """One drawing of a view.

    Attributes:
        figure: the Plotly figure as a dict (``{"data": [...], "layout": {...}}``).
        panels: slot name -> HTML of that panel.
        values: the numbers the view shows, by name (what tests and KPIs read).
    """

    figure: dict[str, Any]
    panels: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)


def _is_store(candidate: Any) -> bool:
    return candidate is not None and all(hasattr(candidate, name) for name in ("subscribe", "now", "table"))


def resolve_store(source: StoreSource, view: str) -> TableSource:
    """The EventStore behind ``source`` (a store, or anything with a ``.store`` such as a client)."""
    inner = getattr(source, "store", None)
    found: Any = inner if _is_store(inner) else source  # a client's subscribe() is about WebSocket types
    if not _is_store(found):
        raise ConfigurationError(
            f"{view} needs an EventStore (or a client with a .store), not {type(source).__name__}"
        )
    return cast(TableSource, found)


class View:
    """Base class of the live views (see the module docstring).

    Args:
        store: the EventStore to watch (a client works too: its ``.store`` is used).
        max_redraws_per_second: the throttle (default 4).
        scheduler: the redraw scheduler (default: the process's shared one).
    """

    title: ClassVar[str] = "View"
    #: the store tables the view reads (and subscribes to)
    tables: ClassVar[tuple[str, ...]] = ()
    #: whether the view reads ``store.gaps`` (then it also watches the errors table, where gaps are rows)
    reads_gaps: ClassVar[bool] = False
    #: the order of the panels; "figure" is where the plot goes
    slots: ClassVar[tuple[str, ...]] = ("summary", "figure")
    #: redraw this often (seconds) even without changes (views showing ages)
    every: ClassVar[float | None] = None

    def __init__(self, store: StoreSource, *, max_redraws_per_second: float = DEFAULT_MAX_RATE,
                 scheduler: RedrawScheduler | None = None) -> None:
        self._store = resolve_store(store, type(self).__name__)
        self.max_redraws_per_second = check_rate(max_redraws_per_second)
        self._scheduler_arg = scheduler
        self._scheduler: RedrawScheduler | None = None
        self._redraw_lock = threading.RLock()
        self._widget: widgets.VBox | None = None
        self._plot: PlotlyFigure | None = None
        self._panels: dict[str, widgets.HTML] = {}
        self._header: widgets.HTML | None = None
        self._subscription: Any = None
        self._last: Rendered | None = None
        self.redraw_count = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------ for subclasses
    def _render(self, frames: Frames) -> Rendered:
        raise NotImplementedError

    def _controls(self) -> list[widgets.Widget]:
        """The view's input widgets (filters, pickers); built once with the widget."""
        return []

    def _read(self) -> Frames:
        return read_frames(self._store, self.tables, gaps=self.reads_gaps)

    def _changed(self, _change: Any = None) -> None:
        """A control changed: redraw soon (through the scheduler, so the throttle holds)."""
        if self._scheduler is not None:
            self._scheduler.mark_dirty(self)

    # ------------------------------------------------------------ public
    @property
    def store(self) -> TableSource:
        """The EventStore the view reads."""
        return self._store

    @property
    def values(self) -> dict[str, Any]:
        """The numbers shown by the last redraw (rendered now if the view never drew)."""
        return dict((self._last or self.render()).values)

    def render(self) -> Rendered:
        """Read the store and render once, without touching any widget."""
        return self._render(self._read())

    def figure(self) -> go.Figure:
        """The view's picture as a plain Plotly figure (no widget, no kernel needed)."""
        return go.Figure(self.render().figure)

    def snapshot(self, *, include_plotlyjs: bool | str = True, full_html: bool = False) -> str:
        """The view as static HTML (plotly.js inlined unless told otherwise).

        Args:
            include_plotlyjs: as in ``plotly.io.to_html`` (True: inline, "cdn", False: the page has it).
            full_html: a whole HTML document instead of a fragment.
        """
        body = self._static_html(self.render(), include_plotlyjs)
        return standalone_page(self.title, body) if full_html else body

    @property
    def widget(self) -> widgets.VBox:
        """The live widget (built, subscribed and drawn on first access)."""
        with self._redraw_lock:
            if self._widget is None:
                self._build()
            assert self._widget is not None
            return self._widget

    def redraw(self) -> None:
        """Read the newest data and update the widget (what the scheduler calls)."""
        with self._redraw_lock:
            if self._widget is None:
                return
            try:
                rendered = self.render()
            except Exception as exc:  # shown in the view; the next change tries again
                log.exception("%s failed to render", type(self).__name__)
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._set_header()
                return
            if self.last_error is not None:
                self.last_error = None
                self._set_header()
            self._apply(rendered)

    def refresh(self) -> None:
        """Redraw now, on the calling thread (building the widget if needed)."""
        if self._widget is None:
            self.widget  # noqa: B018 - builds and draws
        else:
            self.redraw()

    def set_active(self, active: bool) -> None:
        """Pause (False) or resume live redraws, e.g. while the view's tab is hidden."""
        if self._scheduler is not None:
            self._scheduler.set_active(self, active)

    def close(self) -> None:
        """Stop watching the store and close the widgets."""
        with self._redraw_lock:
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None
            if self._scheduler is not None:
                self._scheduler.unregister(self)
            if self._widget is not None:
                self._widget.close()
                for child in [self._plot, self._header, *self._panels.values()]:
                    if child is not None:
                        child.close()
            self._widget = None

    def __repr__(self) -> str:
        state = "live" if self._widget is not None else "not shown"
        return f"<{type(self).__name__} {state}, {self.redraw_count} redraws>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if wants_static():
            html = self.snapshot(include_plotlyjs=plotlyjs_for_fallback())
            return {"text/html": html, "text/plain": repr(self)}
        bundle = dict(self.widget._repr_mimebundle_())
        with self._redraw_lock:
            rendered = self._last or self.render()
        bundle["text/html"] = self._static_html(rendered, plotlyjs_for_fallback())
        bundle["text/plain"] = repr(self)
        return bundle

    # ------------------------------------------------------------ internals
    def _build(self) -> None:
        controls = self._controls()
        self._header = widgets.HTML()
        self._plot = PlotlyFigure() if "figure" in self.slots else None
        self._panels = {slot: widgets.HTML() for slot in self.slots if slot != "figure"}
        children: list[widgets.Widget] = [self._header]
        if controls:
            children.append(widgets.HBox(controls, layout=widgets.Layout(flex_flow="row wrap")))
        children += [self._plot if slot == "figure" else self._panels[slot] for slot in self.slots]
        self._widget = widgets.VBox(children, layout=widgets.Layout(width="100%"))
        self._widget.add_class("aios-view")
        self._widget.add_class(f"aios-{type(self).__name__.lower()}")  # e.g. aios-jobsview, for selectors
        self._set_header()
        self._scheduler = self._scheduler_arg or default_scheduler()
        self._scheduler.register(self, max_rate=self.max_redraws_per_second, every=self.every, dirty=False)
        watched = list(self.tables) + (["errors"] if self.reads_gaps else [])
        self._subscription = self._store.subscribe(self._on_store_change, tables=watched or None)
        self.redraw()  # drawn before the cell returns; changes from here on mark it dirty

    def _on_store_change(self, _batch: Any = None) -> None:
        # runs on the ingesting thread: mark only, never draw here
        scheduler = self._scheduler
        if scheduler is not None:
            scheduler.mark_dirty(self)

    def _set_header(self) -> None:
        if self._header is None:
            return
        error = f'<div class="aios-error">{esc(self.last_error)}</div>' if self.last_error else ""
        self._header.value = f'{STYLESHEET}<h3 class="aios-title">{esc(self.title)}</h3>{error}'

    def _apply(self, rendered: Rendered) -> None:
        if self._plot is not None:
            self._plot.show(to_json_plotly(rendered.figure))
        for slot, html in rendered.panels.items():
            panel = self._panels.get(slot)
            if panel is not None and panel.value != html:
                panel.value = html
        self._last = rendered
        self.redraw_count += 1

    def _static_html(self, rendered: Rendered, include_plotlyjs: bool | str) -> str:
        parts = [f'<div class="aios-view">{STYLESHEET}<h3 class="aios-title">{esc(self.title)}</h3>']
        for slot in self.slots:
            if slot == "figure":
                parts.append(figure_html(rendered.figure, include_plotlyjs=include_plotlyjs))
            else:
                parts.append(rendered.panels.get(slot, ""))
        parts.append("</div>")
        return "".join(parts)
