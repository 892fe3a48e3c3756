"""Every table of the EventStore against a realistic stream: counts, latest state, dtypes."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from store_samples import KEYS, LATEST_SOURCES, expected_latest, sample_events, sample_frames, ts

from aios_notebook.store import TABLES, EventStore, bulk

HOURS = 3.0


@pytest.fixture(scope="module")
def events():
    return sample_events(HOURS)


@pytest.fixture(scope="module")
def store(events):
    store = EventStore(background=False)
    for frame in sample_frames(HOURS):
        store.ingest_frame(frame)
    return store


def _same(actual, expected) -> bool:
    if expected is None:
        return actual is None or actual is pd.NaT or (isinstance(actual, float) and math.isnan(actual)) or actual is pd.NA
    if isinstance(expected, float) or isinstance(actual, (float, np.floating)):
        return actual is not None and not pd.isna(actual) and math.isclose(float(actual), float(expected), rel_tol=1e-6)
    if isinstance(actual, np.generic):
        actual = actual.item()
    return actual == expected


def test_event_tables_hold_one_row_per_event(store, events):
    sent = Counter(event for event, _, _ in events)
    assert sent["processing_job_status"] > 100  # a realistic mix, not a toy
    counts = store.counts
    job = sent["processing_job_status"] + sent["processing_job_completed"] + sent["processing_job_failed"]
    agent = sent["agent_status_update"] + sent["agent_task_completed"] + sent["agent_error"]
    assert counts["job_events"] == job
    assert counts["agent_events"] == agent
    assert counts["insights"] == sent["insight_generated"]
    assert counts["metrics"] == sent["dashboard_metrics_update"]
    assert counts["errors"] == sent["error"]
    assert counts["raw"] == len(events)
    assert store.received == sent
    assert store.frames == len(events)
    # everything the reference server sends is well-formed: the batched paths took it all but
    # the error events, which are decoded one by one
    assert bulk.fast_frames(store) == len(events) - sent["error"]


def test_event_tables_keep_arrival_order_and_values(store, events):
    frame = store.job_events
    sent = [(e, d, s) for e, d, s in events if e.startswith("processing_job_")]
    assert frame["seq"].tolist() == [s for _, _, s in sent]
    assert frame["event"].astype(str).tolist() == [e for e, _, _ in sent]
    assert frame["job_id"].astype(str).tolist() == [d["job_id"] for _, d, _ in sent]
    assert frame["timestamp"].tolist() == [ts(d["timestamp"]) for _, d, _ in sent]
    progress = [d.get("progress") for _, d, _ in sent]
    assert all(_same(a, b) for a, b in zip(frame["progress"].tolist(), progress, strict=True))
    agent = store.agent_events
    sent_agent = [(e, d) for e, d, _ in events if e.startswith("agent_")]
    confidence = [(d.get("result") or {}).get("confidence") for _, d in sent_agent]
    assert all(_same(a, b) for a, b in zip(agent["confidence"].tolist(), confidence, strict=True))
    duration = [d.get("duration") for _, d in sent_agent]
    assert all(_same(a, b) for a, b in zip(agent["duration"].tolist(), duration, strict=True))


@pytest.mark.parametrize("table", list(LATEST_SOURCES))
def test_latest_state_is_the_last_event_per_entity(store, events, table):
    expected = expected_latest(table, events)
    frame = getattr(store, table)
    assert len(frame) == len(expected)
    keys = KEYS[table]
    actual_keys = list(zip(*(frame[k].astype(str) for k in keys), strict=True))
    actual_keys = [k[0] if len(k) == 1 else k for k in actual_keys]
    assert set(actual_keys) == set(expected)
    records = dict(zip(actual_keys, frame.to_dict("records"), strict=True))
    columns = {c for sources in LATEST_SOURCES[table].values() for c in sources} | {"updated_at", "seq"}
    if table == "knowledge":
        columns.add("update_count")
    mismatches = []
    for key, want in expected.items():
        row = records[key]
        for column in columns:
            if not _same(row[column], want.get(column)):
                mismatches.append((key, column, row[column], want.get(column)))
    assert not mismatches, mismatches[:5]
    assert not frame["snapshot"].any()


def test_metrics_changes_are_numbers_beside_the_original(store, events):
    metrics = store.metrics
    sent = [d for e, d, _ in events if e == "dashboard_metrics_update"]
    assert metrics["changes"].tolist() == [d["changes"] for d in sent]
    for name in ("total_processed", "success_rate", "processing_time"):
        want = [float(d["changes"][name].rstrip("%")) for d in sent]
        assert metrics[f"{name}_change"].tolist() == pytest.approx(want)
    assert metrics["total_processed"].tolist() == [d["total_processed"] for d in sent]


def test_insights_and_errors_keep_objects(store, events):
    insights = store.insights
    sent = [d for e, d, _ in events if e == "insight_generated"]
    assert insights["insight_id"].astype(str).tolist() == [d["insight_id"] for d in sent]
    assert insights["metadata"].tolist() == [d["metadata"] for d in sent]
    assert set(insights["source"].astype(str)) == {"server"}
    errors = store.errors
    sent_errors = [d for e, d, _ in events if e == "error"]
    assert errors["kind"].astype(str).tolist() == ["processing_error"] * len(sent_errors)
    assert errors["details"].tolist() == [d["details"] for d in sent_errors]
    assert errors["message"].tolist() == [d["message"] for d in sent_errors]


def test_dtypes_follow_the_design(store):
    expected = {
        "cat": "category", "f64": "float64", "f32": "float32", "int32": "Int32", "int64": "Int64",
        "ts": "datetime64[ns, UTC]", "bool": "boolean", "obj": "object", "text": "str",
    }
    for name, spec in TABLES.items():
        frame = store.table(name)
        assert list(frame.columns) == list(spec.names), name
        for column in spec.columns:
            assert str(frame[column.name].dtype) == expected[column.kind], (name, column.name)


def test_empty_store_has_every_table_with_its_dtypes():
    store = EventStore(background=False)
    for name, spec in TABLES.items():
        frame = store.table(name)
        assert len(frame) == 0 and list(frame.columns) == list(spec.names)
    assert store.version == 0
    assert store.gaps.columns.tolist() == ["start", "end", "reason"]


def test_batched_path_matches_frame_by_frame_decoding():
    frames = sample_frames(1.0, seed=11, scenario="failure_burst")
    fast = EventStore(background=False, batch_size=3000)  # Arrow, but for the last 335 frames
    small = EventStore(background=False, batch_size=40)  # small batches: json.loads, by event
    slow = EventStore(background=False, fast_path=False)
    for frame in frames:
        for store in (fast, small, slow):
            store.ingest_frame(frame, received_at=1_700_000_000.0)
    assert bulk.fast_frames(fast) > 0.9 * len(frames) and bulk.fast_frames(small) > 0.9 * len(frames)
    assert bulk.fast_frames(slow) == 0
    for name in TABLES:
        pd.testing.assert_frame_equal(fast.table(name), slow.table(name), obj=name)
        pd.testing.assert_frame_equal(small.table(name), slow.table(name), obj=name)


def test_reads_are_cached_until_something_changes(store):
    first = store.jobs
    version = store.version
    again = store.jobs
    assert store.version == version
    pd.testing.assert_frame_equal(first, again)
    # the caller owns what it gets: changing it changes neither the store nor the next read
    first.loc[first.index[0], "progress"] = -1.0
    first["extra"] = 1
    fresh = store.jobs
    assert "extra" not in fresh.columns and fresh["progress"].iloc[0] != -1.0


def test_now_is_the_latest_event_time(store, events):
    latest = max(ts(d["timestamp"]) for _, d, _ in events if d.get("timestamp"))
    assert store.now == latest


def test_repr_names_tables_not_contents(store):
    text = repr(store)
    assert text.startswith("<EventStore v") and "jobs=" in text and "raw=" in text
