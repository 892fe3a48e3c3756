"""Views in a notebook run by a real kernel (nbclient), exported with nbconvert: pictures without a kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from chromium import launch
from nbclient import NotebookClient
from nbconvert import HTMLExporter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CELLS = [
    "from aios_notebook.server.workload import generate\n"
    "from aios_notebook.store import EventStore\n"
    "from aios_notebook.views import JobsView, SuccessRateTrend\n"
    "store = EventStore(background=False)\n"
    "store.ingest({'event': name, 'data': data} for _, name, data in generate(seed=7, hours=2))\n"
    "store.flush();",
    "JobsView(store)",
    "SuccessRateTrend(store)",
]


def _run(tmp_path: Path, *, store_widget_state: bool, env: dict[str, str] | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=store_widget_state,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, **(env or {})})  # passed on to the kernel's process
    return nb


def _export(nb: nbformat.NotebookNode) -> str:
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


@pytest.fixture(scope="module")
def live_notebook(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """As a notebook saved from JupyterLab: live widgets with their fallbacks, no widget state."""
    return _run(tmp_path_factory.mktemp("live"), store_widget_state=False, env={"AIOS_VIEWS_DISPLAY": "auto"})


def test_a_kernel_displays_widgets_with_static_fallbacks(live_notebook: nbformat.NotebookNode) -> None:
    outputs = [cell.outputs[0]["data"] for cell in live_notebook.cells[1:]]
    assert all(WIDGET_VIEW in data and "Plotly.newPlot" in data["text/html"] for data in outputs)
    # plotly.js travels in the first fallback of the kernel only
    assert ["plotly.js v" in data["text/html"] for data in outputs] == [True, False]


def test_nbconvert_exports_the_static_pictures(live_notebook: nbformat.NotebookNode, tmp_path: Path) -> None:
    html = _export(live_notebook)
    assert html.count("Plotly.newPlot") == 2 and html.count("plotly.js v") == 1
    assert WIDGET_VIEW not in html  # no widget placeholder that would render nothing offline
    assert "Processing jobs" in html and "success rate (%)" in html
    (tmp_path / "export.html").write_text(html)


def test_static_mode_for_report_runs(tmp_path: Path) -> None:
    # nbclient saves widget state by default, which would make nbconvert pick the widget placeholders
    nb = _run(tmp_path, store_widget_state=True, env={"AIOS_VIEWS_DISPLAY": "static"})
    for cell in nb.cells[1:]:
        assert set(cell.outputs[0]["data"]) == {"text/html", "text/plain"}
    assert "widgets" not in nb.metadata or not nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"][
        "state"]
    assert _export(nb).count("Plotly.newPlot") == 2


@pytest.mark.browser
def test_the_export_draws_offline_in_chromium(live_notebook: nbformat.NotebookNode, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "export.html"
    page_file.write_text(_export(live_notebook))
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                       else route.continue_())  # offline: nothing but the file itself
            page.goto(page_file.as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2",
                                   timeout=60_000)
            assert page.locator(".js-plotly-plot").count() == 2
        finally:
            browser.close()
