"""What the dashboard's numbers count (issue 18): tiles show a change over a stated span, neutral
at zero; the Jobs tab says which jobs it counts."""

from __future__ import annotations

import re

from views_events import feed, job, metrics, new_store

from aios_notebook.views import JobsView
from aios_notebook.views.dashboard import CHANGE_SPAN_S, ConnectionHeader, _kpis


def _tile(html: str, name: str) -> str:
    found = re.search(rf'data-kpi="{name}".*?<div class="aios-tile-change">(.*?)</div>', html)
    assert found, html
    return found.group(1)


def test_a_rising_number_shows_its_rise_over_the_stated_span_not_the_last_update() -> None:
    store = new_store()
    # the server says "+0" at every update (seconds apart), while the total climbs by 1 a minute
    updates = [metrics(60.0 * i, 100 + i, 3.0, 98.0, 4, 50, changes={"total_processed": "+0"})
               for i in range(40)]
    feed(store, updates)
    tiles = ConnectionHeader._tiles(_kpis(store.metrics))
    minutes = int(CHANGE_SPAN_S // 60)
    total = _tile(tiles, "total_processed")
    assert f"+{minutes} in {minutes} min" in total and 'class="aios-up"' in total, total
    assert "±0" not in total


def test_a_short_history_states_the_span_it_has() -> None:
    store = new_store()
    feed(store, [metrics(0, 10, 3.0, 98.0, 4, 50), metrics(240, 14, 3.0, 98.0, 4, 50)])
    total = _tile(ConnectionHeader._tiles(_kpis(store.metrics)), "total_processed")
    assert "+4 in 4 min" in total, total


def test_a_change_that_rounds_to_zero_is_neutral_whatever_its_sign() -> None:
    store = new_store()
    # processing time up by 0.02 min: shown with one decimal it is no change, so no colour
    feed(store, [metrics(0, 10, 3.00, 98.0, 4, 50), metrics(1200, 10, 3.02, 98.0, 4, 50)])
    tiles = ConnectionHeader._tiles(_kpis(store.metrics))
    time_tile = _tile(tiles, "processing_time")
    assert "aios-muted" in time_tile and "aios-down" not in time_tile and "aios-up" not in time_tile
    assert "±0.0 min in 15 min" in time_tile, time_tile
    assert "aios-muted" in _tile(tiles, "total_processed") and "±0 in 15 min" in _tile(tiles, "total_processed")


def test_the_jobs_tab_says_what_it_counts() -> None:
    store = new_store()
    feed(store, [job("job-1", "completed", 100, started=90), job("job-2", "failed", 200, started=150),
                 job("job-3", "processing", 300, progress=10, started=290)])
    summary = JobsView(store).render().panels["summary"]
    # T0 + 90 s is the first job's start: 2026-01-05 00:01 UTC
    assert "3 jobs seen since 2026-01-05 00:01 UTC" in summary, summary
    assert "total processed" in summary  # and how that differs from the tile
