"""Every notebook renders as a clean report, and as PDF (issue 18), through the ``report`` command.

Clean: nothing on the command's stderr but its own "wrote" line, no stderr output or traceback in
the HTML (a red box sent straight to readers), no local path of this machine. The notebooks run
with short settings so each takes well under a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chromium import chromium_path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: short settings for the notebooks that take parameters (others run as they are)
SHORT: dict[str, list[str]] = {
    "02_insight_rules": ["hours=4.0", "live_speed=900.0", "live_wait=20.0"],
    "03_dag_monitoring": ["speed=1200.0", "min_runs=4", "wait_seconds=15.0"],
    "04_weekly_report": ["collect_seconds=8.0", "min_jobs=100"],
}
STDERR_OUTPUT = 'data-mime-type="application/vnd.jupyter.stderr"'


def _report(notebook: Path, output: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    parameters = [arg for item in SHORT.get(notebook.stem, []) for arg in ("-p", item)]
    env = {k: v for k, v in os.environ.items() if k not in ("AIOS_URL", "AIOS_TOKEN")}
    env["AIOS_LAB_QUICK"] = "1"  # 05_detector_lab on its short setting (as in test_notebooks)
    return subprocess.run(
        [sys.executable, "-m", "aios_notebook", "report", str(notebook), "-o", str(output), "--no-progress",
         *parameters, *extra],
        cwd=output.parent, env=env, capture_output=True, text=True, timeout=400, check=False,
    )


def _local_paths() -> list[str]:
    """Paths of this machine a reader has no business seeing."""
    return sorted({str(ROOT), sys.prefix, os.path.expanduser("~") + "/"} - {"/"})


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_renders_as_a_clean_report(notebook: Path, tmp_path: Path) -> None:
    output = tmp_path / f"{notebook.stem}.html"
    result = _report(notebook, output)
    assert result.returncode == 0, result.stderr
    # the command says what it wrote, and nothing else: no kernel transport warning, no log line
    assert result.stderr.strip().splitlines() == [f"wrote {output}"], result.stderr
    html = output.read_text(encoding="utf-8")
    assert STDERR_OUTPUT not in html, _around(html, STDERR_OUTPUT)
    shown = _without_code(html)
    for marker in ("Traceback", "Task was destroyed", "Error in", "Warning:", "Exception"):
        assert marker not in shown, _around(shown, marker)
    for path in _local_paths():
        assert path not in html, _around(html, path)


def _without_code(html: str) -> str:
    """The page minus its scripts and styles (plotly.js holds words like "Error in")."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)


def _around(html: str, marker: str) -> str:
    """The text around a marker, tags stripped, for the failure message."""
    at = html.find(marker)
    return re.sub(r"<[^>]+>", " ", html[max(0, at - 600): at + 900]) if at >= 0 else ""


def _pdftotext() -> str:
    path = shutil.which("pdftotext")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but no pdftotext: .ci/run must install poppler-utils")
    pytest.skip("no pdftotext on PATH: install poppler-utils (apt-get install -y poppler-utils) to check PDF reports")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(420)
def test_the_weekly_report_as_pdf_holds_its_pages_and_drawn_figures(tmp_path: Path) -> None:
    chromium_path()  # skips (fails under CI) without chromium
    pdftotext = _pdftotext()
    output = tmp_path / "weekly.pdf"
    result = _report(ROOT / "notebooks" / "04_weekly_report.ipynb", output)
    assert result.returncode == 0, result.stderr
    assert output.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run([pdftotext, "-layout", str(output), "-"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    pages = text.count("\f")
    assert pages >= 2, text[:2000]
    assert "Weekly report" in text and "asked," in text and "of data" in text
    # the figures' titles and axes are drawn by plotly.js: there only if the figures rendered
    assert re.search(r"Success rate per (minute|\d+ minutes|hour|\d+ hours|day)", text), text[:4000]
    assert "Most frequent failures" in text or "No job failed" in text
    assert "Tasks and errors per agent" in text
    assert "(a live widget" not in text


def test_a_pdf_without_chromium_is_refused_before_any_kernel_runs(tmp_path: Path) -> None:
    env = {**os.environ, "AIOS_CHROMIUM": str(tmp_path / "no-such-browser")}
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "report", str(ROOT / "notebooks" / "04_weekly_report.ipynb"),
         "-o", str(tmp_path / "weekly.pdf"), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 2
    assert "a PDF report needs a headless Chromium" in result.stderr and "AIOS_CHROMIUM" in result.stderr
    assert not (tmp_path / "weekly.pdf").exists()
