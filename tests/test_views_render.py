"""Each view drawn from a real EventStore fed with known events: figure data and shown values."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest
from views_events import (
    T0,
    agent_error,
    agent_status,
    at,
    dag_progress,
    dag_run,
    feed,
    insight,
    job,
    knowledge,
    metrics,
    new_store,
    step,
)

from aios_notebook.clock import ManualClock
from aios_notebook.exceptions import ConfigurationError
from aios_notebook.store import EventStore
from aios_notebook.views import (
    AgentsView,
    DagProgressView,
    Dashboard,
    InsightsFeed,
    JobsView,
    KnowledgeView,
    RedrawScheduler,
    SuccessRateTrend,
)
from aios_notebook.views.trend import rolling_success_rate

ALL_VIEWS = (JobsView, AgentsView, InsightsFeed, KnowledgeView, SuccessRateTrend, DagProgressView)


@pytest.fixture
def store() -> EventStore:
    return new_store()


@pytest.fixture
def scheduler() -> RedrawScheduler:
    return RedrawScheduler(clock=ManualClock(), start=False)


def _trace(figure: go.Figure, name: str) -> go.BaseTraceType:
    matches = [trace for trace in figure.data if trace.name == name]
    assert matches, f"no trace {name!r} in {[t.name for t in figure.data]}"
    return matches[0]


@pytest.mark.parametrize("view_class", ALL_VIEWS)
def test_an_empty_store_shows_a_waiting_message(store: EventStore, view_class: type) -> None:
    figure = view_class(store).figure()
    assert isinstance(figure, go.Figure)
    assert len(figure.data) == 0
    assert "waiting for" in figure.layout.annotations[0].text


def test_jobs_counts_progress_and_failures(store: EventStore) -> None:
    feed(store, [
        job("job-1", "processing", 10, progress=45, step="text_extraction", started=0, eta=100),
        job("job-2", "completed", 20, type="url", started=5),
        job("job-3", "failed", 30, error="Invalid PDF format", retry_count=2, can_retry=True, started=1),
        job("job-4", "queued", 40, type="audio"),
    ])
    view = JobsView(store)
    rendered = view.render()
    assert rendered.values["by_status"] == {"processing": 1, "completed": 1, "failed": 1, "queued": 1}
    assert rendered.values["by_type"] == {"pdf": 2, "url": 1, "audio": 1}
    assert (rendered.values["active"], rendered.values["failures"]) == (2, 1)
    active = rendered.panels["active"]
    assert "job-1" in active and "job-4" in active and "job-2" not in active
    assert 'data-value="45.0"' in active and "text_extraction" in active
    assert "in 1 min 00 s" in active  # ETA at 100 s, store.now at 40 s
    failures = rendered.panels["failures"]
    assert "Invalid PDF format" in failures and "2 retries" in failures and "can retry" in failures
    figure = view.figure()
    # active jobs on the left axes, finished ones on the right, one stacked bar per type
    processing = _trace(figure, "processing")
    assert processing.xaxis == "x" and list(processing.x) == ["audio", "pdf", "url"]
    assert list(processing.y) == [0, 1, 0]
    completed = _trace(figure, "completed")
    assert completed.xaxis == "x2" and list(completed.y) == [0, 0, 1]
    assert sum(sum(trace.y) for trace in figure.data) == 4
    assert "job type" in figure.layout.xaxis.title.text and figure.layout.yaxis.title.text == "jobs"


def test_job_text_from_the_stream_is_escaped(store: EventStore) -> None:
    feed(store, [job("job-<b>", "failed", 1, error="<script>alert(1)</script>", can_retry=False)])
    html = JobsView(store).render().panels["failures"]
    assert "<script>" not in html and "&lt;script&gt;" in html and "final" in html


def test_agents_cards_and_errors_by_severity(store: EventStore) -> None:
    feed(store, [
        agent_status("content_mind_01", "working", 1, task="Analyzing report.pdf", progress=75,
                     tasks_completed=145, average=2.3, success_rate=98.5),
        agent_status("digest_agent_02", "idle", 2, tasks_completed=12, average=4.0, success_rate=90.0),
        agent_error("digest_agent_02", "warning", "Connection timeout to language model", 3, affected=("job-1", "job-2")),
        agent_error("digest_agent_02", "error", "Model crashed", 4, can_retry=False),
        agent_error("content_mind_01", "warning", "Slow response", 5),
    ])
    view = AgentsView(store)
    rendered = view.render()
    assert rendered.values["by_status"] == {"idle": 1, "working": 1}
    assert rendered.values["errors_by_severity"] == {"warning": 2, "error": 1}
    cards = rendered.panels["cards"]
    assert 'data-agent="content_mind_01"' in cards and "Analyzing report.pdf" in cards
    assert "145" in cards and "2.3 s" in cards and "98.5%" in cards
    errors = rendered.panels["errors"]
    assert errors.index("Slow response") < errors.index("Model crashed")  # newest first
    figure = view.figure()
    done = _trace(figure, "tasks completed")
    assert dict(zip(done.y, done.x, strict=True)) == {"content_mind_01": 145, "digest_agent_02": 12}
    warnings = _trace(figure, "warning")
    assert dict(zip(warnings.y, warnings.x, strict=True)) == {"content_mind_01": 1, "digest_agent_02": 1}


def test_agents_are_listed_by_id_whatever_their_arrival(store: EventStore) -> None:
    feed(store, [agent_status(name, "idle", i) for i, name in enumerate(["zeta_09", "alpha_01", "mid_05"])])
    cards = AgentsView(store).render().panels["cards"]
    assert cards.index("alpha_01") < cards.index("mid_05") < cards.index("zeta_09")


def _insight_store(store: EventStore) -> EventStore:
    feed(store, [
        insight("insight-1", "Volume up", "trend", 0.92, 10, metadata={"metric": "volume", "change": "+45%"}),
        insight("insight-2", "Odd pattern", "pattern", 0.40, 20),
    ])
    store.add_insights([{"title": "Failures cluster", "description": "3 failures in 5 min", "type": "anomaly",
                         "confidence": 0.8, "timestamp": at(30)}], source="rule:failure_burst")
    store.flush()
    return store


def test_insights_newest_first_with_server_and_rule_told_apart(store: EventStore) -> None:
    view = InsightsFeed(_insight_store(store))
    rendered = view.render()
    assert (rendered.values["server"], rendered.values["rules"], rendered.values["shown"]) == (2, 1, 3)
    feed_html = rendered.panels["feed"]
    assert feed_html.index("Failures cluster") < feed_html.index("Odd pattern") < feed_html.index("Volume up")
    assert 'data-source="rule:failure_burst"' in feed_html and "aios-rule" in feed_html
    assert "metric: volume" in feed_html and "confidence 92%" in feed_html
    figure = view.figure()
    assert sorted(trace.name for trace in figure.data) == ["rule insight", "server insight"]
    assert list(_trace(figure, "rule insight").y) == [80.0]
    assert figure.layout.yaxis.title.text == "confidence (%)" and "UTC" in figure.layout.xaxis.title.text


@pytest.mark.parametrize(("filters", "titles"), [
    ({"type": "trend"}, ["Volume up"]),
    ({"source": "server"}, ["Odd pattern", "Volume up"]),
    ({"source": "rules"}, ["Failures cluster"]),
    ({"source": "rule:failure_burst"}, ["Failures cluster"]),
    ({"min_confidence": 0.5}, ["Failures cluster", "Volume up"]),
    ({"type": "pattern", "min_confidence": 0.5}, []),
])
def test_insight_filters(store: EventStore, filters: dict, titles: list[str]) -> None:
    view = InsightsFeed(_insight_store(store))
    view.set_filters(**filters)
    rendered = view.render()
    assert rendered.values["shown"] == len(titles)
    shown = [title for title in ("Failures cluster", "Odd pattern", "Volume up") if title in rendered.panels["feed"]]
    assert shown == titles


def test_insight_controls_drive_the_filters(store: EventStore, scheduler: RedrawScheduler) -> None:
    view = InsightsFeed(_insight_store(store), scheduler=scheduler)
    view.widget  # noqa: B018 - builds the controls
    assert "rule:failure_burst" in view._source_picker.options
    assert set(view._type_picker.options) == {"all", "anomaly", "pattern", "trend"}
    view._type_picker.value = "anomaly"
    scheduler.run_due()
    assert view.values["shown"] == 1 and view.filters["type"] == "anomaly"


def test_bad_confidence_is_refused(store: EventStore) -> None:
    with pytest.raises(ConfigurationError, match="min_confidence"):
        InsightsFeed(store, min_confidence=1.5)


def test_knowledge_counts_and_search(store: EventStore) -> None:
    feed(store, [
        knowledge("kb-1", "Q4 Financial Analysis Report", "analysis", ["finance", "quarterly"], 10),
        knowledge("kb-2", "Vendor Contract Renewal", "document", ["legal", "contracts"], 20),
        knowledge("kb-3", "Budget Review", "analysis", ["finance", "budget"], 30),
    ])
    view = KnowledgeView(store)
    rendered = view.render()
    assert rendered.values["by_type"] == {"analysis": 2, "document": 1}
    assert rendered.values["by_tag"]["finance"] == 2
    assert rendered.values["shown_ids"] == ["kb-3", "kb-2", "kb-1"]
    view.search = "finance"  # a tag
    assert view.render().values["shown_ids"] == ["kb-3", "kb-1"]
    view.search = "VENDOR renewal"  # every word, in the title
    assert view.render().values["shown_ids"] == ["kb-2"]
    view.search = "nothing-like-this"
    assert "no knowledge item matches" in view.render().panels["items"]
    figure = view.figure()
    by_type = _trace(figure, "items by type")
    assert list(by_type.x) == ["analysis", "document"] and list(by_type.y) == [2, 1]
    assert _trace(figure, "items by tag").y[0] == 2


def test_rolling_success_rate_counts_the_window() -> None:
    s = 1_000_000_000
    ok = pd.array([10 * s, 20 * s, 30 * s], dtype="int64").to_numpy()
    failed = pd.array([25 * s], dtype="int64").to_numpy()
    at_times = pd.array([5 * s, 20 * s, 30 * s, 40 * s], dtype="int64").to_numpy()
    rates = rolling_success_rate(ok, failed, at_times, window_s=15)
    assert pd.isna(rates[0])  # nothing in (-10, 5]
    # (25, 40]: the failure at 25 s is out, the success at 30 s in
    assert list(rates[1:]) == [100.0, pytest.approx(200 / 3), 100.0]


def test_success_rate_trend_lines_failures_and_gaps(store: EventStore) -> None:
    events = [metrics(60 * i, 10 * i, 2.5, 100.0 - i, 3, i) for i in range(1, 6)]
    events += [job(f"job-{i}", "completed", 30 * i) for i in range(1, 9)]
    events += [job("job-f1", "failed", 100, error="boom"), job("job-f2", "failed", 200, error="boom")]
    feed(store, events)
    store.add_gap(at(120), at(150), "reconnect")
    view = SuccessRateTrend(store, window="5 min")
    rendered = view.render()
    assert rendered.values["server_points"] == 5
    assert (rendered.values["completed"], rendered.values["failed"], rendered.values["gaps"]) == (8, 2, 1)
    assert rendered.values["last_server_rate"] == 95.0
    # at 300 s: outcomes in (0, 300]: 8 completed (30..240) and 2 failed -> 80 %
    assert rendered.values["last_computed_rate"] == pytest.approx(80.0)
    figure = view.figure()
    assert list(_trace(figure, "server success_rate").y) == [99.0, 98.0, 97.0, 96.0, 95.0]
    failures = _trace(figure, "job failure")
    assert [pd.Timestamp(x) for x in failures.x] == [pd.Timestamp(T0 + pd.Timedelta(s, "s")).tz_localize(None)
                                                     for s in (100, 200)]
    assert figure.layout.shapes[0].type == "rect"
    assert pd.Timestamp(figure.layout.shapes[0].x0) == pd.Timestamp("2026-01-05 00:02:00")
    assert "reconnect" in figure.layout.annotations[0].text
    assert figure.layout.yaxis.title.text == "success rate (%)" and figure.layout.xaxis.title.text == "time (UTC)"
    view.window = "1 h"
    assert view.render().values["window_s"] == 3600
    with pytest.raises(ConfigurationError, match="window"):
        view.window = "a week"


def test_an_open_gap_reaches_now(store: EventStore) -> None:
    feed(store, [metrics(60, 10, 2.5, 99.0, 3, 1), metrics(600, 20, 2.5, 98.0, 3, 2)])
    store.add_gap(at(300), None, "connection lost")
    figure = SuccessRateTrend(store).figure()
    assert pd.Timestamp(figure.layout.shapes[0].x1) == pd.Timestamp("2026-01-05 00:10:00")


def _dag_store(store: EventStore) -> EventStore:
    feed(store, [
        dag_run("run-old", "pdf_processing", "success", 50, started=0),
        dag_progress("run-old", "pdf_processing", 50, completed=2, running=0, failed=0, pending=0),
        step("run-old", "pdf_processing", "upload", "success", 20, start=0, end=20),
        step("run-old", "pdf_processing", "analysis", "success", 50, start=20, end=50),
        dag_run("run-new", "pdf_processing", "running", 100, started=100),
        step("run-new", "pdf_processing", "upload", "success", 110, start=100, end=110),
        step("run-new", "pdf_processing", "text_extraction", "running", 110, start=110),
        dag_progress("run-new", "pdf_processing", 110, completed=1, running=1, failed=0, pending=2),
        # the latest event: store.now is 00:03:00
        metrics(180, 1, 2.0, 100.0, 1, 0),
    ])
    return store


def test_dag_gantt_extends_running_steps_to_now(store: EventStore) -> None:
    view = DagProgressView(_dag_store(store))
    rendered = view.render()
    assert rendered.values["run_id"] == "run-new"  # follows the newest running run
    assert rendered.values["counts"] == {"completed": 1, "running": 1, "failed": 0, "pending": 2}
    bars = {bar["step_id"]: bar for bar in rendered.values["bars"]}
    assert pd.Timestamp(bars["text_extraction"]["end"]) == pd.Timestamp(at(180))  # store.now
    assert pd.Timestamp(bars["upload"]["end"]) == pd.Timestamp(at(110))
    figure = view.figure()
    running = _trace(figure, "running")
    assert list(running.y) == ["text_extraction"] and list(running.x) == [70_000.0]  # ms, 110 s -> 180 s
    assert _trace(figure, "success").marker.color != running.marker.color
    assert "1 of 4 steps done" in rendered.panels["summary"]
    assert "+ 2 steps not started yet" in [a.text for a in figure.layout.annotations]
    assert 'data-bucket="running"' in rendered.panels["runs"]


def test_dag_counts_follow_steps_newer_than_the_runs_progress(store: EventStore) -> None:
    """A step's completion arrives before the dag_run_progress that counts it: the caption and
    the run's bar count it at once, as the Gantt below them draws it."""
    _dag_store(store)
    feed(store, [step("run-new", "pdf_processing", "text_extraction", "success", 190, start=110, end=190)])
    rendered = DagProgressView(store).render()
    assert rendered.values["counts"] == {"completed": 2, "running": 0, "failed": 0, "pending": 2}
    assert "2 of 4 steps done" in rendered.panels["summary"]
    assert {bar["step_id"]: bar["status"] for bar in rendered.values["bars"]}["text_extraction"] == "success"
    # the progress event comes: the run's own counts again (here the same)
    feed(store, [dag_progress("run-new", "pdf_processing", 190, completed=2, running=0, failed=0, pending=2)])
    assert DagProgressView(store).render().values["counts"] == {"completed": 2, "running": 0, "failed": 0,
                                                                "pending": 2}
    # a newer progress event is the run's word again
    feed(store, [dag_progress("run-new", "pdf_processing", 200, completed=3, running=1, failed=0, pending=0)])
    assert DagProgressView(store).render().values["counts"] == {"completed": 3, "running": 1, "failed": 0,
                                                                "pending": 0}


def test_dag_run_picked_by_id_and_unknown_run(store: EventStore, scheduler: RedrawScheduler) -> None:
    view = DagProgressView(_dag_store(store), run_id="run-old", scheduler=scheduler)
    assert view.render().values["counts"]["completed"] == 2
    view.widget  # noqa: B018
    assert "run-old" in [value for _, value in view._picker.options]
    view._picker.value = "run-new"
    scheduler.run_due()
    assert view.values["run_id"] == "run-new"
    view.run_id = "run-missing"
    assert "no events yet" in view.figure().layout.annotations[0].text


def test_dashboard_tiles_show_latest_metrics_and_changes(store: EventStore, scheduler: RedrawScheduler) -> None:
    feed(store, [
        metrics(30, 1240, 2.7, 97.1, 3, 890),
        metrics(60, 1247, 2.8, 97.3, 3, 892, changes={"total_processed": "+5", "success_rate": "+0.2"}),
    ])
    dashboard = Dashboard(store, scheduler=scheduler)
    dashboard.widget  # noqa: B018
    values = dashboard.values
    # the change over the history there is (30 s here), not the server's against its last update
    assert values["total_processed"] == (1247, 7.0)
    assert values["success_rate"] == (97.3, pytest.approx(0.2))
    assert values["knowledge_items"] == (892, 2.0)
    assert values["state"] == "offline"
    tiles = dashboard.header._panels["tiles"].value
    assert 'data-kpi="total_processed"' in tiles and "1,247" in tiles and "+7 in 30 s" in tiles
    assert "97.3%" in tiles and "2.8 min" in tiles
    assert set(dashboard.figure()) == {"Jobs", "Agents", "Success rate", "Insights", "Knowledge", "DAG runs"}
    dashboard.close()
