"""The nine built-ins put the series they judged in their insights' evidence (the last point the value
judged, the baseline, the threshold they fired at), and the InsightsFeed draws it: in its panel, in
its static snapshot (drawn in headless Chromium) and in a report rendered through a real kernel."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromium import launch
from test_views_evidence import report_html

from aios_notebook.rules import RuleEngine, library
from aios_notebook.rules.aggregates import binomial_sf, median, poisson_sf
from aios_notebook.server.simulate import write_scenario_recording
from aios_notebook.store import EventStore
from aios_notebook.views import InsightsFeed
from aios_notebook.views.insights import evidence_figure

pytestmark = pytest.mark.timeout(300)

RULES = {r.name: r for r in library.builtins()}
HOURS = 4.0  # each scenario's first anomaly window opens 3 h after the start
SEED = 5


def judged(name: str, evidence: dict[str, Any]) -> float:
    """The value each built-in judged, from the numbers it reported before it had a series."""
    return {
        "volume_change": lambda e: e["count"],
        "success_rate_drop": lambda e: 1 - e["failed"] / e["outcomes"],
        "failure_burst": lambda e: e["failures"],
        "slow_processing": lambda e: e["median_ratio"],
        "stuck_jobs": lambda e: e["stuck_jobs"],
        "agent_error_burst": lambda e: e["errors"],
        "agent_offline": lambda e: 1.0,
        "knowledge_stall": lambda e: 0.0,
        "dag_step_failures": lambda e: e["failing_steps"] / e["steps"],
    }[name](evidence)


# fires at or above its threshold, or (a rate that fell, a count that stayed) at or below it
BELOW = {"success_rate_drop", "knowledge_stall"}


@functools.cache
def recording(folder: str, name: str) -> Path:
    path = Path(folder) / f"{name}.jsonl"
    write_scenario_recording(path, scenario=RULES[name].detects[0], hours=HOURS, seed=SEED)
    return path


def run(path: Path, name: str) -> tuple[EventStore, Any]:
    store = EventStore.load(path)
    engine = RuleEngine(store, [RULES[name]], enforce_timeouts=False)
    engine.schedule_from(store.job_events["timestamp"].min())  # the recording's start
    engine.run_due(store.now)
    return store, engine


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("builtins"))


@pytest.fixture(scope="module")
def stores(folder: str) -> dict[str, tuple[EventStore, Any]]:
    return {name: run(recording(folder, name), name) for name in RULES}


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_built_in_insight_carries_the_series_it_judged(stores: dict[str, Any], name: str) -> None:
    store, engine = stores[name]
    assert engine.errors.empty and len(engine.firings), name
    for evidence in engine.firings["evidence"]:
        values = evidence["series_value"]
        assert len(values) == len(evidence["series_time"]) >= 2
        assert evidence["series_time"][-1] == evidence["window_end"]
        assert all(evidence["window_start"] < t for t in evidence["series_time"])
        assert math.isclose(values[-1], judged(name, evidence), rel_tol=1e-3, abs_tol=1e-6), (name, evidence)
        threshold = evidence["threshold"]
        assert values[-1] <= threshold if name in BELOW else values[-1] >= threshold, (name, evidence)
        assert evidence["series"] and evidence["unit"]
    # every firing's figure is in the feed's panel, its series named, its threshold drawn
    feed = InsightsFeed(store, source="rules", max_items=100)
    html = feed.render().panels["feed"]
    figures = re.findall(r'<svg class="aios-evidence-figure".*?</svg>', html, re.S)
    assert len(figures) == len(engine.firings)
    labels = {re.search(r'aria-label="evidence: ([^"(]+) \(', f).group(1) for f in figures}  # type: ignore[union-attr]
    assert labels == {e["series"] for e in engine.firings["evidence"]}
    newest = engine.firings["evidence"].iloc[-1]
    drawn = [f for f in figures if f"threshold {newest['threshold']:.3g}<" in f and newest["series"] in f]
    assert drawn and ("baseline" not in newest or f"baseline {newest['baseline']:.3g}<" in drawn[0])
    figure = evidence_figure(newest)
    assert figure["data"][0]["name"] == newest["series"]
    assert [trace["name"] for trace in figure["data"][1:]] == [k for k in ("baseline", "threshold") if k in newest]


def test_the_thresholds_are_where_the_tests_start_to_fire(stores: dict[str, Any]) -> None:
    """The drawn threshold of a count rule is the smallest count its test fires at."""
    burst = RULES["failure_burst"].params
    for evidence in stores["failure_burst"][1].firings["evidence"]:
        k, expected, mean = int(evidence["threshold"]), evidence["expected"], max(evidence["expected"], 0.25)

        def fires(n: int, expected: float = expected, mean: float = mean) -> bool:
            return n >= burst["min_failures"] and n >= burst["factor"] * expected and poisson_sf(n, mean) < burst["alpha"]

        assert fires(k) and not fires(k - 1), evidence
    volume = RULES["volume_change"].params
    share = 10 / (10 + 120)  # the default period (10m) against the baseline (2h)
    for evidence in stores["volume_change"][1].firings["evidence"]:
        k, expected = int(evidence["threshold"]), evidence["baseline"]
        base = round(expected / (10 / 120))

        def rises(n: int, expected: float = expected, base: int = base) -> bool:
            return (n >= volume["min_count"] and n >= volume["factor"] * expected
                    and binomial_sf(n, n + base, share) < volume["alpha"])

        assert rises(k) and not rises(k - 1), evidence


def test_the_snapshots_draw_every_built_ins_evidence_in_headless_chromium(stores: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            for name, (store, engine) in sorted(stores.items()):
                page_file = tmp_path / f"{name}.html"
                page_file.write_text(InsightsFeed(store, source="rules").snapshot(full_html=True), encoding="utf-8")
                page.goto(page_file.resolve().as_uri())
                opened = page.locator("details.aios-evidence[open] svg.aios-evidence-figure")
                assert opened.count() == 1, name
                assert opened.get_attribute("aria-label").startswith(  # type: ignore[union-attr]
                    f"evidence: {engine.firings['evidence'].iloc[-1]['series']}")
                box = opened.bounding_box()
                assert box is not None and box["width"] >= 300 and box["height"] >= 80, name
                line = opened.locator("polyline").first.bounding_box()
                assert line is not None and line["width"] > 50, name
                assert opened.locator("line").count() >= 1, name  # the threshold (and baseline)
        finally:
            browser.close()
    assert errors == []


def test_a_report_shows_every_built_ins_evidence(stores: dict[str, Any], folder: str, tmp_path: Path) -> None:
    paths = {name: str(recording(folder, name)) for name in RULES}
    html = report_html(tmp_path, f"paths = {paths!r}", (
        "from IPython.display import display\n"
        "from aios_notebook.rules import RuleEngine, library\n"
        "from aios_notebook.store import EventStore\n"
        "from aios_notebook.views import InsightsFeed\n"
        "for rule in library.builtins():\n"
        "    store = EventStore.load(paths[rule.name])\n"
        "    engine = RuleEngine(store, [rule], enforce_timeouts=False)\n"
        "    engine.schedule_from(store.job_events['timestamp'].min())\n"
        "    engine.run_due(store.now)\n"
        "    display(InsightsFeed(store, source='rules'))"
    ), timeout=280)
    # the report's HTML may order a tag's attributes anew
    tags = re.findall(r'<details class="aios-evidence" open(?:="")?>\s*<summary>evidence</summary>\s*(<svg [^>]*>)', html)
    assert len(tags) == len(RULES) and all('class="aios-evidence-figure"' in tag for tag in tags)  # one per feed
    shown = {re.search(r'aria-label="evidence: ([^"(]+) \(', tag).group(1) for tag in tags}  # type: ignore[union-attr]
    assert shown == {engine.firings["evidence"].iloc[-1]["series"] for _, engine in stores.values()}


def test_median_is_numpy_s_median_exactly() -> None:
    rng = np.random.default_rng(29)
    for n in (0, 1, 2, 3, 4, 7, 10, 51, 400):
        for _ in range(50):
            values = rng.lognormal(size=n) * rng.choice([1e-6, 1.0, 1e9])
            if n and rng.random() < 0.2:
                values[rng.integers(n)] = np.nan
            expected = float(np.median(values)) if n else math.nan
            got = median(values)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), values
    assert median([3, 1, 2, 10]) == 2.5 and median(np.array([4], np.int64)) == 4.0
    assert median([1.0, np.inf, 2.0]) == 2.0 and math.isnan(median([]))
    with np.errstate(invalid="ignore"):  # inf - inf, as numpy's own median warns
        assert math.isnan(median([-np.inf, np.inf]))
