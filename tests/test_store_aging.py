"""Finished jobs, DAG runs and steps age out of the latest-state tables; running ones never do."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import encode
from aios_notebook.store import DEFAULT_RETENTION, EventStore
from aios_notebook.store.retention import FINISHED_STATUSES

T0 = pd.Timestamp("2026-01-05T00:00:00Z")
DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"


def _at(hours: float) -> str:
    return (T0 + pd.Timedelta(hours=hours)).isoformat()


def _job(seq: int, hours: float, job: str, status: str) -> str:
    return encode("processing_job_status", {"job_id": job, "status": status, "timestamp": _at(hours)}, seq)


def _run(seq: int, hours: float, run: str, status: str) -> str:
    return encode("dag_run_status", {"run_id": run, "dag_id": "ingest", "status": status, "timestamp": _at(hours)}, seq)


def _step(seq: int, hours: float, run: str, step: str, status: str) -> str:
    return encode("step_status", {"run_id": run, "step_id": step, "dag_id": "ingest", "status": status,
                                  "timestamp": _at(hours)}, seq)


def _ids(frame: pd.DataFrame, column: str = "job_id") -> list[str]:
    return sorted(frame[column].astype(str))


def test_finished_entities_age_out_after_a_day_of_stream_time_and_running_ones_stay():
    store = EventStore(background=False)
    store.ingest([
        _job(1, 0, "done-early", "completed"), _job(2, 0, "failed-early", "failed"),
        _job(3, 0, "running-early", "processing"), _job(4, 0, "queued-early", "queued"),
        _run(5, 0, "run-done", "success"), _run(6, 0, "run-going", "running"),
        _step(7, 0, "run-done", "extract", "success"), _step(8, 0, "run-going", "extract", "up_for_retry"),
        _job(9, 20, "done-later", "completed"),
    ])
    assert len(store.jobs) == 5 and store.dropped["jobs"] == 0
    store.ingest([_job(10, 25, "fresh", "processing")])  # 25 h on: the first finished are a day old
    assert _ids(store.jobs) == ["done-later", "fresh", "queued-early", "running-early"]
    assert _ids(store.dag_runs, "run_id") == ["run-going"]
    assert _ids(store.dag_steps, "run_id") == ["run-going"]  # up_for_retry is still running
    assert store.dropped["jobs"] == 2 and store.dropped["dag_runs"] == 1 and store.dropped["dag_steps"] == 1
    store.ingest([_job(11, 100, "fresh", "completed")])  # 100 h on: running jobs are still there
    assert _ids(store.jobs) == ["fresh", "queued-early", "running-early"]
    # an entity heard of again after it aged out is a new row
    store.ingest([_job(12, 101, "done-early", "processing")])
    assert "done-early" in _ids(store.jobs)


def test_a_job_that_finishes_later_ages_from_its_last_update():
    store = EventStore(background=False)
    store.ingest([_job(1, 0, "slow", "processing"), _job(2, 30, "slow", "completed"), _job(3, 50, "other", "queued")])
    assert _ids(store.jobs) == ["other", "slow"]  # finished 20 h ago: kept
    store.ingest([_job(4, 55, "other", "processing")])
    assert _ids(store.jobs) == ["other"]


def test_finished_row_limit_keeps_the_most_recently_updated_and_every_running_one():
    store = EventStore(retention={"jobs": {"finished": 3}}, background=False)
    store.ingest([_job(seq, seq, f"running-{seq}", "processing") for seq in range(1, 6)])
    store.ingest([_job(seq, seq, f"done-{seq}", "completed") for seq in range(6, 12)])
    assert _ids(store.jobs) == ["done-10", "done-11", "done-9", *[f"running-{i}" for i in range(1, 6)]]
    assert store.dropped["jobs"] == 3
    # no age limit given: finished jobs of any age stay within the row limit
    store.ingest([_job(100, 10_000, "running-1", "processing")])
    assert len(store.jobs) == 8


def test_every_finished_status_ages_out_and_other_statuses_do_not():
    statuses = [*sorted(FINISHED_STATUSES), "RUNNING", "up_for_retry", "queued", "pending", "scheduled", "weird"]
    store = EventStore(retention={"jobs": {"finished": "1h"}}, background=False)
    store.ingest([_job(i + 1, 0, f"j-{status}", status) for i, status in enumerate(statuses)])
    store.ingest([_job(1000, 2, "later", "processing")])
    kept = {job.removeprefix("j-") for job in _ids(store.jobs)} - {"later"}
    assert kept == {"RUNNING", "up_for_retry", "queued", "pending", "scheduled", "weird"}
    store2 = EventStore(retention={"jobs": {"finished": "1h"}}, background=False)
    store2.ingest([_job(1, 0, "shouting", "COMPLETED"), _job(2, 2, "later", "processing")])
    assert _ids(store2.jobs) == ["later"]  # statuses are compared in lower case


def test_defaults_are_what_the_docs_say():
    limits = EventStore(background=False).retention
    day = pd.Timedelta(hours=24)
    assert limits["jobs"] == {"rows": None, "age": None, "finished": {"rows": 20_000, "age": day}}
    assert limits["dag_runs"] == {"rows": None, "age": None, "finished": {"rows": 20_000, "age": day}}
    assert limits["dag_steps"] == {"rows": None, "age": None, "finished": {"rows": 200_000, "age": day}}
    assert limits["knowledge"] == {"rows": 50_000, "age": None}
    assert "agents" not in limits  # few: every agent is kept
    for table, rows in {"raw": 1_000_000, "job_events": 500_000, "agent_events": 500_000,
                        "dag_step_events": 500_000, "errors": 50_000, "insights": 50_000, "metrics": 100_000}.items():
        assert limits[table] == {"rows": rows, "age": None}, table
    # docs/design.md states the same defaults
    text = " ".join(DESIGN.read_text(encoding="utf-8").split())
    stated = re.search(r"Retention by default: (.*?)\.", text)
    assert stated is not None, "design.md has no 'Retention by default:' sentence"
    sentence = stated.group(1)
    for table, value in DEFAULT_RETENTION.items():
        if isinstance(value, int):
            assert f"`{table}` {value:,} rows" in sentence, table
    assert "finished `jobs` and `dag_runs` 24 h of stream time and 20,000 rows" in sentence
    assert "finished `dag_steps` 24 h of stream time and 200,000 rows" in sentence


def test_a_table_named_in_retention_takes_the_value_given():
    store = EventStore(retention={"jobs": None}, background=False)
    store.ingest([_job(1, 0, "old", "completed"), _job(2, 48, "new", "completed")])
    assert _ids(store.jobs) == ["new", "old"]
    assert "jobs" not in store.retention and "dag_runs" in store.retention
    both = EventStore(retention={"jobs": {"rows": 10, "finished": (5, "1h")}}, background=False).retention
    assert both["jobs"] == {"rows": 10, "age": None, "finished": {"rows": 5, "age": pd.Timedelta(hours=1)}}


def test_categories_of_aged_out_entities_are_let_go():
    # ids of jobs long gone must not pile up in the tables' categories (their memory grows with them)
    store = EventStore(retention={"jobs": {"finished": "1h"}, "job_events": 100}, background=False, batch_size=4096)
    store.ingest(_job(seq, seq / 1000, f"job-{seq:06d}", "completed") for seq in range(1, 40_001))
    jobs, events = store.jobs, store.job_events
    assert 1000 <= len(jobs) <= 1000 + 1000 // 64 + 1 and len(events) == 100
    for frame in (jobs, events):
        categories = len(frame["job_id"].cat.categories)
        assert categories < 15_000, categories  # of the 40,000 ids seen
        assert set(frame["job_id"].astype(str)) <= set(frame["job_id"].cat.categories)
    assert events["job_id"].astype(str).tolist() == [f"job-{seq:06d}" for seq in range(39_901, 40_001)]
    assert _ids(jobs)[-1] == "job-040000"


@pytest.mark.parametrize(("retention", "message"), [
    ({"agents": {"finished": "1h"}}, "'finished' applies to jobs, dag_runs, dag_steps only"),
    ({"jobs": {"finished": {"finished": "1h"}}}, "cannot hold another 'finished'"),
    ({"jobs": {"finished": "soon"}}, "cannot read duration 'soon'"),
    ({"jobs": {"finished": -3}}, "rows must be a whole number"),
    ({"jobs": {"finshed": "1h"}}, "unknown keys \\['finshed'\\]"),
])
def test_bad_finished_retention_is_named(retention, message):
    with pytest.raises(ConfigurationError, match=message):
        EventStore(retention=retention)
