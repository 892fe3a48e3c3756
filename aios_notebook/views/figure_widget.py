"""A Plotly widget that loads plotly.js once per kernel and then receives only figure data.

Two anywidgets:

- :class:`PlotlyLibrary`, one per kernel (:func:`plotly_library`), carries plotly.js (the
  1.2 MB "basic" bundle, see :func:`plotlyjs_source`) in its state. Its front-end half imports it once and hands it over through a promise kept on
  ``globalThis``; it never needs to be displayed (anywidget runs ``initialize`` when the model is
  created, displayed or not).
- :class:`PlotlyFigure`, one per view, carries nothing but the figure as JSON (a few kB), refers
  to the library (so saved widget state keeps both), and draws with ``Plotly.react`` once the
  library promise resolves. A figure is drawn only while its element is visible: a view in a
  hidden tab is drawn when the tab is first shown (a ``ResizeObserver`` notices), so opening a
  dashboard costs one plotly.js load and one draw per visible view.

Updates are one comm message each (``hold_sync``), and the front end coalesces them: while a draw
is running, newer figures only mark the plot dirty, and the next draw takes the newest one.
Text colours follow JupyterLab's theme (CSS variables), re-read when the theme changes.
"""

from __future__ import annotations

import json
import threading
from importlib import resources
from typing import Any

import anywidget
import traitlets
from ipywidgets import widget_serialization

__all__ = ["BASIC_BUNDLE", "PlotlyFigure", "PlotlyLibrary", "plotly_library", "plotlyjs_source"]

# where both halves meet in the browser: {promise, resolve, started}
_SLOT = """
const KEY = "__aios_notebook_plotly__";
function slot() {
  const g = globalThis;
  if (!g[KEY]) {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    g[KEY] = { promise, resolve, started: false };
  }
  return g[KEY];
}
"""

_LIBRARY_ESM = _SLOT + """
export default {
  initialize({ model }) {
    const s = slot();
    if (s.started) return;  // another kernel's library already loaded (or is loading) it
    s.started = true;
    // not awaited: the model is ready at once, the figures wait on the promise
    const url = URL.createObjectURL(new Blob([model.get("source")], { type: "text/javascript" }));
    import(url).then(
      (mod) => s.resolve(mod.default),
      (err) => { s.started = false; console.error("[aios-notebook] loading plotly.js failed", err); },
    ).finally(() => URL.revokeObjectURL(url));
  },
  render({ el }) { el.style.display = "none"; },
};
"""

_FIGURE_ESM = _SLOT + """
function themed(layout, el) {
  const css = getComputedStyle(el);
  const fg = css.getPropertyValue("--jp-ui-font-color1").trim();
  if (!fg) return layout;  // outside JupyterLab: keep the static colours
  const muted = css.getPropertyValue("--jp-ui-font-color2").trim() || fg;
  layout.font = Object.assign({}, layout.font || {}, { color: fg });
  layout.modebar = Object.assign({ bgcolor: "rgba(0,0,0,0)", color: muted, activecolor: fg }, layout.modebar || {});
  return layout;
}

function visible(el) {
  return el.isConnected && el.clientWidth > 0 && el.getClientRects().length > 0;
}

function render({ model, el }) {
  el.classList.add("aios-plot");
  const graph = document.createElement("div");
  graph.className = "aios-plot-graph";
  graph.textContent = "loading plotly.js ...";
  graph.style.cssText = "font-style:italic;opacity:0.7;padding:8px";
  el.appendChild(graph);
  const config = { displaylogo: false, responsive: false,
                   modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d"] };
  const state = { drawing: false, dirty: true, disposed: false, drawn: false };

  async function draw() {
    if (state.drawing || state.disposed) return;
    state.drawing = true;
    try {
      const Plotly = await slot().promise;
      while (state.dirty && !state.disposed && visible(el)) {
        state.dirty = false;
        const figure = JSON.parse(model.get("figure_json") || "{}");
        const layout = themed(figure.layout || {}, el);
        if (!state.drawn) { graph.textContent = ""; graph.style.cssText = ""; }
        await Plotly.react(graph, figure.data || [], layout, config);
        state.drawn = true;
        el.dataset.aiosRevision = String(model.get("revision"));
        el.dataset.aiosDrawn = "1";
      }
    } catch (err) {
      console.error("[aios-notebook] drawing a figure failed", err);
      el.dataset.aiosError = String(err);
    } finally {
      state.drawing = false;
    }
    if (state.dirty && !state.disposed && visible(el)) draw();  // a change came in while drawing
  }

  const onChange = () => { state.dirty = true; draw(); };
  model.on("change:figure_json", onChange);
  // hidden (an inactive tab): draw when shown; shown: follow the width
  const resize = new ResizeObserver(() => {
    if (!visible(el)) return;
    if (state.dirty || !state.drawn) { state.dirty = true; draw(); }
    else slot().promise.then((Plotly) => Plotly.Plots.resize(graph));
  });
  resize.observe(el);
  const theme = new MutationObserver(() => { state.dirty = true; draw(); });
  theme.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "data-jp-theme-name"] });
  draw();
  return () => {
    state.disposed = true;
    model.off("change:figure_json", onChange);
    resize.disconnect();
    theme.disconnect();
    slot().promise.then((Plotly) => Plotly.purge(graph));
  };
}

export default { render };
"""


#: plotly.js's "basic" bundle (scatter, bar, pie: all the views draw), same version as plotly.py's
BASIC_BUNDLE = "plotly-basic.min.js"


def plotlyjs_source() -> str:
    """The plotly.js the live widgets load: the basic bundle shipped here, else plotly.py's full one.

    Measured in headless Chromium on this machine, evaluating the full bundle (4.6 MB) blocks the
    page for ~2 s, the basic one (1.2 MB) for ~0.45 s, and the views need nothing else.
    """
    try:
        return resources.files(__package__).joinpath(BASIC_BUNDLE).read_text(encoding="utf-8")
    except OSError:  # an install without the asset: slower, same pictures
        from plotly.offline import get_plotlyjs

        return get_plotlyjs()


def _library_module() -> str:
    """plotly.js wrapped as an ES module that exports Plotly."""
    # the UMD wrapper fills module.exports when a `module` object exists; the bundle also sets
    # window.Plotly, which is put back as it was when something else had set it already
    return (
        "const module = { exports: {} };\n"
        "const __aiosPreviousPlotly = globalThis.Plotly;\n"
        + plotlyjs_source()
        + "\nconst __aiosPlotly = module.exports;\n"
        "if (__aiosPreviousPlotly !== undefined) { globalThis.Plotly = __aiosPreviousPlotly; }\n"
        "export default __aiosPlotly;\n"
    )


class PlotlyLibrary(anywidget.AnyWidget):
    """plotly.js for the front end, sent once per kernel; use :func:`plotly_library`."""

    _esm = _LIBRARY_ESM
    source = traitlets.Unicode("").tag(sync=True)


_library: PlotlyLibrary | None = None
_library_lock = threading.Lock()


def plotly_library() -> PlotlyLibrary:
    """The kernel's one :class:`PlotlyLibrary` (created on first use, again if it was closed)."""
    global _library
    with _library_lock:
        if _library is None or _library.comm is None:
            _library = PlotlyLibrary(source=_library_module())
        return _library


class PlotlyFigure(anywidget.AnyWidget):
    """A live Plotly figure that receives only data; plotly.js comes from the shared library.

    Attributes:
        figure_json: the figure (``{"data": [...], "layout": {...}}``) as JSON text.
        revision: bumped on every change (the front end writes it to ``data-aios-revision``).
    """

    _esm = _FIGURE_ESM
    figure_json = traitlets.Unicode("{}").tag(sync=True)
    revision = traitlets.Int(0).tag(sync=True)
    library = traitlets.Instance(PlotlyLibrary, allow_none=True).tag(sync=True, **widget_serialization)

    def __init__(self, figure: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("library", plotly_library())
        super().__init__(**kwargs)
        if figure is not None:
            self.show(figure)

    def show(self, figure: dict[str, Any] | str) -> bool:
        """Send a new figure (a JSON-able dict, or its JSON text); False when nothing changed."""
        text = figure if isinstance(figure, str) else json.dumps(figure, allow_nan=False)
        if text == self.figure_json:
            return False
        with self.hold_sync():  # one comm message for both traits
            self.figure_json = text
            self.revision += 1
        return True

    @property
    def figure(self) -> dict[str, Any]:
        """The figure last sent, as a dict."""
        return json.loads(self.figure_json)
