"""The live side of the views, headless: store changes -> throttled redraws -> widget state."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, ClassVar

import pytest
from views_events import agent_status, feed, job, metrics, new_store

from aios_notebook.clock import ManualClock
from aios_notebook.store import EventStore
from aios_notebook.views import (
    AgentsView,
    Dashboard,
    JobsView,
    PlotlyFigure,
    RedrawScheduler,
    Rendered,
    View,
    display_mode,
    plotly_library,
)
from aios_notebook.views import static as static_module
from aios_notebook.views.frames import Frames

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def store() -> EventStore:
    return new_store()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scheduler(clock: ManualClock) -> RedrawScheduler:
    return RedrawScheduler(clock=clock, start=False)


@pytest.fixture
def fresh_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a new kernel: the next text/html fallback carries plotly.js; display mode from env."""
    monkeypatch.setattr(static_module, "_fallback_with_plotlyjs", False)
    monkeypatch.setattr(static_module, "_mode", None)
    monkeypatch.delenv("AIOS_VIEWS_DISPLAY", raising=False)


def test_store_changes_reach_the_widget_through_the_scheduler(store: EventStore, scheduler: RedrawScheduler,
                                                               clock: ManualClock) -> None:
    view = JobsView(store, scheduler=scheduler)
    view.widget  # noqa: B018 - subscribes and draws the empty state
    first = view._plot.revision
    assert "waiting for job events" in view._plot.figure_json
    feed(store, [job("job-1", "processing", 1, progress=10, step="upload")])
    assert view._plot.revision == first  # marked dirty only: nothing drawn on the ingesting side
    scheduler.run_due()
    assert view._plot.revision == first + 1
    figure = view._plot.figure
    assert sum(sum(trace["y"]) for trace in figure["data"]) == 1
    assert "job-1" in view._panels["active"].value


def test_a_burst_of_batches_is_one_redraw_per_interval(store: EventStore, scheduler: RedrawScheduler,
                                                        clock: ManualClock) -> None:
    view = JobsView(store, scheduler=scheduler, max_redraws_per_second=4)
    view.widget  # noqa: B018
    scheduler.run_due()
    drawn = view.redraw_count
    for i in range(50):  # 50 change batches within 0.2 s
        feed(store, [job(f"job-{i}", "queued", i)])
        clock.advance(0.004)
        scheduler.run_due()
    assert view.redraw_count == drawn + 1  # the first batch drew at once, the rest wait
    clock.advance(0.25)
    scheduler.run_due()
    assert view.redraw_count == drawn + 2
    assert view.values["total"] == 50  # the trailing redraw shows everything


def test_unchanged_data_sends_nothing(store: EventStore, scheduler: RedrawScheduler) -> None:
    feed(store, [agent_status("a1", "idle", 1)])
    view = AgentsView(store, scheduler=scheduler)
    view.widget  # noqa: B018
    revision, panels = view._plot.revision, {k: w.value for k, w in view._panels.items()}
    sent: list[Any] = []
    view._plot.observe(sent.append, names="figure_json")
    view.refresh()
    assert view._plot.revision == revision and sent == []
    assert {k: w.value for k, w in view._panels.items()} == panels


def test_plotly_js_is_shared_and_figures_carry_only_data(store: EventStore, scheduler: RedrawScheduler) -> None:
    first, second = JobsView(store, scheduler=scheduler), AgentsView(store, scheduler=scheduler)
    first.widget, second.widget  # noqa: B018
    assert first._plot.library is second._plot.library is plotly_library()
    for view in (first, second):
        state = json.dumps(view._plot.get_state(), default=str)
        assert len(state) < 50_000 and "plotly.js v" not in state
    source = plotly_library().source
    assert "plotly.js (basic - minified) v" in source and source.rstrip().endswith("export default __aiosPlotly;")
    assert 1_000_000 < len(source) < 2_000_000  # the basic bundle, not the 4.6 MB full one


def test_a_closed_library_is_made_again() -> None:
    library = plotly_library()
    library.close()
    again = plotly_library()
    assert again is not library and again.comm is not None
    assert PlotlyFigure().library is again


def test_figure_widget_skips_identical_figures() -> None:
    plot = PlotlyFigure({"data": [], "layout": {"height": 100}})
    assert plot.revision == 1
    assert plot.show({"data": [], "layout": {"height": 100}}) is False
    assert plot.show({"data": [], "layout": {"height": 120}}) is True
    assert plot.revision == 2 and plot.figure["layout"]["height"] == 120


def test_display_shows_the_widget_with_a_static_fallback(store: EventStore, scheduler: RedrawScheduler,
                                                         fresh_fallbacks: None) -> None:
    feed(store, [job("job-1", "processing", 1, progress=50)])
    display_mode("live")
    first = JobsView(store, scheduler=scheduler)._repr_mimebundle_()
    assert first[WIDGET_VIEW]["model_id"]
    assert "Plotly.newPlot" in first["text/html"] and "plotly.js v" in first["text/html"]
    second = AgentsView(store, scheduler=scheduler)._repr_mimebundle_()
    assert "Plotly.newPlot" in second["text/html"] and "plotly.js v" not in second["text/html"]  # once per kernel


def test_static_mode_displays_html_only(store: EventStore, scheduler: RedrawScheduler, fresh_fallbacks: None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_VIEWS_DISPLAY", "static")
    view = JobsView(store, scheduler=scheduler)
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"} and "waiting for job events" in bundle["text/html"]
    assert view._widget is None  # no widget, no subscription
    monkeypatch.setenv("AIOS_VIEWS_DISPLAY", "sideways")
    with pytest.raises(ValueError, match="AIOS_VIEWS_DISPLAY"):
        display_mode()


def test_outside_a_kernel_auto_mode_is_static(store: EventStore, fresh_fallbacks: None) -> None:
    assert display_mode() == "auto"
    bundle = Dashboard(store)._repr_mimebundle_()
    assert WIDGET_VIEW not in bundle and bundle["text/html"].count("plotly.js v") == 1


def test_snapshot_is_self_contained_html(store: EventStore) -> None:
    feed(store, [metrics(30, 5, 2.0, 99.0, 2, 1), job("job-1", "completed", 20)])
    page = Dashboard(store).snapshot(full_html=True)
    assert page.startswith("<!DOCTYPE html>") and page.count("plotly.js v") == 1
    assert page.count("Plotly.newPlot") == 6 and 'data-kpi="success_rate"' in page
    fragment = JobsView(store).snapshot(include_plotlyjs=False)
    assert "plotly.js v" not in fragment and "Plotly.newPlot" in fragment and "Processing jobs" in fragment


class Broken(View):
    """A view whose drawing fails until told otherwise."""

    title = "Broken"
    tables: ClassVar[tuple[str, ...]] = ("jobs",)
    fail = True

    def _render(self, frames: Frames) -> Rendered:
        if self.fail:
            raise ValueError("cannot draw this")
        return Rendered({"data": [], "layout": {}}, {"summary": f"{len(frames['jobs'])} jobs"})


def test_a_failing_render_is_shown_in_the_view_and_recovers(store: EventStore, scheduler: RedrawScheduler,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    view = Broken(store, scheduler=scheduler)
    view.widget  # noqa: B018 - must not raise
    assert "ValueError: cannot draw this" in view._header.value and view.last_error
    view.fail = False
    feed(store, [job("job-1", "queued", 1)])
    scheduler.run_due()
    assert view.last_error is None and "cannot draw" not in view._header.value
    assert view._panels["summary"].value == "1 jobs"


def test_hidden_tabs_wait_until_shown(store: EventStore, scheduler: RedrawScheduler, clock: ManualClock) -> None:
    dashboard = Dashboard(store, scheduler=scheduler)
    dashboard.widget  # noqa: B018 - the Jobs tab is selected
    jobs, agents = dashboard.views["Jobs"], dashboard.views["Agents"]
    drawn = {name: view.redraw_count for name, view in dashboard.views.items()}
    feed(store, [job("job-1", "processing", 1), agent_status("a1", "working", 1)])
    clock.advance(1)
    scheduler.run_due()
    assert jobs.redraw_count == drawn["Jobs"] + 1 and agents.redraw_count == drawn["Agents"]
    dashboard._tabs.selected_index = 1
    scheduler.run_due()
    assert agents.redraw_count == drawn["Agents"] + 1 and agents.values["agents"] == 1
    dashboard.close()


def test_close_stops_the_redraws(store: EventStore, scheduler: RedrawScheduler, clock: ManualClock) -> None:
    view = JobsView(store, scheduler=scheduler)
    view.widget  # noqa: B018
    drawn = view.redraw_count
    view.close()
    feed(store, [job("job-1", "queued", 1)])
    clock.advance(1)
    assert scheduler.run_due() is None and view.redraw_count == drawn


@pytest.mark.timeout(60)
def test_ingesting_from_another_thread_with_the_real_scheduler() -> None:
    store = EventStore()  # its own notifier thread, as under a client
    view = JobsView(store)  # the shared background scheduler
    view.widget  # noqa: B018
    try:
        def ingest() -> None:
            for i in range(200):
                store.ingest([job(f"job-{i}", "queued", i)])

        writer = threading.Thread(target=ingest)
        writer.start()
        writer.join()
        deadline = time.monotonic() + 30
        while view.values.get("total") != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.values["total"] == 200
        assert view.values["by_status"] == {"queued": 200}
        queued = [trace for trace in view._plot.figure["data"] if trace["name"] == "queued"]
        assert queued[0]["y"] == [200]  # the widget holds the newest data
    finally:
        view.close()
        store.close()
