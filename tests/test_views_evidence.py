"""The evidence figure of a rule insight: in the InsightsFeed's panels, its static snapshot (drawn in
headless Chromium) and a report rendered through a real kernel."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from chromium import launch
from nbformat.v4 import new_code_cell, new_notebook
from river import anomaly

from aios_notebook.rules import Insight, RuleEngine, from_river, library, rule, series
from aios_notebook.server.simulate import write_scenario_recording
from aios_notebook.store import EventStore
from aios_notebook.views import InsightsFeed
from aios_notebook.views.insights import evidence_figure, evidence_svg

pytestmark = pytest.mark.timeout(240)

SHAPE = {"first": "90m", "length": "30m", "period": "1h"}
PDF = series.job_counts("pdf", every="5m")


@rule(every="5m", window="2h", cooldown="30m", detects=("volume_spike",))
def pdf_surge(job_events: pd.DataFrame, ctx: Any) -> Insight | None:
    value = PDF.value(ctx)
    if value >= 12:
        return Insight("pdf surge", f"{value:.0f} pdf arrivals", key="pdf",
                       evidence=series.evidence(PDF, ctx, baseline=5.0, threshold=12))
    return None


def river_rule() -> Any:
    return from_river(anomaly.GaussianScorer(window_size=36, grace_period=6), series=PDF, threshold=0.99, grace=6,
                      detects=("volume_spike",), name="river_pdf")


@functools.cache
def recording(folder: str) -> Path:
    path = Path(folder) / "spike.jsonl"
    write_scenario_recording(path, scenario="volume_spike", hours=3.5, seed=4, scenario_params=SHAPE)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> EventStore:
    loaded = EventStore.load(recording(str(tmp_path_factory.mktemp("evidence"))))
    engine = RuleEngine(loaded, [pdf_surge, river_rule(), library.volume_change()], enforce_timeouts=False)
    engine.schedule_from(loaded.job_events["timestamp"].min())
    engine.run_due(loaded.now)
    assert set(engine.firings["rule"]) >= {"pdf_surge", "river_pdf"}
    return loaded


def test_a_rule_insight_opens_a_figure_of_its_series_baseline_and_threshold(store: EventStore) -> None:
    feed = InsightsFeed(store, source="rules", max_items=50)
    html = feed.render().panels["feed"]
    insights = store.insights[store.insights["source"].astype("string").str.startswith("rule:")]
    with_series = [e for e in insights["evidence"] if isinstance(e, dict) and "series_value" in e]
    figures = re.findall(r'<svg class="aios-evidence-figure".*?</svg>', html, re.S)
    assert len(figures) == min(50, len(with_series)) > 0
    assert html.count("<details class=\"aios-evidence\" open>") == 1  # the newest one is open
    # a built-in puts the series it judged in its evidence too, and gets a figure
    builtin = insights[insights["rule"] == "volume_change"]
    assert len(builtin) and all("job_counts[pdf] (jobs per 10m)" in evidence_svg(e) for e in builtin["evidence"])

    hand = next(e for e in insights.sort_values("timestamp")["evidence"] if "threshold" in e)
    svg = evidence_svg(hand)
    points = re.findall(r'<polyline[^>]*points="([^"]+)"', svg)
    assert sum(len(p.split()) for p in points) == sum(v is not None for v in hand["series_value"])
    assert "baseline 5" in svg and "threshold 12" in svg and "job_counts[pdf] (jobs)" in svg

    model = next(e for e in insights["evidence"] if "score_threshold" in e)
    svg = evidence_svg(model)
    assert "anomaly score" in svg and "threshold 0.99" in svg
    figure = evidence_figure(model)
    names = [trace["name"] for trace in figure["data"]]
    assert names[0] == "job_counts[pdf]" and "anomaly score" in names and "score threshold" in names
    assert figure["data"][0]["y"][-1] == model["series_value"][-1]
    assert InsightsFeed(store).evidence_figure().data[0].name == "job_counts[pdf]"


def test_the_snapshot_draws_the_evidence_in_headless_chromium(store: EventStore, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "feed.html"
    page_file.write_text(InsightsFeed(store, source="rules").snapshot(full_html=True), encoding="utf-8")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.resolve().as_uri())
            opened = page.locator("details.aios-evidence[open] svg.aios-evidence-figure")
            assert opened.count() == 1
            box = opened.bounding_box()
            assert box is not None and box["width"] >= 300 and box["height"] >= 80
            line = opened.locator("polyline").first.bounding_box()
            assert line is not None and line["width"] > 100
            details = page.locator("details.aios-evidence")
            assert details.count() >= 2
            second = details.nth(1)  # closed until its summary is clicked
            assert not second.locator("svg.aios-evidence-figure").is_visible()
            second.locator("summary").click()
            assert second.locator("svg.aios-evidence-figure").is_visible()
        finally:
            browser.close()
    assert errors == []


def report_html(folder: Path, parameters: str, code: str, timeout: float = 200) -> str:
    """A notebook of a parameters cell and one cell of ``code``, rendered by ``aios-notebook report``
    through a real kernel: the report's HTML."""
    notebook = folder / "evidence.ipynb"
    nb = new_notebook(cells=[new_code_cell(parameters, metadata={"tags": ["parameters"]}), new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, notebook)
    output = folder / "report.html"
    result = subprocess.run([sys.executable, "-m", "aios_notebook", "report", str(notebook), "-o", str(output),
                             "--no-progress"], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return output.read_text(encoding="utf-8")


def test_a_report_shows_the_evidence_figure(tmp_path: Path) -> None:
    path = recording(str(tmp_path))
    html = report_html(tmp_path, f"source = {str(path)!r}", (
        "from river import anomaly\n"
        "from aios_notebook.rules import RuleEngine, from_river, series\n"
        "from aios_notebook.store import EventStore\n"
        "from aios_notebook.views import InsightsFeed\n"
        "store = EventStore.load(source)\n"
        "model = anomaly.GaussianScorer(window_size=36, grace_period=6)\n"
        "engine = RuleEngine(store, [from_river(model, series=series.job_counts('pdf'), threshold=0.99, grace=6)],\n"
        "                    enforce_timeouts=False)\n"
        "engine.schedule_from(store.job_events['timestamp'].min())\n"
        "engine.run_due(store.now)\n"
        "InsightsFeed(store, source='rules')"
    ))
    assert html.count('class="aios-evidence-figure"') >= 1
    assert re.search(r'<details class="aios-evidence" open(="")?>\s*<summary>evidence</summary>\s*<svg [^>]*'
                     r'class="aios-evidence-figure"', html)
