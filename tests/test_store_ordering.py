"""Latest-state tables only move forward: late replays, snapshots, local insights."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
from store_samples import expected_latest, sample_events, sample_frames

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import encode
from aios_notebook.store import EventStore


def _agent(seq: int | None, status: str, when: str, task: str | None = "work", **extra) -> str:
    data = {"agent_id": "a1", "name": "Agent One", "type": "analysis", "status": status,
            "current_task": task, "progress": 10.0, "timestamp": when, **extra}
    return encode("agent_status_update", data, seq)


@pytest.fixture(params=[True, False], ids=["batched", "frame-by-frame"])
def store(request):
    return EventStore(background=False, fast_path=request.param)


def test_a_late_replay_never_overwrites_a_newer_event(store):
    store.ingest([_agent(10, "working", "2026-01-05T00:10:00Z")])
    store.ingest([_agent(5, "idle", "2026-01-05T00:05:00Z")])  # replayed after a reconnect
    row = store.agents.iloc[0]
    assert row["status"] == "working" and row["seq"] == 10
    assert row["updated_at"] == pd.Timestamp("2026-01-05T00:10:00Z")
    assert len(store.agent_events) == 2  # the event itself is still an event


def test_within_one_batch_the_highest_seq_wins(store):
    store.ingest([_agent(7, "working", "2026-01-05T00:07:00Z"), _agent(3, "idle", "2026-01-05T00:03:00Z"),
                  _agent(9, "error", "2026-01-05T00:09:00Z", task=None)])
    row = store.agents.iloc[0]
    assert row["status"] == "error" and row["seq"] == 9
    assert pd.isna(row["current_task"])  # the newest event's null clears the field


def test_an_older_event_fills_only_what_is_missing(store):
    status = {"job_id": "j1", "status": "processing", "timestamp": "2026-01-05T00:01:00Z"}
    store.ingest([encode("processing_job_completed", {**status, "status": "completed",
                                                        "completed_at": "2026-01-05T00:05:00Z"}, 20)])
    store.ingest([encode("processing_job_status", {**status, "filename": "a.pdf", "progress": 40,
                                                     "started_at": "2026-01-05T00:00:00Z"}, 12)])
    row = store.jobs.iloc[0]
    assert row["status"] == "completed" and row["seq"] == 20
    assert row["filename"] == "a.pdf" and row["started_at"] == pd.Timestamp("2026-01-05T00:00:00Z")
    assert row["duration_s"] == 300.0


def test_without_seq_the_timestamp_decides(store):
    store.ingest([_agent(None, "working", "2026-01-05T00:10:00Z")])
    store.ingest([_agent(None, "idle", "2026-01-05T00:05:00Z")])
    assert store.agents.iloc[0]["status"] == "working"
    store.ingest([_agent(None, "offline", "2026-01-05T00:11:00Z")])
    assert store.agents.iloc[0]["status"] == "offline"


def test_replaying_a_shuffled_stream_gives_the_same_latest_state():
    events = sample_events(1.0)
    frames = sample_frames(1.0)
    ordered = EventStore(background=False)
    ordered.ingest(frames)
    # deliver the second half first, then the first half (a resync replay arriving late)
    half = len(frames) // 2
    shuffled = EventStore(background=False)
    shuffled.ingest(frames[half:])
    shuffled.ingest(frames[:half])
    for table in ("jobs", "agents", "dag_runs", "dag_steps", "knowledge"):
        want = expected_latest(table, events)
        a = ordered.table(table)
        b = shuffled.table(table)
        key = ["run_id", "step_id"] if table == "dag_steps" else [a.columns[0]]
        # categories are in order of first appearance, which differs: sort by the text
        a = a.astype({k: str for k in key}).sort_values(key).reset_index(drop=True)
        b = b.astype({k: str for k in key}).sort_values(key).reset_index(drop=True)
        assert len(a) == len(want)
        for column in ("status", "seq", "updated_at") if "status" in a else ("seq", "updated_at"):
            assert a[column].astype(object).tolist() == b[column].astype(object).tolist(), (table, column)


def test_snapshots_never_overwrite_newer_events(store):
    store.ingest([_agent(10, "working", "2026-01-05T00:10:00Z")])
    store.merge_snapshot("agents", [
        {"agent_id": "a1", "status": "idle", "name": "Old name", "performance": {"tasks_completed": 5}},
        {"agent_id": "a2", "status": "idle", "name": "Two", "tasks_completed": 3},
    ], at="2026-01-05T00:08:00Z")
    agents = store.agents.set_index("agent_id")
    assert agents.loc["a1", "status"] == "working" and not agents.loc["a1", "snapshot"]
    assert agents.loc["a1", "tasks_completed"] == 5  # a gap filled, nothing overwritten
    assert agents.loc["a2", "status"] == "idle" and agents.loc["a2", "snapshot"]
    assert agents.loc["a2", "updated_at"] == pd.Timestamp("2026-01-05T00:08:00Z")
    # a newer snapshot wins over an older event; a newer event wins over the snapshot row
    store.merge_snapshot("agents", [{"agent_id": "a1", "status": "offline"}], at="2026-01-05T00:20:00Z")
    assert store.agents.set_index("agent_id").loc["a1", "status"] == "offline"
    store.ingest([_agent(11, "working", "2026-01-05T00:30:00Z").replace('"a1"', '"a2"')])
    agents = store.agents.set_index("agent_id")
    assert agents.loc["a2", "status"] == "working" and not agents.loc["a2", "snapshot"]


def test_snapshot_kinds_and_bad_records():
    store = EventStore(background=False)
    at = "2026-01-05T01:00:00Z"
    assert store.merge_snapshot("dag_runs", [{"run_id": "r1", "dag_id": "d", "status": "running",
                                              "steps": [{"step_id": "s1", "status": "success"}, "junk"]}], at) == 2
    assert store.dag_steps[["run_id", "step_id", "dag_id"]].astype(str).values.tolist() == [["r1", "s1", "d"]]
    store.merge_snapshot("metrics", [{"total_processed": 10, "success_rate": 99.0, "changes": {"total_processed": "+2"}}], at)
    metrics = store.metrics.iloc[0]
    assert metrics["snapshot"] and metrics["total_processed_change"] == 2.0
    assert metrics["timestamp"] == pd.Timestamp(at)
    store.merge_snapshot("insights", [{"insight_id": "i1", "title": "T", "confidence": 0.5}], at)
    store.merge_snapshot("insights", [{"insight_id": "i1", "title": "T"}, {"insight_id": "i2"}], at)
    assert store.insights["insight_id"].astype(str).tolist() == ["i1", "i2"]  # seen ids are skipped
    store.merge_snapshot("knowledge", [{"item_id": "k1", "title": "K", "tags": ["a"]},
                                       {"title": "no id"}, {"item_id": "k2", "tags": "not a list"}], at)
    knowledge = store.knowledge.set_index("item_id")
    assert knowledge.loc["k1", "tags"] == ["a"] and knowledge.loc["k2", "tags"] is None
    problems = store.errors
    assert set(problems["kind"].astype(str)) == {"snapshot"}
    assert any("no item_id" in m for m in problems["message"]) and any("tags" in m for m in problems["message"])
    assert any("step 1" in m for m in problems["message"])
    with pytest.raises(ConfigurationError, match="unknown snapshot kind 'jobz'"):
        store.merge_snapshot("jobz", [], at)


@dataclass
class _Insight:
    title: str
    confidence: float
    rule: str
    key: str
    evidence: dict


def test_local_insights_join_the_server_ones():
    store = EventStore(background=False)
    store.ingest([encode("insight_generated", {"insight_id": "s1", "title": "Server", "type": "trend",
                                               "confidence": 0.9, "timestamp": "2026-01-05T00:00:00Z"}, 1)])
    added = store.add_insights([
        {"title": "Stuck", "type": "anomaly", "confidence": 0.8, "rule": "stuck_jobs", "key": "job-1",
         "fingerprint": "fp-1", "metadata": {"age_s": 600}, "evidence": {"jobs": ["job-1"]}},
        _Insight("Slow", 0.7, "slow", "pdf", {"p95": 12.5}),
        {"title": "bad confidence", "confidence": "high"},
    ], source=None)
    assert added == 3
    insights = store.insights
    assert insights["source"].astype(str).tolist() == ["server", "rule:stuck_jobs", "rule:slow", "local"]
    assert insights["insight_id"].astype(str).tolist()[1] == "rule:stuck_jobs:fp-1"
    assert insights["evidence"].iloc[2] == {"p95": 12.5}
    assert insights["timestamp"].iloc[1] == pd.Timestamp("2026-01-05T00:00:00Z")  # store.now
    assert pd.isna(insights["confidence"].iloc[3])
    errors = store.errors
    assert errors["kind"].astype(str).tolist() == ["rule_error"] and "confidence" in errors["message"].iloc[0]
    store.add_insights([{"title": "x", "rule": "r"}], source="rule:explicit")
    assert store.insights["source"].iloc[-1] == "rule:explicit"


def test_counted_updates_survive_out_of_order():
    store = EventStore(background=False)
    created = json.dumps({"event": "knowledge_item_created", "data": {
        "item_id": "k1", "title": "T", "created_at": "2026-01-05T00:00:00Z", "timestamp": "2026-01-05T00:00:00Z"}, "seq": 1})
    updates = [encode("knowledge_item_updated", {"item_id": "k1", "updated_fields": [f"f{i}"],
                                                  "updated_at": f"2026-01-05T00:0{i}:00Z"}, i + 1) for i in range(1, 4)]
    store.ingest([updates[2], created, updates[0]])
    store.ingest([updates[1]])
    row = store.knowledge.iloc[0]
    assert row["update_count"] == 3 and row["updated_fields"] == ["f3"] and row["title"] == "T"
    assert row["updated_at"] == pd.Timestamp("2026-01-05T00:03:00Z")
