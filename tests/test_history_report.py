"""The weekly report over an archive (``-p source=archive/``): its aggregates come from DuckDB over
the period and equal those computed in pandas from a store of the same events."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from aios_notebook.reports import render_report
from tests.history_samples import store_of, workload

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_weekly_report.ipynb"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _tiles(html: str) -> dict[str, str]:
    found = re.findall(r'color:#666">([^<]+)</div><div style="font-size:1.5em;font-weight:600">([^<]+)<', html)
    return dict(found)


def test_the_weekly_report_from_an_archive(tmp_path):
    store = store_of(*workload(8.0, scenario="failure_burst", start="2026-01-05T20:00:00Z"))
    store.to_archive(tmp_path / "archive")
    output = tmp_path / "report.html"
    period = "2026-01-05T22:00:00Z/2026-01-06T03:00:00Z"
    render_report(NOTEBOOK, output, {"source": str(tmp_path / "archive"), "period": period}, progress=False)
    html = output.read_text()
    for heading in ("KPIs", "Success-rate trend", "Top failures", "Agent health", "Insights of the period"):
        assert f">{heading}<" in html
    assert html.count('class="plotly-graph-div"') == 4 and "the archive" in html
    # the same numbers from the store, in pandas
    start, end = (pd.Timestamp(t) for t in period.split("/"))
    events = store.job_events
    events = events[(events["timestamp"] >= start) & (events["timestamp"] <= end)]
    ended = events[events["event"].isin(["processing_job_completed", "processing_job_failed"])]
    outcomes = ended.sort_values("timestamp").drop_duplicates("job_id", keep="last")
    failed = int((outcomes["event"] == "processing_job_failed").sum())
    agents = store.agent_events
    errors = int(((agents["event"] == "agent_error") & agents["timestamp"].between(start, end)).sum())
    knowledge = int(store.knowledge["created_at"].between(start, end).sum())
    tiles = _tiles(html)
    assert tiles["Jobs ended"] == f"{len(outcomes):,}" and len(outcomes) > 50
    assert tiles["Failed jobs"] == f"{failed:,}" and failed > 0
    assert tiles["Agent errors"] == f"{errors:,}"
    assert tiles["Knowledge items"] == f"{knowledge:,}"
    assert tiles["Success rate"] == f"{100 * (len(outcomes) - failed) / len(outcomes):.1f} %"
