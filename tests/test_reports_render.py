"""Reports: real kernels execute real notebooks; the HTML is opened in headless Chromium offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from chromium import launch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from aios_notebook.exceptions import ConfigurationError, ReportError
from aios_notebook.reports import find_secrets, notebook_parameters, parse_parameters, render_report

ENV_TOKEN = "env-token-5f3a9c1e77"  # AIOS_TOKEN of the process that renders
KERNEL_TOKEN = "kernel-side-secret-0b8d2f"  # known only inside the kernel


def _notebook(path: Path, *extra_cells: str) -> Path:
    cells = [
        new_markdown_cell("# Test report"),
        new_code_cell('title = "default title"\npoints = 3', metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import os\n"
            f'os.environ["MY_SERVICE_TOKEN"] = "{KERNEL_TOKEN}"\n'
            'print("env token:", os.environ.get("AIOS_TOKEN"))\n'
            'print("kernel token:", os.environ["MY_SERVICE_TOKEN"])\n'
            'print("marker-before-the-figures", title)'
        ),
        new_code_cell(
            "import plotly.graph_objects as go\n"
            "fig = go.Figure(go.Scatter(y=list(range(points)), name='line'))\n"
            "fig.update_layout(title=title)\n"
            "fig.show()"
        ),
        new_code_cell("import plotly.express as px\npx.bar(x=['a', 'b'], y=[1, points])"),
        *(new_code_cell(source) for source in extra_cells),
    ]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of a small notebook, rendered once by the command line (a real kernel)."""
    folder = tmp_path_factory.mktemp("report")
    notebook = _notebook(folder / "small.ipynb")
    output = folder / "out" / "report.html"
    env = {**os.environ, "AIOS_TOKEN": ENV_TOKEN}
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "report", str(notebook), "-o", str(output),
         "-p", "points=7", "-p", "title=Weekly numbers"],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stderr
    return output, result.stderr


def test_the_command_shows_a_progress_bar_and_writes_the_report(rendered: tuple[Path, str]) -> None:
    output, stderr = rendered
    assert output.exists()
    assert re.search(r"Executing: +100%\|", stderr), stderr
    assert f"wrote {output}" in stderr


def test_parameters_reach_the_notebook(rendered: tuple[Path, str]) -> None:
    html = rendered[0].read_text()
    assert "marker-before-the-figures Weekly numbers" in html
    assert "default title" not in html.split("<body", 1)[1]  # the injected value won, code hidden


def test_no_token_is_in_the_report(rendered: tuple[Path, str]) -> None:
    html = rendered[0].read_text()
    assert ENV_TOKEN not in html
    assert KERNEL_TOKEN not in html
    assert "env token: ***" in html and "kernel token: ***" in html


def test_the_report_needs_no_network(rendered: tuple[Path, str]) -> None:
    html = rendered[0].read_text()
    # nothing is loaded from elsewhere: no script, stylesheet or image with a remote address
    assert not re.findall(r"""<(?:script|link|img|iframe)[^>]+(?:src|href)=["']?(?:https?:)?//""", html, re.I)
    assert "application/vnd.plotly.v1+json" not in html
    assert html.count('class="plotly-graph-div"') == 2


@pytest.mark.browser
def test_every_figure_draws_in_headless_chromium_offline(rendered: tuple[Path, str]) -> None:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(rendered[0].resolve().as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2",
                                   timeout=60_000)
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == 2
            assert page.locator(".js-plotly-plot .scatterlayer .trace path.js-line").count() == 1
            assert page.locator(".js-plotly-plot .barlayer .point").count() == 2
            assert page.locator(".js-plotly-plot .gtitle").first.text_content() == "Weekly numbers"
        finally:
            browser.close()
    assert errors == []
    assert requests == [rendered[0].resolve().as_uri()]


def test_a_failing_cell_is_named_and_the_partial_report_kept(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "failing.ipynb", "values = {}\nvalues['missing']", "print('never runs')")
    output = tmp_path / "report.html"
    with pytest.raises(ReportError) as info:
        render_report(notebook, output, {"points": 2}, progress=False)
    error = info.value
    assert error.cell == 6  # the sixth cell of the notebook as the user sees it
    message = str(error)
    assert "cell 6" in message and "KeyError" in message and "values = {}" in message
    assert not output.exists()
    partial = Path(error.partial)
    assert partial == tmp_path / "report.partial.html"
    html = partial.read_text()
    assert "marker-before-the-figures" in html  # what ran before the failure
    assert "KeyError" in html  # and the error itself
    assert "never runs" not in html.split("<body", 1)[1]
    assert ENV_TOKEN not in message


def test_parameters_are_read_like_papermill_does() -> None:
    assert parse_parameters(["n=7", "x=1.5", "flag=true", "other=False", "none=null", "s=7d",
                             "path=rec*.jsonl", "quoted='12'", "items=[1, 2]", "empty="]) == {
        "n": 7, "x": 1.5, "flag": True, "other": False, "none": None, "s": "7d",
        "path": "rec*.jsonl", "quoted": "12", "items": [1, 2], "empty": "",
    }
    with pytest.raises(ConfigurationError, match="NAME=VALUE"):
        parse_parameters(["novalue"])
    with pytest.raises(ConfigurationError, match="NAME=VALUE"):
        parse_parameters(["not a name=1"])


def test_unknown_parameters_are_refused_before_any_kernel_starts(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "n.ipynb")
    assert sorted(notebook_parameters(notebook)) == ["points", "title"]
    with pytest.raises(ConfigurationError, match=r"unknown parameter.*pionts.*points, title"):
        render_report(notebook, tmp_path / "r.html", {"pionts": 3}, progress=False)
    bare = tmp_path / "bare.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), bare)
    with pytest.raises(ConfigurationError, match="no cell tagged 'parameters'"):
        render_report(bare, tmp_path / "r.html", {"x": 1}, progress=False)
    with pytest.raises(ConfigurationError, match="no such notebook"):
        render_report(tmp_path / "missing.ipynb", tmp_path / "r.html")


def test_secrets_are_found_in_the_environment_by_name() -> None:
    env = {"AIOS_TOKEN": "abcdef123", "GITHUB_TOKEN": "ghp_x1y2z3", "DB_PASSWORD": "hunter22",
           "HOME": "/root", "SHORT_TOKEN": "ab"}
    assert find_secrets(["explicit-secret", None], environ=env) == [
        "explicit-secret", "ghp_x1y2z3", "abcdef123", "hunter22",
    ]
