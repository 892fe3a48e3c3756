"""Dialects in the sans-I/O session: the autopilot servers' frames as published events (issue 16).

The frames are those of ../shared/spec/servers-in-the-wild.md (and of the project's code for the
events not triggered there), byte for byte where the spec shows them.
"""

from __future__ import annotations

import json

import pytest

from aios_notebook import Dialect, register_dialect
from aios_notebook.protocol.dialects import (
    DIALECTS,
    EventMap,
    detect_dialect,
    fraction_percent,
    get_dialect,
)
from aios_notebook.protocol.session import (
    ClientSession,
    ConnectionInfo,
    Delivered,
    Duplicate,
    GapDetected,
    Malformed,
    ServerNotice,
    Translation,
)

GREETING = '{"event":"connection.established","data":{"message":"Connected to DAG updates"}}'
CREATED = ('{"event":"dag.run.created","data":{"run_id":"5e715961-aa","workflow_name":"test-integration-workflow",'
           '"status":"created","message":"Test workflow created for integration testing"},'
           '"timestamp":"2026-12-06T04:35:18.302137"}')
STEPS = ('{"event":"dag.step.status.updated","data":{"run_id":"5e715961-aa","status":"running","steps":{'
         '"analyze_text":{"status":"success","started_at":"2026-12-06T04:35:18.4","completed_at":"2026-12-06T04:35:19.1",'
         '"retry_count":0,"error":null},"generate_summary":{"status":"running","started_at":"2026-12-06T04:35:19.2",'
         '"completed_at":null,"retry_count":1,"error":null}}},"timestamp":"2026-12-06T04:35:19.302137"}')
DONE = ('{"event":"dag.run.completed","data":{"run_id":"5e715961-aa","status":"success","error":null},'
        '"timestamp":"2026-12-06T04:35:20.000001"}')
STARTED = ('{"event":"email.processing.started","data":{"run_id":"email-1796531721.199748","subject":"Q3 report",'
           '"sender":"alice@example.com","pdf_name":"q3.pdf","pdf_size":400},"timestamp":"2026-12-06T04:35:21.200123"}')
PROGRESS = ('{"event":"email.processing.progress","data":{"run_id":"email-1796531721.199748","status":"success",'
            '"progress":"2/5 steps","current_step":"create_digest"},"timestamp":"2026-12-06T04:35:21.300000"}')
ERROR = ('{"event":"email.processing.error","data":{"run_id":"email-1796531721.199748","error":"Invalid isoformat '
         'string: \'Q3 report\'","email_subject":"Q3 report"},"timestamp":"2026-12-06T04:35:21.206396"}')
COMPLETED_FAILED = ('{"event":"email.processing.completed","data":{"run_id":"email-2","status":"failed","summary":null,'
                    '"processing_time_ms":5,"email_subject":"x","workflow_url":"/api/dag-runs/3da6"},'
                    '"timestamp":"2026-12-06T04:35:22.000000"}')
COMPLETED = COMPLETED_FAILED.replace('"status":"failed","summary":null', '"status":"success","summary":"A digest"')
DAG_GREETING = '{"event":"connected","message":"WebSocket connected"}'
DAG_STATUS = ('{"event":"dag_run_status","run_id":"447dccc7","data":{"dag_id":"Simple Test Workflow","run_id":"447dccc7",'
              '"status":"success","steps":{"test_step":{"step_id":"test_step","status":"success",'
              '"start_time":"2025-05-28T23:32:50.964278","end_time":"2025-05-28T23:32:50.964281","retry_count":0,'
              '"max_retries":3,"error":null,"result":null,"metadata":{"name":"Test Step"},"duration_seconds":3e-06}},'
              '"start_time":null,"end_time":null,"total_retries":0,"error":null,"metadata":{},"duration_seconds":null},'
              '"timestamp":81234.56}')
RECEIVED = 1796531730.0  # epoch seconds: 2026-12-06T...


def _session(dialect: str = "auto", types: tuple[str, ...] = ("processing_jobs", "dags")) -> ClientSession:
    session = ClientSession(dialect=dialect)
    session.subscribe(list(types))
    session.connection_opened(None)
    return session


def _published(events: list) -> list[tuple[str, dict]]:
    return [(e.message.event, e.message.data) for e in events if isinstance(e, Delivered)]


def test_the_greeting_picks_each_dialect() -> None:
    assert detect_dialect(GREETING).name == "autopilot"
    assert detect_dialect(DAG_GREETING).name == "autopilot-dag-updates"
    assert detect_dialect('{"event":"connected","data":{"client_id":"c1","protocol":"aios-v2"}}').name == "aios-v2"
    assert detect_dialect('{"event":"processing_job_status","data":{}}') is None
    session = _session()
    events = session.receive(GREETING, RECEIVED)
    info = next(e for e in events if isinstance(e, ConnectionInfo))
    assert info.protocol == "autopilot" and session.dialect is not None and session.dialect.name == "autopilot"
    assert not any(isinstance(e, Malformed) for e in events)


def test_autopilot_dag_events_become_runs_steps_and_progress() -> None:
    session = _session()
    session.receive(GREETING, RECEIVED)
    created = _published(session.receive(CREATED, RECEIVED))
    assert created == [("dag_run_status", {"run_id": "5e715961-aa", "dag_id": "test-integration-workflow",
                                           "status": "queued", "started_at": "2026-12-06T04:35:18.302137Z",
                                           "timestamp": "2026-12-06T04:35:18.302137Z"})]
    events = session.receive(STEPS, RECEIVED)
    assert not any(isinstance(e, Malformed) for e in events)
    published = _published(events)
    assert [name for name, _ in published] == ["dag_run_status", "step_status", "step_status", "dag_run_progress"]
    steps = {d["step_id"]: d for name, d in published if name == "step_status"}
    assert steps["analyze_text"]["status"] == "success" and steps["analyze_text"]["end_time"] == "2026-12-06T04:35:19.1"
    assert steps["generate_summary"]["retry_count"] == 1 and "end_time" not in steps["generate_summary"]
    progress = published[-1][1]
    assert (progress["total_steps"], progress["completed_steps"], progress["running_steps"],
            progress["pending_steps"], progress["completion_percentage"]) == (2, 1, 1, 0, 50.0)
    assert _published(session.receive(DONE, RECEIVED))[0][1]["status"] == "success"


def test_autopilot_email_runs_become_jobs_of_type_email() -> None:
    session = _session()
    session.receive(GREETING, RECEIVED)
    started = _published(session.receive(STARTED, RECEIVED))[0]
    assert started[0] == "processing_job_status"
    assert started[1] | {} == {"job_id": "email-1796531721.199748", "run_id": "email-1796531721.199748",
                               "type": "email", "status": "processing", "progress": 0.0, "filename": "q3.pdf",
                               "started_at": "2026-12-06T04:35:21.200123Z",
                               "timestamp": "2026-12-06T04:35:21.200123Z"}
    progress = _published(session.receive(PROGRESS, RECEIVED))[0][1]
    assert progress["progress"] == 40.0 and progress["current_step"] == "create_digest" and progress["status"] == "processing"
    failed = _published(session.receive(ERROR, RECEIVED))[0]
    assert failed[0] == "processing_job_failed" and failed[1]["error"].startswith("Invalid isoformat")
    assert failed[1]["failed_at"] == "2026-12-06T04:35:21.206396Z"
    # .completed carries the workflow's status: "failed" is a failed job, "success" a completed one
    assert _published(session.receive(COMPLETED_FAILED, RECEIVED))[0][0] == "processing_job_failed"
    name, data = _published(session.receive(COMPLETED, RECEIVED))[0]
    assert name == "processing_job_completed" and data["status"] == "completed" and data["result"] == {"summary": "A digest"}


def test_unmapped_events_are_described_once_per_name_and_kept() -> None:
    session = _session()
    session.receive(GREETING, RECEIVED)
    odd = '{"event":"dag.run.archived","data":{"run_id":"r"}}'
    first = session.receive(odd, RECEIVED)
    second = session.receive(odd, RECEIVED)
    other = session.receive('{"event":"email.queue.full","data":{}}', RECEIVED)
    assert [type(e).__name__ for e in first] == ["Translation", "Malformed"]
    assert "dag.run.archived" in first[1].decoded.describe()
    assert [type(e).__name__ for e in second] == ["Translation"]  # kept for raw, not described again
    assert second[0].translated.event == "dag.run.archived" and second[0].translated.text == odd
    assert any(isinstance(e, Malformed) for e in other)


def test_the_servers_own_ping_answer_and_replies_are_not_events() -> None:
    session = _session("autopilot")
    assert session.data_to_send() == []  # no auth and no published subscribe for autopilot
    assert _published(session.receive("pong", RECEIVED)) == []
    assert not any(isinstance(e, Malformed) for e in session.receive("pong", RECEIVED))
    dag = _session("autopilot-dag-updates")
    events = dag.receive('{"event":"error","message":"DAG run X not found"}', RECEIVED)
    notice = next(e for e in events if isinstance(e, ServerNotice))
    assert notice.message == "DAG run X not found" and not any(isinstance(e, Malformed) for e in events)
    assert not any(isinstance(e, Malformed) for e in dag.receive('{"event":"ping"}', RECEIVED))
    assert dag.heartbeat_interval is not None  # a server that pings: its silence now means something


def test_autopilot_keepalive_is_the_text_ping_and_dag_updates_gets_none() -> None:
    clock = [100.0]
    session = ClientSession(dialect="autopilot", clock=lambda: clock[0])
    session.connection_opened(None)
    session.tick()
    assert session.data_to_send() == []
    clock[0] += 20.5
    session.tick()
    assert session.data_to_send() == ["ping"]  # text, never a binary frame
    clock[0] += 60  # no pong for 60 s: the connection is dead (a zombie after a binary frame)
    assert session.check_alive() is not None
    dag = ClientSession(dialect="autopilot-dag-updates", clock=lambda: clock[0])
    dag.connection_opened(None)
    clock[0] += 100
    dag.tick()
    assert dag.data_to_send() == []  # any text but JSON objects kills that app's handler


def test_dag_updates_subscribes_its_own_way_and_its_loop_clock_is_no_time() -> None:
    session = ClientSession(dialect="autopilot-dag-updates")
    session.subscribe(["dags"])
    session.subscribe_dag_run("447dccc7")
    session.connection_opened(None)
    assert [json.loads(f) for f in session.data_to_send()] == [{"action": "subscribe", "run_id": "447dccc7"}]
    session.subscribe_dag_run("run-2")
    assert [json.loads(f) for f in session.data_to_send()] == [{"action": "subscribe", "run_id": "run-2"}]
    assert session.receive(DAG_GREETING, RECEIVED)[1].protocol == "autopilot-dag-updates"
    events = session.receive(DAG_STATUS, RECEIVED)
    published = _published(events)
    assert [n for n, _ in published] == ["dag_run_status", "step_status", "dag_run_progress"]
    run = published[0][1]
    assert run["dag_id"] == "Simple Test Workflow" and run["run_id"] == "447dccc7" and run["status"] == "success"
    assert run["timestamp"].startswith("2026-12-")  # the receive time stands in for the loop clock
    assert published[1][1]["duration"] == pytest.approx(0.003)  # duration_seconds -> ms
    problems = [e for e in events if isinstance(e, Malformed)]
    assert len(problems) == 1 and "timestamp" in problems[0].decoded.describe()
    assert "no epoch" in problems[0].decoded.describe()
    again = session.receive(DAG_STATUS, RECEIVED)
    assert not any(isinstance(e, Malformed) for e in again)  # one errors row naming the field, not one a frame


def test_a_server_that_ignores_subscriptions_is_filtered_by_the_session() -> None:
    session = _session("auto", types=("dags",))
    session.receive(GREETING, RECEIVED)
    assert _published(session.receive(STARTED, RECEIVED)) == []  # jobs were not asked for
    assert [n for n, _ in _published(session.receive(CREATED, RECEIVED))] == ["dag_run_status"]
    # the frame is still handed on (raw keeps every frame), with no events
    translation = session.receive(STARTED, RECEIVED)[0]
    assert isinstance(translation, Translation) and translation.translated.messages == ()
    filtered = ClientSession(dialect="autopilot")
    filtered.subscribe(["processing_jobs"], {"run_id": "email-2"})
    filtered.connection_opened(None)
    assert _published(filtered.receive(STARTED, RECEIVED)) == []
    assert len(_published(filtered.receive(COMPLETED, RECEIVED))) == 1


def test_every_reconnect_to_a_server_without_resync_is_a_gap() -> None:
    session = _session()
    session.receive(GREETING, RECEIVED)
    session.receive(CREATED, RECEIVED)
    gaps = []
    for restart in range(3):
        session.connection_closed(1012)
        session.connection_opened(None)
        events = session.receive(GREETING, RECEIVED + 10 * (restart + 1))
        gaps += [e for e in events if isinstance(e, GapDetected)]
    assert len(gaps) == 3
    assert all(g.reason == "reconnected to a server without resync" for g in gaps)
    assert gaps[0].start is not None and gaps[0].end is not None and gaps[0].end > gaps[0].start


def test_a_resync_replay_from_before_since_seq_is_duplicates_not_a_restart() -> None:
    session = ClientSession(dialect="aios-v2")
    session.subscribe(["processing_jobs"])
    session.connection_opened("token-123456")
    caps = {"client_id": "c", "capabilities": ["seq", "resync"], "heartbeat_interval": 30}
    session.receive(json.dumps({"event": "connected", "data": caps}))

    def job(seq: int) -> str:
        return json.dumps({"event": "processing_job_status", "seq": seq,
                           "data": {"job_id": f"j{seq}", "status": "processing", "timestamp": "2026-01-01T00:00:00Z"}})

    for seq in range(1, 11):
        session.receive(job(seq))
    session.connection_closed(1006)
    session.connection_opened("token-123456")
    session.receive(json.dumps({"event": "connected", "data": caps}))
    assert any('"since_seq":10' in f for f in session.data_to_send())
    # an overlapping replay: 8, 9, 10 were delivered before; 11, 12 are new
    kinds = [type(e).__name__ for seq in (8, 9, 10, 11, 12) for e in session.receive(job(seq))]
    assert kinds == ["Duplicate", "Duplicate", "Duplicate", "Delivered", "Delivered"]
    events = session.receive(json.dumps({"event": "resync_complete", "data": {"from_seq": 8, "to_seq": 12,
                                                                              "replayed": 5, "complete": True}}))
    assert not any(isinstance(e, GapDetected) for e in events)
    assert session.last_seq == 12


def test_a_new_stream_id_is_a_restart_for_certain_and_the_same_one_never() -> None:
    session = ClientSession(dialect="aios-v2")
    session.subscribe(["processing_jobs"])
    session.connection_opened("token-123456")

    def connected(stream: str) -> str:
        return json.dumps({"event": "connected", "data": {"client_id": "c", "capabilities": ["seq", "resync"],
                                                          "stream_id": stream}})

    def job(seq: int) -> str:
        return json.dumps({"event": "processing_job_status", "seq": seq,
                           "data": {"job_id": f"j{seq}", "status": "queued", "timestamp": "2026-01-01T00:00:00Z"}})

    assert session.receive(connected("s1"))[0].stream_id == "s1"
    for seq in range(1, 6):
        session.receive(job(seq))
    session.connection_closed(1001)
    session.connection_opened("token-123456")
    session.receive(connected("s2"))  # a new process: its seqs start again, nothing to resync
    assert not any("resync" in f for f in session.data_to_send())
    events = session.receive(job(1))
    assert any(isinstance(e, GapDetected) and "restarted" in e.reason for e in events)
    assert any(isinstance(e, Delivered) for e in events)
    session.connection_closed(1006)
    session.connection_opened("token-123456")
    session.receive(connected("s2"))
    assert any('"since_seq":1' in f for f in session.data_to_send())
    assert isinstance(session.receive(job(1))[0], Duplicate)


def test_register_dialect_maps_another_server_in_a_cell() -> None:
    mine = Dialect(
        name="acme-jobs",
        greeting="hello",
        events={"job.done": EventMap("processing_job_completed", rename={"job_id": "id"},
                                     values={"status": "completed"})},
        payload="body",
        timestamp="ts",
        auth=False,
        server_filters=False,
        resync=False,
    )
    try:
        register_dialect(mine)
        assert get_dialect("acme-jobs") is mine
        session = _session()
        assert session.receive('{"event":"hello","body":{}}', RECEIVED)[1].protocol == "acme-jobs"
        published = _published(session.receive('{"event":"job.done","body":{"id":"j1","type":"pdf"},"ts":1796531700}'))
        assert published == [("processing_job_completed", {"type": "pdf", "job_id": "j1", "status": "completed",
                                                            "completed_at": published[0][1]["timestamp"],
                                                            "timestamp": "2026-12-06T04:35:00.000000Z"})]
    finally:
        DIALECTS.pop("acme-jobs", None)
    with pytest.raises(ValueError, match="no published event"):
        Dialect(name="bad", events={"x": EventMap("not_an_event")})
    with pytest.raises(ValueError, match="dialect must be one of"):
        get_dialect("autopilott")


def test_fraction_percent() -> None:
    assert fraction_percent("2/5 steps") == 40.0
    assert fraction_percent("0/0 steps") is None
    assert fraction_percent(55) == 55
    assert fraction_percent("half") == "half"
