"""Bad frames and bad values: described in the errors table, never an exception, never lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import Message, decode, encode
from aios_notebook.store import EventStore

GOOD = encode(
    "processing_job_status",
    {"job_id": "job-1", "run_id": "run-1", "type": "pdf", "status": "processing", "progress": 10,
     "filename": "a.pdf", "timestamp": "2026-01-05T00:00:01.000Z"},
    seq=1,
)


def _status(seq: int, **data) -> str:
    base = {"job_id": f"job-{seq}", "status": "processing", "timestamp": "2026-01-05T00:00:02.000Z"}
    return json.dumps({"event": "processing_job_status", "data": {**base, **data}, "seq": seq})


@pytest.fixture(params=[True, False], ids=["batched", "frame-by-frame"])
def store(request):
    return EventStore(background=False, fast_path=request.param)


def test_garbage_frames_are_described_and_kept(store):
    frames = [
        GOOD, "not json", "[1, 2]", '{"data": {}}', b"\x00\xff binary", "",
        '{"event": "no_such_event", "data": {}}', '{"event": "processing_job_status", "data": null}',
        '{"event": "processing_job_status", "data": {"job_id": "j", "status": "x"}} trailing',
        '{"event": "processing_job_status", "data": {"job_id": "j2", "status": "x"}}{"event": "ping", "data": {}}',
        _status(2, progress=20),
    ]
    assert store.ingest(frames) == len(frames)
    raw = store.raw
    assert len(raw) == len(frames)
    assert raw["text"].iloc[0] == GOOD and raw["text"].iloc[1] == "not json"
    errors = store.errors
    malformed = errors[errors["kind"] == "malformed"]
    assert len(malformed) == len(frames) - 2
    codes = malformed["code"].astype(str).tolist()
    assert codes[:4] == ["not_json", "not_object", "missing_event", "binary_frame"]
    assert "unknown_event" in codes and "bad_data" in codes
    # the good frames around the bad ones are processed as usual
    assert store.jobs["job_id"].astype(str).tolist()[:1] == ["job-1"]
    assert "job-2" in set(store.jobs["job_id"].astype(str))
    assert store.received["no_such_event"] == 1


def test_wrong_types_are_missing_values_plus_a_row_each(store):
    frames = [
        _status(1, progress="45%"),
        _status(2, job_id=12345),
        _status(3, started_at="yesterday"),
        _status(4, progress=float("nan")),  # json.dumps writes NaN
        json.dumps({"event": "processing_job_failed", "data": {"job_id": "job-5", "retry_count": 1.5,
                    "can_retry": "yes", "timestamp": "2026-01-05T00:00:02Z"}, "seq": 5}),
        json.dumps({"event": "agent_status_update", "data": {"agent_id": "a1", "status": "idle",
                    "performance": {"tasks_completed": "many", "success_rate": 99.0}}, "seq": 6}),
        _status(7, progress=True),
        _status(8, filename=["a", "b"]),
    ]
    store.ingest(frames)
    errors = store.errors
    typed = errors[errors["kind"] == "field_type"]
    fields = sorted(d["field"] for d in typed["details"])
    assert fields == sorted([
        "progress", "job_id", "started_at", "progress", "retry_count", "can_retry",
        "performance.tasks_completed", "progress", "filename",
    ])
    first = typed.iloc[0]
    assert first["event"] == "processing_job_status" and first["seq"] == 1
    assert "progress" in first["message"] and "45%" in first["message"]
    events = store.job_events.set_index("seq")
    assert pd.isna(events.loc[1, "progress"]) and events.loc[1, "status"] == "processing"
    assert pd.isna(events.loc[2, "job_id"])  # a number is not an id
    assert pd.isna(events.loc[4, "progress"])
    assert pd.isna(events.loc[5, "retry_count"]) and pd.isna(events.loc[5, "can_retry"])
    agent = store.agents.iloc[0]
    assert pd.isna(agent["tasks_completed"]) and agent["success_rate"] == 99.0
    jobs = store.jobs.set_index("job_id")
    assert pd.isna(jobs.loc["job-3", "started_at"])


def test_numbers_beyond_their_column_are_missing_values_plus_a_row_each(store):
    """The right JSON type, but more than the column holds: missing, and the errors row says why
    (before, these became missing values silently)."""
    frames = [
        json.dumps({"event": "processing_job_failed", "data": {"job_id": "job-1", "retry_count": 2**40,
                    "timestamp": "2026-01-05T00:00:02Z"}, "seq": 1}),  # int32 column
        json.dumps({"event": "agent_status_update", "data": {"agent_id": "a1", "status": "idle",
                    "performance": {"tasks_completed": 2**63, "success_rate": 99.0}}, "seq": 2}),  # int64
        _status(3, progress=1e300),  # float32 column
        _status(4, progress=-(10**400)),  # beyond any float
        _status(5, progress=3e38),  # within float32: a value
        json.dumps({"event": "processing_job_failed", "data": {"job_id": "job-6", "retry_count": 2**31 - 1,
                    "timestamp": "2026-01-05T00:00:02Z"}, "seq": 6}),  # int32's largest: a value
    ]
    store.ingest(frames)
    typed = store.errors[store.errors["kind"] == "field_type"]
    assert [d["field"] for d in typed["details"]] == ["retry_count", "performance.tasks_completed", "progress",
                                                      "progress"]
    messages = typed["message"].tolist()
    assert messages[0] == "processing_job_failed.retry_count: 1099511627776 is beyond int32's range"
    assert messages[1] == "agent_status_update.performance.tasks_completed: 9223372036854775808 is beyond int64's range"
    assert messages[2] == "processing_job_status.progress: 1e+300 is beyond float32's range"
    assert messages[3].endswith("... is beyond a float's range")
    assert typed["seq"].tolist() == [1, 2, 3, 4]
    events = store.job_events.set_index("seq")
    assert pd.isna(events.loc[1, "retry_count"]) and events.loc[6, "retry_count"] == 2**31 - 1
    assert pd.isna(events.loc[3, "progress"]) and pd.isna(events.loc[4, "progress"])
    assert events.loc[5, "progress"] == pytest.approx(3e38, rel=1e-6)
    assert events.loc[3, "status"] == "processing"  # the rest of the frame is read as usual
    assert pd.isna(store.agents.iloc[0]["tasks_completed"]) and store.agents.iloc[0]["success_rate"] == 99.0


def test_snapshot_numbers_beyond_their_column_say_so():
    store = EventStore(background=False)
    store.merge_snapshot("dag_steps", [{"run_id": "r1", "step_id": "s1", "status": "failed", "retry_count": 2**40},
                                       {"run_id": "r1", "step_id": "s2", "status": "failed", "retry_count": 3}])
    steps = store.dag_steps.set_index("step_id")
    assert pd.isna(steps.loc["s1", "retry_count"]) and steps.loc["s2", "retry_count"] == 3
    messages = store.errors["message"].tolist()
    assert messages == ["dag_steps snapshot record 0: retry_count 1099511627776 is beyond int32's range"]


def test_lenient_values_are_read_as_values(store):
    frames = [
        _status(1, progress=45, timestamp=1_767_571_200),  # epoch seconds
        _status(2, timestamp="2026-01-05T01:00:00+01:00"),  # an offset
        _status(3, timestamp="2026-01-05T00:00:03"),  # naive = UTC
        json.dumps({"event": "processing_job_failed", "data": {"job_id": "j4", "retry_count": 2.0,
                    "timestamp": "2026-01-05T00:00:04Z"}, "seq": 4}),
    ]
    store.ingest(frames)
    events = store.job_events.set_index("seq")
    assert events.loc[1, "timestamp"] == pd.Timestamp("2026-01-05T00:00:00Z")
    assert events.loc[2, "timestamp"] == pd.Timestamp("2026-01-05T00:00:00Z")
    assert events.loc[3, "timestamp"] == pd.Timestamp("2026-01-05T00:00:03Z")
    assert events.loc[4, "retry_count"] == 2
    assert not (store.errors["kind"] == "field_type").any()


def test_missing_required_fields_and_extra_keys(store):
    frames = [
        json.dumps({"event": "processing_job_status", "data": {"status": "queued"}, "seq": 1}),
        # a server in the wild: run_id and timestamp beside data instead of inside it
        json.dumps({"event": "processing_job_status", "data": {"job_id": "j2", "status": "queued"},
                    "run_id": "r2", "timestamp": "2026-01-05T00:00:02Z", "seq": 2}),
    ]
    store.ingest(frames)
    errors = store.errors
    assert errors["code"].astype(str).tolist() == ["missing_field", "extra_keys"]
    events = store.job_events
    assert len(events) == 2 and pd.isna(events["job_id"].iloc[0])
    assert events["run_id"].iloc[1] == "r2"
    assert events["timestamp"].iloc[1] == pd.Timestamp("2026-01-05T00:00:02Z")
    jobs = store.jobs  # a job without an id has no row
    assert jobs["job_id"].astype(str).tolist() == ["j2"]


def test_ingest_takes_every_kind_of_message(store):
    decoded = decode(_status(3))
    messages = [
        GOOD,
        _status(2).encode(),  # bytes: a binary frame, still read
        decoded,
        Message("processing_job_status", {"job_id": "job-4", "status": "queued"}, 4),
        {"event": "processing_job_status", "data": {"job_id": "job-5", "status": "queued"}, "seq": 5},
        {"event": "processing_job_status", "data": {"job_id": object()}},  # not serialisable
        12345,
    ]
    assert store.ingest(messages) == len(messages)
    assert sorted(store.jobs["job_id"].astype(str)) == ["job-1", "job-2", "job-3", "job-4", "job-5"]
    assert len(store.raw) == len(messages)
    codes = store.errors["code"].astype(str).tolist()
    assert codes.count("binary_frame") == 1 and codes.count("not_json") == 2


def test_add_error_and_gaps():
    store = EventStore(background=False)
    store.add_gap("2026-01-05T00:00:00Z", "2026-01-05T00:05:00Z", "resync incomplete")
    store.add_error("reconnect", "reconnected after 2 attempts", details={"attempts": 2})
    gaps = store.gaps
    assert gaps.to_dict("records") == [{
        "start": pd.Timestamp("2026-01-05T00:00:00Z"), "end": pd.Timestamp("2026-01-05T00:05:00Z"),
        "reason": "resync incomplete",
    }]
    errors = store.errors
    assert errors["kind"].astype(str).tolist() == ["gap", "reconnect"]
    assert errors["details"].iloc[1] == {"attempts": 2}
    with pytest.raises(ConfigurationError, match="unknown error kind 'oops'"):
        store.add_error("oops", "x")
    with pytest.raises(ConfigurationError, match="start"):
        store.add_gap("not a time", None, "x")
    with pytest.raises(ConfigurationError, match="unknown table 'jobz'"):
        store.table("jobz")


def test_data_that_is_no_object_is_kept_and_described_but_feeds_no_table() -> None:
    # issue 16: {"data": "oops"} added an all-null row to job_events, which counted as an event
    store = EventStore(background=False)
    store.ingest([
        '{"event": "processing_job_status", "data": "oops"}',
        '{"event": "processing_job_status", "data": null}',
        '{"event": "processing_job_failed"}',
        # keys sent instead of data (servers in the wild) are still the event's fields
        '{"event": "dag_run_status", "run_id": "run-instead", "status": "running"}',
    ])
    assert store.job_events.empty and store.jobs.empty
    assert len(store.raw) == 4
    described = store.errors[store.errors["kind"] == "malformed"]
    assert len(described) == 4 and described["message"].str.contains("data").all()
    assert list(store.dag_runs["run_id"]) == ["run-instead"]
