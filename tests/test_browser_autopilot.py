"""The live dashboard on the AIOS v2 backend's own dialect, in a real browser (issue 16).

JupyterLab runs notebooks/01_live_dashboard.ipynb with ``AIOS_URL`` pointing at the autopilot test
server (no token: that server has no auth). DAG runs and email jobs it sends must show in the DAG
and Jobs tabs, and the badge must name the dialect. Needs Debian's chromium (see
test_browser_dashboard.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from autopilot_server import AutopilotServer
from chromium import CHROMIUM_ARGS, chromium_path
from test_browser_dashboard import (
    DASHBOARD,
    KERNEL_READY,
    NOTEBOOK,
    PANEL,
    TABS,
    _text,
    _wait_drawn,
    start_lab,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "browser"


@pytest.fixture(scope="module")
def autopilot() -> Iterator[AutopilotServer]:
    with AutopilotServer(app="main", step_delay=0.2, email_steps=4) as server:
        yield server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, autopilot: AutopilotServer) -> Iterator[dict[str, Any]]:
    yield from start_lab(tmp_path_factory, {"AIOS_URL": autopilot.url})


def test_the_dashboard_shows_autopilot_runs_and_jobs(lab: dict[str, Any], autopilot: AutopilotServer) -> None:
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()

    def traffic() -> None:  # what POST /api/test/create-sample-workflow and /api/process-email do
        while not stop.wait(0.7):
            autopilot.create_sample_workflow()
            autopilot.run_email(outcome="completed", wait=False)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        feeder = threading.Thread(target=traffic, daemon=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK}?reset&token={lab['token']}")
            page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            page.wait_for_function(KERNEL_READY, timeout=90_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(f"{DASHBOARD} .aios-badge [data-field='dialect']", timeout=120_000)
            feeder.start()
            page.wait_for_function(
                "(sel) => (document.querySelector(sel) || {}).textContent === 'autopilot'",
                arg=f"{DASHBOARD} .aios-badge [data-field='dialect']", timeout=60_000)
            assert _text(page, f"{DASHBOARD} .aios-badge [data-field='state']") == "connected"
            tab_bar = page.locator(f"{DASHBOARD} .lm-TabBar-tab")
            titles = list(TABS)
            # DAG runs: the sample workflows, by their workflow name
            tab_bar.nth(titles.index("DAG runs")).click()
            _wait_drawn(page, TABS["DAG runs"])
            page.wait_for_function(
                "(sel) => /[1-9][\\d,]* runs seen/.test((document.querySelector(sel) || {}).textContent || '')",
                arg=f"{DASHBOARD} .{TABS['DAG runs']} .aios-summary", timeout=60_000)
            page.locator(DASHBOARD).screenshot(path=str(ARTIFACTS / "autopilot_dag_runs.png"))
            # Jobs: the email runs, as jobs of type email
            tab_bar.nth(titles.index("Jobs")).click()
            _wait_drawn(page, TABS["Jobs"])
            page.wait_for_function(
                "(sel) => /[1-9][\\d,]* jobs/.test((document.querySelector(sel) || {}).textContent || '')",
                arg=f"{DASHBOARD} .{TABS['Jobs']} .aios-summary", timeout=60_000)
            page.wait_for_function(
                "(sel) => (document.querySelector(sel) || {}).textContent.includes('email')",
                arg=f"{DASHBOARD} .{TABS['Jobs']}", timeout=60_000)
            page.locator(DASHBOARD).screenshot(path=str(ARTIFACTS / "autopilot_jobs.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "autopilot_failure.png"))
            print("\n[browser] failed; JupyterLab log tail:\n" + lab["log"].read_text()[-3000:])
            raise
        finally:
            stop.set()
            browser.close()
