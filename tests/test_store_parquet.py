"""to_parquet / from_parquet: every table, dtypes and values round-trip, and a loaded store goes on
as the one that wrote it."""

from __future__ import annotations

import pandas as pd
import pytest
from store_samples import sample_frames

from aios_notebook.exceptions import RecordingError
from aios_notebook.protocol.codec import encode
from aios_notebook.store import TABLES, EventStore, bulk
from tests.history_samples import workload


@pytest.fixture(scope="module")
def store():
    store = EventStore(background=False)
    store.ingest(sample_frames(1.0, scenario="failure_burst"))
    store.ingest(["garbage", encode("processing_job_status", {"job_id": "j", "status": "x", "progress": "?"}, 10**9)])
    store.merge_snapshot("agents", [{"agent_id": "snap-1", "status": "idle"}], at="2026-01-05T00:30:00Z")
    store.add_gap("2026-01-05T00:10:00Z", "2026-01-05T00:11:00Z", "resync incomplete")
    store.add_insights([{"title": "t", "rule": "r", "evidence": {"jobs": ["a"]}, "metadata": {"n": 1}}])
    return store


def test_every_table_round_trips(store, tmp_path):
    paths = store.to_parquet(tmp_path / "tables")
    assert sorted(p.name for p in paths) == sorted(f"{name}.parquet" for name in TABLES)
    loaded = EventStore.from_parquet(tmp_path / "tables", background=False)
    for name in TABLES:
        # categories too, in their order: a loaded store's dictionaries start as the written ones
        pd.testing.assert_frame_equal(loaded.table(name), store.table(name), obj=name)
    assert loaded.now == store.now
    assert loaded.gaps.equals(store.gaps)
    agents = loaded.agents.set_index("agent_id")
    assert agents.loc["snap-1", "snapshot"] and not agents.drop("snap-1")["snapshot"].any()


def test_a_loaded_store_keeps_going(store, tmp_path):
    store.to_parquet(tmp_path)
    loaded = EventStore.from_parquet(tmp_path, background=False)
    last = int(store.job_events["seq"].max())
    job = store.jobs["job_id"].astype(str).iloc[0]
    loaded.ingest([encode("processing_job_status", {"job_id": job, "status": "cancelled",
                                                     "timestamp": "2030-01-01T00:00:00Z"}, last + 1)])
    row = loaded.jobs.set_index("job_id").loc[job]
    assert row["status"] == "cancelled" and row["seq"] == last + 1
    assert len(loaded.job_events) == len(store.job_events) + 1


def test_object_columns_are_json_in_the_file(store, tmp_path):
    import pyarrow.parquet as pq

    store.to_parquet(tmp_path)
    table = pq.read_table(tmp_path / "insights.parquet")
    assert str(table.schema.field("metadata").type) in ("string", "large_string")
    assert table.column("metadata").to_pylist()[-1] == '{"n":1}'
    assert b"aios_notebook" in table.schema.metadata


def test_reading_what_is_not_ours_fails_clearly(tmp_path):
    with pytest.raises(RecordingError, match="no table files"):
        EventStore.from_parquet(tmp_path)
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "jobs.parquet")
    with pytest.raises(RecordingError, match=r"not written by EventStore\.to_parquet"):
        EventStore.from_parquet(tmp_path)
    (tmp_path / "jobs.parquet").write_text("not parquet")
    with pytest.raises(RecordingError, match="not a readable Parquet file"):
        EventStore.from_parquet(tmp_path)


def test_a_loaded_store_ages_finished_jobs_as_the_one_that_wrote_it(tmp_path):
    frames, times = workload(6.0, start="2026-01-06T13:00:00Z")
    half = len(frames) // 2
    options = {"retention": {"jobs": {"finished": {"age": "1h"}}, "dag_runs": {"finished": {"age": "1h"}}},
               "background": False}
    # a few frames at a time, as live: finished rows are aged out once the stream has moved on
    # by a 64th of the age since the last time, so the writer's last time matters
    writer = EventStore(**options)
    bulk.ingest_frames(writer, frames[: half - 600], times[: half - 600])
    for at in range(half - 600, half, 4):
        bulk.ingest_frames(writer, frames[at : at + 4], times[at : at + 4])
    writer.to_parquet(tmp_path)
    loaded = EventStore.from_parquet(tmp_path, **options)
    for at in range(half, half + 3000, 4):
        for store in (writer, loaded):
            bulk.ingest_frames(store, frames[at : at + 4], times[at : at + 4])
        assert loaded.counts == writer.counts, at
    for name in ("jobs", "dag_runs"):
        pd.testing.assert_frame_equal(loaded.table(name), writer.table(name), obj=name)
    assert writer.dropped["jobs"] > 0
