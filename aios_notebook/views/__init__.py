"""Live views of the event store for JupyterLab, and their static forms for reports.

::

    from aios_notebook.views import Dashboard, JobsView, SuccessRateTrend
    Dashboard(client)                 # badge, KPI tiles, a tab per view; live
    JobsView(client.store)            # any view alone
    SuccessRateTrend(store).figure()  # a plain plotly Figure
    DagProgressView(store).snapshot() # HTML (plotly.js inlined), no kernel needed to view it

Why not one ``plotly.graph_objects.FigureWidget`` per chart: measured here, each FigureWidget
takes ~1.8-2.7 s to create in the kernel and carries plotly.js in its own widget state (its
``_esm`` is a 4.96 MB bundle), so seven charts would ship ~35 MB; and evaluating plotly.js's full
bundle alone blocks headless Chromium for ~2 s on this machine (~5 s seen with FigureWidget).
Instead (``figure_widget.py``):

- plotly.js travels once per kernel, in one hidden anywidget (:class:`PlotlyLibrary`) that loads
  it in the browser and shares it through a promise; it is plotly.js's "basic" bundle (scatter,
  bar, pie: all the views draw; 1.2 MB, ~0.45 s to evaluate against ~2 s for the full 4.6 MB),
  shipped in this package at the version plotly.py bundles;
- each view's chart is a :class:`PlotlyFigure` anywidget whose state is only the figure's JSON
  (a few kB), drawn with ``Plotly.react`` (which diffs against what is on screen), and drawn only
  while visible: a hidden tab is drawn when first shown;
- an update is one comm message (``hold_sync`` around the figure and its revision), the role
  ``fig.batch_update()`` plays for FigureWidget, and is skipped when the figure did not change;
  the front end coalesces updates that arrive while it is drawing.

The browser test (tests/test_browser_dashboard.py) prints the time from running the dashboard
cell to every view drawn: 2.0-2.7 s here (tiles ~1 s, first view ~1.1-1.7 s), on two busy cores.

Redraws (``scheduler.py``): the store's change callback only marks a view dirty; one background
thread redraws each dirty view at most ``max_redraws_per_second`` times a second (4 by default),
reading the store's newest snapshot, so ingestion never waits and a view never falls behind. Its
redraws burn at most half a core (``max_busy``, in thread CPU time), so a firehose slows them
down instead of taking a core. The dashboard pauses the views of hidden tabs.
benchmarks/ui_load.py measures all of it in a real kernel at 20,000 events/s.

Static forms: ``view.figure()`` (plain Plotly figures; a dict of them for the dashboard) and
``view.snapshot()`` (HTML). A displayed view carries its static HTML as the fallback, which
nbconvert shows when no widget state was saved; ``display_mode("static")`` (or
``AIOS_VIEWS_DISPLAY=static``) shows only the static form, e.g. for report runs.
"""

from __future__ import annotations

from .agents import AgentsView
from .base import Rendered, View
from .dag import DagProgressView
from .dashboard import ConnectionHeader, Dashboard
from .figure_widget import PlotlyFigure, PlotlyLibrary, plotly_library
from .insights import InsightsFeed
from .jobs import JobsView
from .knowledge import KnowledgeView
from .scheduler import DEFAULT_MAX_RATE, RedrawScheduler, default_scheduler
from .static import display_mode
from .trend import SuccessRateTrend

__all__ = [
    "DEFAULT_MAX_RATE",
    "AgentsView",
    "ConnectionHeader",
    "DagProgressView",
    "Dashboard",
    "InsightsFeed",
    "JobsView",
    "KnowledgeView",
    "PlotlyFigure",
    "PlotlyLibrary",
    "RedrawScheduler",
    "Rendered",
    "SuccessRateTrend",
    "View",
    "default_scheduler",
    "display_mode",
    "plotly_library",
]
