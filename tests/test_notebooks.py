"""Every notebook in notebooks/ runs top to bottom in a real kernel against the embedded reference server."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 180  # seconds a cell may take: the notebooks wait with timeouts, never open-ended


def test_there_are_notebooks_to_run() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"03_dag_monitoring.ipynb", "04_weekly_report.ipynb",
                                           "05_detector_lab.ipynb"}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_top_to_bottom(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no AIOS_URL / AIOS_TOKEN: aios_notebook.connect() starts the embedded reference server
    monkeypatch.delenv("AIOS_URL", raising=False)
    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    monkeypatch.setenv("AIOS_LAB_QUICK", "1")  # 05_detector_lab on its short setting
    notebook = nbformat.read(path, as_version=4)
    stored = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in stored), f"{path.name}: outputs are not stripped"
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    shown = [o for c in code for o in c.outputs if o.output_type in ("display_data", "execute_result")]
    assert shown, f"{path.name} displayed nothing"
