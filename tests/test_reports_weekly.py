"""The weekly report rendered from a real recording: every figure static, no token, readable offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chromium import launch

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import ReportError
from aios_notebook.reports import render_report
from aios_notebook.server import Simulator

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_weekly_report.ipynb"
FIGURES = 4  # success-rate trend, top failures, agent health, insights by type

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A day of the failure_burst scenario recorded, then rendered; returns (report, server token)."""
    folder = tmp_path_factory.mktemp("weekly")
    recording = folder / "day.jsonl.gz"
    sim = Simulator(speed=7200, heartbeat=1.0, seed=21, scenario="failure_burst", warmup=0).start_in_thread()
    try:
        client = AIOSClient(sim.url, sim.token, snapshots=False)
        recorder = client.record(recording)
        client.start()
        try:
            client.wait_for(lambda store: store.jobs["status"].isin(["completed", "failed"]).sum() >= 120
                            and len(store.insights) >= 1, timeout=120)
        finally:
            client.stop()
            recorder.stop()
    finally:
        sim.stop()
    output = folder / "report.html"
    render_report(NOTEBOOK, output, {"source": str(recording), "period": "all"}, progress=False,
                  secrets=[sim.token])
    return output, sim.token


def test_the_report_holds_every_section_and_figure(report: tuple[Path, str]) -> None:
    html = report[0].read_text()
    for heading in ("KPIs", "Success-rate trend", "Top failures", "Agent health", "Insights of the period"):
        assert f">{heading}<" in html
    assert 'class="aios-kpis"' in html and "Success rate" in html
    assert html.count('class="plotly-graph-div"') == FIGURES
    assert "application/vnd.plotly.v1+json" not in html
    assert "the recording" in html and "day.jsonl.gz" in html


def test_the_report_holds_no_token_and_fetches_nothing(report: tuple[Path, str]) -> None:
    html = report[0].read_text()
    assert report[1] not in html
    assert not re.findall(r"""<(?:script|link|img|iframe)[^>]+(?:src|href)=["']?(?:https?:)?//""", html, re.I)


@pytest.mark.browser
def test_every_figure_draws_offline_in_chromium(report: tuple[Path, str]) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(report[0].resolve().as_uri())
            page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {FIGURES}",
                                   timeout=60_000)
            drawn = page.locator(".js-plotly-plot").count()
            titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
        finally:
            browser.close()
    assert drawn == FIGURES
    assert any(t.startswith("Success rate per") for t in titles)
    assert errors == []
    assert requests == [report[0].resolve().as_uri()]


def test_a_damaged_recording_is_reported_in_the_report(report: tuple[Path, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("this is not a recording\n")
    with pytest.raises(ReportError) as info:
        render_report(NOTEBOOK, tmp_path / "r.html", {"source": str(bad)}, progress=False)
    assert "cell 3" in str(info.value) and "nothing to report" in str(info.value)
    assert "not an aios recording" in Path(info.value.partial).read_text()  # the warning is shown
