"""End to end in a real browser: the reference server, JupyterLab, Debian's chromium (Playwright).

Opens notebooks/01_live_dashboard.ipynb, runs all cells, and checks that the KPI tiles and every
tab's Plotly graph are drawn and that their values change as events arrive. Prints how long the
dashboard took to draw (not an assertion: speed belongs to benchmarks) and saves screenshots
(light and dark theme) under artifacts/browser/.

Needs ``chromium`` on PATH (``apt-get install -y chromium``; Playwright cannot download its own
browser here). Skipped without it, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import CHROMIUM_ARGS, chromium_path

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_live_dashboard.ipynb"
ARTIFACTS = ROOT / "artifacts" / "browser"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
DASHBOARD = f"{PANEL} .aios-dashboard"
# tab title -> the class of the view's root widget (View adds aios-<class name lowercased>)
TABS = {
    "Jobs": "aios-jobsview",
    "Agents": "aios-agentsview",
    "Success rate": "aios-successratetrend",
    "Insights": "aios-insightsfeed",
    "Knowledge": "aios-knowledgeview",
    "DAG runs": "aios-dagprogressview",
}
KERNEL_READY = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.connectionStatus === "connected" && kernel.status === "idle";
}"""
# Timings are taken in the page (performance.now(), checked every animation frame), not by polling
# from Python, whose round trips would be counted too: seconds after Run All for each landmark.
# Once the first view is drawn, the page shows every tab in turn, as soon as the previous one is
# drawn, and notes when each view's graph was drawn ("every view drawn").
TIMELINE = """(classes) => {
    const t = (window.__aiosTimeline = {});
    const panel = '.jp-NotebookPanel:not(.lm-mod-hidden) ';
    const dashboard = panel + '.aios-dashboard';
    const since = () => (performance.now() - window.__aiosT0) / 1000;
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    const drawn = (cls) => {
        const plot = document.querySelector(dashboard + ' .' + cls + ' .aios-plot');
        return plot && plot.clientWidth > 0 && plot.dataset.aiosDrawn === '1' && plot.querySelector('.main-svg');
    };
    const marks = {
        // the connect cell has finished: the dashboard cell starts
        dashboard_cell: () => /\\[\\d+\\]/.test(
            (document.querySelector(panel + '.jp-CodeCell .jp-InputArea-prompt') || {}).textContent || ''),
        tiles: () => /\\d/.test((document.querySelector(dashboard + ' .aios-tile-value') || {}).textContent || ''),
        first_view: () => drawn(classes[0]),
    };
    async function walk() {
        const tabs = [...document.querySelectorAll(dashboard + ' .lm-TabBar-tab')];
        for (let i = 0; i < classes.length; i++) {
            // Lumino picks the tab under the pointer (hit test) on pointerdown; pointerup ends its drag
            const box = tabs[i].getBoundingClientRect();
            const at = { bubbles: true, button: 0, isPrimary: true, clientX: box.x + box.width / 2,
                         clientY: box.y + box.height / 2 };
            for (const type of ['pointerdown', 'pointerup']) tabs[i].dispatchEvent(new PointerEvent(type, at));
            const deadline = performance.now() + 60000;
            while (!drawn(classes[i])) {
                if (performance.now() > deadline) throw new Error('view ' + classes[i] + ' was not drawn');
                await frame();
            }
            t[classes[i]] = since();
        }
    }
    const check = () => {
        for (const [name, test] of Object.entries(marks)) {
            if (!(name in t) && window.__aiosT0 !== undefined && test()) t[name] = since();
        }
        if ('first_view' in t) {
            walk().then(() => { window.__aiosWalk = 'done'; }, (err) => { window.__aiosWalk = String(err); });
        } else {
            requestAnimationFrame(check);
        }
    };
    requestAnimationFrame(check);
}"""
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_path()


@pytest.fixture(scope="module")
def reference_server() -> Iterator[Any]:
    from aios_notebook.server import Simulator

    # an hour already simulated (the client's REST snapshot fills the views at once), then 2 min/s
    sim = Simulator(seed=7, speed=120.0, warmup=3600.0).start_in_thread()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, reference_server: Any) -> Iterator[dict[str, Any]]:
    """JupyterLab on 127.0.0.1 with a token, temporary settings, and a copy of the notebook."""
    # the notebook's aios.connect() finds the reference server here (the kernel inherits it)
    yield from start_lab(tmp_path_factory, {"AIOS_URL": reference_server.url, "AIOS_TOKEN": reference_server.token})


def start_lab(tmp_path_factory: pytest.TempPathFactory, aios_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """JupyterLab as ``lab`` makes it, its kernels seeing ``aios_env`` (AIOS_URL, AIOS_TOKEN)."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)  # JupyterLab autosaves: not into the repo
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                          "checkForUpdates": False}))
    port, token = _free_port(), os.urandom(16).hex()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"), "IPYTHONDIR": str(home / "ipython"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
    }
    for name in ("AIOS_VIEWS_DISPLAY", "AIOS_URL", "AIOS_TOKEN"):
        env.pop(name, None)
    env.update(aios_env)
    log = (home / "lab.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.25)
        yield {"base": base, "token": token, "log": home / "lab.log"}
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def _text(page: Any, selector: str) -> str:
    return page.locator(selector).first.inner_text().strip()


def _wait_drawn(page: Any, view_class: str, timeout_ms: int = 60_000) -> None:
    """Wait until the view's Plotly graph is visible and drawn (its widget sets data-aios-drawn)."""
    page.wait_for_function(
        """(sel) => {
            const plots = [...document.querySelectorAll(sel)];
            return plots.length > 0 && plots.every((p) => p.clientWidth > 0 && p.dataset.aiosDrawn === "1"
                && p.querySelector('.js-plotly-plot .main-svg'));
        }""",
        arg=f"{DASHBOARD} .{view_class} .aios-plot",
        timeout=timeout_ms,
    )


def test_live_dashboard_in_chromium(chromium: str, lab: dict[str, Any], reference_server: Any) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.on("console", lambda msg: problems.append(msg.text) if "[aios-notebook]" in msg.text else None)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK}?reset&token={lab['token']}")
            page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
            # the indicator can say idle before the session has its kernel: Run All would then ask for one
            page.wait_for_function(KERNEL_READY, timeout=90_000)

            page.evaluate(TIMELINE, list(TABS.values()))
            page.evaluate("() => { window.__aiosT0 = performance.now(); "
                          "window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            page.wait_for_function("() => window.__aiosWalk !== undefined", timeout=120_000)
            assert page.evaluate("() => window.__aiosWalk") == "done"
            timeline = page.evaluate("() => window.__aiosTimeline")
            cell = timeline["dashboard_cell"]
            every = max(timeline[view_class] for view_class in TABS.values())
            views = ", ".join(f"{title} {timeline[view_class] - cell:.2f}" for title, view_class in TABS.items())
            print(f"\n[browser] Run All -> dashboard cell starts {cell:.2f} s. From the dashboard cell: KPI tiles "
                  f"{timeline['tiles'] - cell:.2f} s, first view drawn {timeline['first_view'] - cell:.2f} s, "
                  f"every view drawn (tabs shown one after another) {every - cell:.2f} s [{views}]; "
                  f"from Run All {every:.2f} s")
            tab_bar = page.locator(f"{DASHBOARD} .lm-TabBar-tab")
            assert [t.strip() for t in tab_bar.all_inner_texts()] == list(TABS)
            assert re.search(r"\d", _text(page, f"{DASHBOARD} .aios-tile[data-kpi='total_processed'] .aios-tile-value"))
            for title, view_class in TABS.items():
                assert page.locator(f"{DASHBOARD} .{view_class} .aios-plot .js-plotly-plot").count() == 1, title
            for index, title in enumerate(TABS):
                tab_bar.nth(index).click()
                _wait_drawn(page, TABS[title])
                page.locator(DASHBOARD).screenshot(path=str(ARTIFACTS / f"tab_{index}_{title.replace(' ', '_')}.png"))

            # live: values change as events arrive (the server runs at 120 simulated seconds a second)
            tab_bar.nth(2).click()  # success rate: redrawn with every metrics update
            _wait_drawn(page, TABS["Success rate"])
            tile = f"{DASHBOARD} .aios-tile[data-kpi='total_processed'] .aios-tile-value"
            events = f"{DASHBOARD} .aios-badge [data-field='events']"
            plot = f"{DASHBOARD} .{TABS['Success rate']} .aios-plot"
            before = {"tile": _text(page, tile), "events": _text(page, events),
                      "revision": page.locator(plot).get_attribute("data-aios-revision")}
            page.wait_for_function(
                """([tile, events, plot, before]) => {
                    const text = (s) => (document.querySelector(s) || {}).textContent || "";
                    return text(tile).trim() !== before.tile && text(events).trim() !== before.events
                        && document.querySelector(plot).dataset.aiosRevision !== before.revision;
                }""",
                arg=[tile, events, plot, before], timeout=90_000)
            after = {"tile": _text(page, tile), "events": _text(page, events)}
            assert after["tile"] != before["tile"] and after["events"] != before["events"]
            assert _text(page, f"{DASHBOARD} .aios-badge [data-field='state']") == "connected"
            page.locator(DASHBOARD).screenshot(path=str(ARTIFACTS / "dashboard_light.png"))

            page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', "
                          "{theme: 'JupyterLab Dark'})")
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
            page.wait_for_timeout(1500)  # the figure re-reads the theme's colours and redraws
            page.locator(DASHBOARD).screenshot(path=str(ARTIFACTS / "dashboard_dark.png"))
            for index, title in enumerate(TABS):
                tab_bar.nth(index).click()
                _wait_drawn(page, TABS[title])
                page.locator(DASHBOARD).screenshot(
                    path=str(ARTIFACTS / f"tab_{index}_{title.replace(' ', '_')}_dark.png"))

            output_text = page.locator(f"{PANEL} .jp-OutputArea").all_inner_texts()
            assert not any(reference_server.token in text for text in output_text), "the token reached an output"
        except Exception:
            # what the page looked like, for whoever reads the CI log
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            print(f"\n[browser] failed; screenshot in {ARTIFACTS / 'failure.png'}; JupyterLab log tail:\n"
                  + lab["log"].read_text()[-3000:])
            raise
        finally:
            browser.close()
    assert problems == [], problems
