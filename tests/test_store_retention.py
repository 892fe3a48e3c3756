"""Retention by rows and by age, the dropped counters, and bad retention settings."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from store_samples import sample_frames

from aios_notebook.clock import ManualClock
from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import encode
from aios_notebook.store import DEFAULT_RETENTION, EventStore
from aios_notebook.store.schema import TABLES


def _job(seq: int, minute: float, job: str | None = None) -> str:
    when = pd.Timestamp("2026-01-05T00:00:00Z") + pd.Timedelta(minutes=minute)
    return encode("processing_job_status", {"job_id": job or f"job-{seq}", "status": "processing",
                                            "timestamp": when.isoformat()}, seq)


def test_rows_limit_drops_the_oldest_rows():
    store = EventStore(retention={"job_events": 100, "raw": 150}, background=False, batch_size=64)
    for seq in range(1, 1001):
        store.ingest_frame(_job(seq, seq / 10))
    events = store.job_events
    assert events["seq"].tolist() == list(range(901, 1001))
    assert len(store.raw) == 150 and store.raw["seq"].iloc[0] == 851
    dropped = store.dropped
    assert dropped["job_events"] == 900 and dropped["raw"] == 850 and dropped["jobs"] == 0
    assert len(store.jobs) == 1000  # running entities never age out by default


def test_compaction_keeps_frames_already_handed_out():
    store = EventStore(retention={"job_events": 1000}, background=False, batch_size=5000)
    store.ingest(_job(seq, 0, "j") for seq in range(1, 70_001))
    before = store.job_events
    store.ingest(_job(seq, 0, "j") for seq in range(70_001, 140_001))  # compacts the buffers
    assert before["seq"].iloc[0] == 69_001 and before["seq"].iloc[-1] == 70_000
    after = store.job_events
    assert after["seq"].tolist() == list(range(139_001, 140_001))
    assert store.dropped["job_events"] == 139_000


def test_age_limit_uses_event_time():
    store = EventStore(retention={"job_events": "30m"}, background=False)
    store.ingest(_job(seq, minute=seq) for seq in range(1, 61))
    events = store.job_events
    # now = minute 60: rows older than minute 30 are gone
    assert events["timestamp"].min() == pd.Timestamp("2026-01-05T00:30:00Z")
    assert len(events) == 31 and store.dropped["job_events"] == 29


def test_age_limit_on_received_time_uses_the_clock():
    clock = ManualClock(start=1_767_571_200.0)
    store = EventStore(retention={"raw": timedelta(seconds=10)}, clock=clock, background=False)
    store.ingest([_job(1, 0), _job(2, 0)])
    clock.advance(5)
    store.ingest([_job(3, 0)])
    clock.advance(6)  # the first two are 11 s old now
    store.ingest([_job(4, 0)])
    assert store.raw["seq"].tolist() == [3, 4]
    assert store.raw["received_at"].iloc[0] == pd.Timestamp(1_767_571_205.0, unit="s", tz="UTC")


def test_latest_tables_keep_the_most_recently_updated_when_told():
    store = EventStore(retention={"jobs": {"rows": 3, "age": "1h"}}, background=False)
    store.ingest([_job(1, 0, "a"), _job(2, 1, "b"), _job(3, 2, "c"), _job(4, 3, "d"), _job(5, 4, "a")])
    assert sorted(store.jobs["job_id"].astype(str)) == ["a", "c", "d"]
    store.ingest([_job(6, 62, "e")])  # 3 rows at most: c, the least recently updated, goes
    assert sorted(store.jobs["job_id"].astype(str)) == ["a", "d", "e"]
    store.ingest([_job(7, 64.5, "f")])  # now = 01:04:30: a and d are over an hour old
    assert sorted(store.jobs["job_id"].astype(str)) == ["e", "f"]
    assert store.dropped["jobs"] == 4
    # a dropped entity comes back as a new row when it is heard of again
    store.ingest([_job(8, 65, "b")])
    assert sorted(store.jobs["job_id"].astype(str)) == ["b", "e", "f"]


def test_defaults_bound_every_event_table():
    store = EventStore()
    limits = store.retention
    assert limits["raw"]["rows"] == DEFAULT_RETENTION["raw"] == 1_000_000
    assert {"job_events", "agent_events", "errors", "insights", "metrics"} <= set(limits)
    # latest-state tables: by default only finished jobs, runs and steps age out (test_store_aging.py)
    assert limits["jobs"]["rows"] is None and limits["jobs"]["age"] is None
    assert "raw" not in EventStore(retention={"raw": None}).retention
    store.close()


@pytest.mark.parametrize(("retention", "message"), [
    ({"jobz": 10}, "unknown table 'jobz'"),
    ({"raw": -1}, "rows must be a whole number"),
    ({"raw": "7 fortnights"}, "cannot read duration"),
    ({"raw": "0s"}, "must be positive"),
    ({"raw": {"rows": 10, "ages": "1d"}}, "unknown keys"),
    ({"raw": 1.5}, "expected a duration"),
    ([("raw", 10)], "must be a dict"),
])
def test_bad_retention_is_named(retention, message):
    with pytest.raises(ConfigurationError, match=message):
        EventStore(retention=retention)


def test_a_table_limited_to_no_rows_is_not_built_and_the_rest_are_untouched():
    frames = sample_frames(hours=1.0, seed=11)
    off = {"jobs": 0, "agents": 0, "dag_runs": 0, "dag_steps": 0, "knowledge": 0, "raw": 0}
    full = EventStore(retention={name: None for name in TABLES}, background=False, clock=ManualClock(start=1e9))
    lean = EventStore(retention=off, background=False, clock=ManualClock(start=1e9))
    for store in (full, lean):  # the bulk path and the per-frame one
        store.ingest(frames[: len(frames) // 2])
        for frame in frames[len(frames) // 2 :]:
            store.ingest_frame(frame)
    for name in TABLES:
        if name in off:
            assert len(lean.table(name)) == 0, name
        else:
            pd.testing.assert_frame_equal(lean.table(name), full.table(name), check_like=False, obj=name)
    assert lean.frames == full.frames == len(frames)  # frames are counted without raw
    dropped = lean.dropped
    assert dropped["raw"] == len(frames)
    assert dropped["jobs"] == int(full.job_events["job_id"].notna().sum()) > 0  # events offered, not entities
