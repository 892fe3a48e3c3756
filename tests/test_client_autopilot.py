"""The client against the AIOS v2 backend's own dialects, over 127.0.0.1 (issue 16).

``tests/autopilot_server.py`` plays the bluelabel-autopilot apps exactly as
../shared/spec/servers-in-the-wild.md records them: these tests are what "against the real AIOS
backend, typed tables get their rows" means for the kit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator

import pytest
from autopilot_server import AutopilotServer

from aios_notebook import AIOSClient, AuthError
from aios_notebook.protocol.dialects import Keepalive, get_dialect
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.3, "jitter": 0.0, "healthy_after": 0.2}


@pytest.fixture
def main_app() -> Iterator[AutopilotServer]:
    with AutopilotServer(app="main", step_delay=0.05, email_steps=3) as server:
        yield server


@pytest.fixture
def dag_app() -> Iterator[AutopilotServer]:
    with AutopilotServer(app="dag-updates", step_delay=0.05, keepalive=0.2) as server:
        yield server


def _client(server: AutopilotServer, **options) -> AIOSClient:
    return AIOSClient(server.url, None, store=EventStore(), **{**FAST, **options})


def test_autopilot_runs_and_email_jobs_land_in_the_typed_tables(main_app: AutopilotServer) -> None:
    with _client(main_app) as client:
        client.wait_for(lambda s: client.server_info is not None, 10)
        assert client.dialect == "autopilot" and client.server_info.protocol == "autopilot"
        run_id = main_app.create_sample_workflow()
        client.wait_for(lambda s: run_id in set(s.dag_runs["run_id"]), 10)
        client.wait_for(lambda s: s.dag_runs.set_index("run_id").loc[run_id, "status"] == "success", 10)
        email = main_app.run_email(outcome="completed")
        failed = main_app.run_email(subject="Q3 report", outcome="error")
        store = client.store
        client.wait_for(lambda s: {email, failed} <= set(s.jobs["job_id"]), 10)
        runs = store.dag_runs.set_index("run_id")
        assert runs.loc[run_id, "dag_id"] == "test-integration-workflow"
        steps = store.dag_steps
        mine = steps[steps["run_id"] == run_id]
        assert set(mine["step_id"]) == {"analyze_text", "generate_summary"} and set(mine["status"]) == {"success"}
        assert runs.loc[run_id, "total_steps"] == 2 and runs.loc[run_id, "completed_steps"] == 2
        jobs = store.jobs.set_index("job_id")
        assert jobs.loc[email, "type"] == "email" and jobs.loc[email, "status"] == "completed"
        assert jobs.loc[failed, "status"] == "failed" and "isoformat" in jobs.loc[failed, "error"]
        events = store.job_events
        progress = events[(events["job_id"] == email) & events["progress"].notna()]["progress"]
        assert progress.max() == 100.0 and 0 < progress.iloc[1] < 100  # "1/3 steps" became a number
        # raw keeps every frame as received, under the server's own names; mapped frames make no errors
        raw = store.raw
        assert set(main_app.sent_events()) <= set(raw["event"].dropna())
        assert "dag.step.status.updated" in set(raw["event"]) and "email.processing.started" in set(raw["event"])
        sent = {text for _, text in main_app.sent}
        assert sent <= set(raw["text"])
        assert store.errors[store.errors["kind"].isin(["malformed", "field_type"])].empty
        # the server ignores auth and subscribe, and never gets a binary frame from us
        assert client.state == "connected"
        assert main_app.binary_count() == 0
        assert not any('"auth"' in t for t in main_app.text_frames())  # token=None: no auth at all


def test_types_and_filters_apply_although_the_server_ignores_them(main_app: AutopilotServer) -> None:
    with _client(main_app, types=["dags"]) as client:
        client.wait_for(lambda s: client.server_info is not None, 10)
        email = main_app.run_email(outcome="completed")
        run_id = main_app.create_sample_workflow()
        client.wait_for(lambda s: run_id in set(s.dag_runs["run_id"]), 10)
        store = client.store
        assert email not in set(store.jobs["job_id"]) and store.job_events.empty
        assert "email.processing.started" in set(store.raw["event"])  # still kept as received


def test_unmapped_events_are_described_once_per_name(main_app: AutopilotServer) -> None:
    with _client(main_app) as client:
        client.wait_for(lambda s: client.server_info is not None, 10)
        for _ in range(5):
            main_app.broadcast("dag.run.archived", {"run_id": "r1"})
        main_app.broadcast("workflow.paused", {"run_id": "r1"})
        client.wait_for(lambda s: (s.raw["event"] == "workflow.paused").any(), 10)
        errors = client.store.errors
        described = errors[errors["kind"] == "malformed"]["message"]
        assert sum("dag.run.archived" in m for m in described) == 1
        assert sum("workflow.paused" in m for m in described) == 1
        assert (client.store.raw["event"] == "dag.run.archived").sum() == 5


def test_three_restarts_leave_three_gaps_and_no_reconnect_storm(main_app: AutopilotServer) -> None:
    with _client(main_app) as client:
        client.wait_for(lambda s: client.server_info is not None, 10)
        main_app.create_sample_workflow()
        client.wait_for(lambda s: len(s.dag_runs) == 1, 10)
        for restart in range(3):
            main_app.restart(downtime=0.2)
            client.wait_for(lambda s, n=restart + 1: client.stats.reconnects >= n and client.state == "connected"
                            and len(s.gaps) >= n, 15)
        assert len(client.store.gaps) == 3
        assert client.stats.reconnects == 3
        assert all(client.store.gaps["reason"] == "reconnected to a server without resync")
        assert client.stats.last_error is None  # cleared once the reconnect succeeded


def test_the_keepalive_is_the_text_ping_and_a_zombie_connection_is_left(main_app: AutopilotServer) -> None:
    fast = dataclasses.replace(get_dialect("autopilot"), name="autopilot-fast-keepalive",
                               keepalive=Keepalive(send="ping", reply="pong", every=0.2))
    with _client(main_app, dialect=fast) as client:
        client.wait_for(lambda s: main_app.text_frames().count("ping") >= 3, 10)
        assert main_app.binary_count() == 0
        assert client.stats.reconnects == 0 and client.store.errors[client.store.errors["kind"] == "malformed"].empty
        # a binary frame turns the connection into a silent zombie: our pings go unanswered and the
        # client reconnects instead of waiting forever for events that never come
        ws = client._engine._ws
        assert ws is not None and client._loop is not None
        asyncio.run_coroutine_threadsafe(ws.send(b"\x00"), client._loop).result(5)
        client.wait_for(lambda s: client.stats.reconnects >= 1 and client.state == "connected", 15)
        run_id = main_app.create_sample_workflow()
        client.wait_for(lambda s: run_id in set(s.dag_runs["run_id"]), 10)


def test_dag_updates_subscribes_its_way_and_its_clock_is_one_errors_row(dag_app: AutopilotServer) -> None:
    run_id = dag_app.create_run(steps=["extract", "summarise"], announce=False)
    with _client(dag_app, types=["dags"]) as client:
        client.subscribe_dag_run(run_id)
        client.wait_for(lambda s: client.dialect == "autopilot-dag-updates" and dag_app.subscribes() == [run_id], 10)
        client.wait_for(lambda s: run_id in set(s.dag_runs["run_id"]), 10)
        dag_app.run_to_end(run_id)
        client.wait_for(lambda s: s.dag_runs.set_index("run_id").loc[run_id, "status"] == "success", 10)
        steps = client.store.dag_steps
        assert set(steps[steps["run_id"] == run_id]["step_id"]) == {"extract", "summarise"}
        errors = client.store.errors
        clock_rows = errors[errors["message"].str.contains("no epoch", na=False)]
        assert len(clock_rows) == 1 and clock_rows.iloc[0]["kind"] == "field_type"
        assert "timestamp" in clock_rows.iloc[0]["message"]
        # its timestamps are receive times, not 1970
        assert (client.store.dag_runs["updated_at"].dt.year >= 2026).all()
        assert not any(t.strip() == "ping" for t in dag_app.text_frames())  # text would kill its handler
        assert dag_app.binary_count() == 0


def test_a_handshake_refused_on_a_wrong_path_says_so(main_app: AutopilotServer) -> None:
    url = main_app.url.replace("/ws", "/websocket")
    client = AIOSClient(url, "a-long-enough-token", store=EventStore(), **FAST)
    with client:
        with pytest.raises(AuthError, match=r"HTTP 403: wrong path or token \(path '/websocket'"):
            client.wait_for(lambda s: False, 10)
        assert client.state == "auth_failed" and client.stats.reconnects == 0
        assert "a-long-enough-token" not in client.stats.last_error


def test_a_one_letter_token_does_not_garble_messages(main_app: AutopilotServer) -> None:
    with pytest.warns(Warning, match="fewer than 8 characters"):
        client = AIOSClient(main_app.url.replace("/ws", "/nope"), "t", store=EventStore(), **FAST)
    with client, pytest.raises(AuthError) as caught:
        client.wait_for(lambda s: False, 10)
    assert "wrong path or token" in str(caught.value) and "***" not in str(caught.value).replace("?", "")


def test_the_kits_own_server_is_still_aios_v2() -> None:
    sim = Simulator(seed=5, speed=60).start_in_thread()
    try:
        client = AIOSClient(sim.url, sim.token, store=EventStore(), **FAST)
        with client:
            client.wait_for(lambda s: len(s.job_events) > 0, 15)
            assert client.dialect == "aios-v2" and client.server_info.protocol == "aios-v2"
            assert client.server_info.stream_id == sim.hub.stream_id
            assert json.loads(client.store.raw["text"].iloc[0])["event"] == "connected"
    finally:
        sim.stop()
