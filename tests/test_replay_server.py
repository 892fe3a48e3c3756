"""The replay server: a real recording served over the real protocol to real clients (127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import CorruptLog
from aios_notebook.recording import RecordingWriter
from aios_notebook.server import Simulator
from aios_notebook.server.replay import ReplayServer
from aios_notebook.store import EventStore
from aios_notebook.store.schema import TABLES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EventStore]:
    """A recording of the reference server, and the store the recording client built live."""
    path = tmp_path_factory.mktemp("replay") / "rec.jsonl"
    with_sim = Simulator(speed=900, heartbeat=0.5, seed=3).start_in_thread()
    try:
        client = AIOSClient(with_sim.url, with_sim.token, snapshots=False)
        recorder = client.record(path)
        client.start()
        try:
            client.wait_for(lambda store: len(store.jobs) >= 30, timeout=60)
        finally:
            client.stop()
            recorder.stop()
    finally:
        with_sim.stop()
    return path, client.store


@pytest.fixture
def replay(recorded: tuple[Path, EventStore]) -> Iterator[ReplayServer]:
    server = ReplayServer(recorded[0], speed=20, heartbeat=0.2, token="replay-token-1").start_in_thread()
    yield server
    server.stop()


@contextmanager
def _open(server: ReplayServer, token: str = "replay-token-1", **subscribe: Any) -> Iterator[ClientConnection]:
    # max_queue=None: read everything as it comes, so closing never waits behind unread frames
    with connect(server.url, open_timeout=10, close_timeout=2, max_queue=None) as ws:
        ws.send(json.dumps({"event": "auth", "data": {"token": token}}))
        if subscribe:
            ws.send(json.dumps({"event": "subscribe", "data": subscribe}))
        yield ws


def _messages(ws: ClientConnection, until: Any, limit: int = 100_000) -> list[dict[str, Any]]:
    """Read messages until ``until(message)`` is true (the server's pace bounds the wait)."""
    seen = []
    for _ in range(limit):
        message = json.loads(ws.recv(timeout=20))
        seen.append(message)
        if until(message):
            return seen
    raise AssertionError(f"no matching message in {limit}")


def test_a_client_of_the_replay_builds_the_recorded_tables(replay: ReplayServer, recorded: tuple[Path, EventStore]) -> None:
    live = recorded[1]
    client = AIOSClient(replay.url, replay.token, snapshots=False)
    client.start()
    try:
        client.wait_for(lambda store: replay.finished and store.counts["job_events"] == live.counts["job_events"]
                        and store.counts["agent_events"] == live.counts["agent_events"], timeout=60)
    finally:
        client.stop()
    for name in TABLES:
        if name == "raw":  # its own connection's frames, and the replay server's seq numbers
            continue
        ignore = [c for c in ("seq", "received_at") if c in live.table(name).columns]
        expected, got = live.table(name).drop(columns=ignore), client.store.table(name).drop(columns=ignore)
        pd.testing.assert_frame_equal(got, expected, obj=name, check_categorical=False)
    assert replay.sent == live.counts["raw"] - replay.source.skipped


def test_a_wrong_token_is_refused_like_the_reference_server_does(replay: ReplayServer) -> None:
    with _open(replay, token="not-the-token") as ws:
        (error,) = _messages(ws, lambda m: m["event"] == "error")[-1:]
        assert error["data"]["code"] == "auth_failed"
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None and info.value.rcvd.code == 4401


def test_subscriptions_filters_seq_and_heartbeat(replay: ReplayServer, recorded: tuple[Path, EventStore]) -> None:
    agent = str(recorded[1].agents["agent_id"].iloc[0])
    with _open(replay, types=["agents"], filters={"agent_ids": [agent]}) as ws:
        messages = _messages(ws, lambda m: m["event"] == "agent_task_completed", limit=50_000)
        messages += _messages(ws, lambda m: m["event"] == "ping")
    stream = [m for m in messages if "seq" in m]
    assert stream and {m["event"] for m in stream} <= {"agent_status_update", "agent_task_completed", "agent_error", "error"}
    assert {m["data"]["agent_id"] for m in stream if m["event"] != "error"} == {agent}
    seqs = [m["seq"] for m in stream]
    assert seqs == sorted(set(seqs))
    assert messages[0]["event"] == "connected" and messages[0]["data"]["capabilities"] == ["seq", "resync", "pong"]


def test_resync_replays_what_a_client_missed(replay: ReplayServer) -> None:
    with _open(replay, types=["processing_jobs"]) as ws:
        first = [m for m in _messages(ws, lambda m: m.get("seq", 0) >= 1 and m["event"].startswith("processing_job"))
                 if "seq" in m]
    last_seq = first[-1]["seq"]
    # meanwhile the replay goes on; a new connection asks for what it missed
    with _open(replay, types=["processing_jobs"]) as ws:
        ws.send(json.dumps({"event": "resync", "data": {"since_seq": last_seq}}))
        messages = _messages(ws, lambda m: m["event"] == "resync_complete")
    done = messages[-1]["data"]
    assert done["complete"] is True and done["from_seq"] == last_seq + 1
    replayed = [m for m in messages if "seq" in m and m["seq"] <= done["to_seq"]]
    assert len(replayed) >= done["replayed"] > 0
    assert all(m["seq"] > last_seq for m in replayed)


def test_the_legacy_dag_run_subscription_gets_the_run_state_at_once(replay: ReplayServer, recorded: tuple[Path, EventStore]) -> None:
    with _open(replay, types=["agents"]) as ws:
        _messages(ws, lambda m: m["event"] == "agent_status_update")  # the replay has started
        run_id = next(iter(replay.source.runs))
        ws.send(json.dumps({"event": "subscribe_dag_run", "data": {"run_id": run_id}}))
        status = _messages(ws, lambda m: m["event"] == "dag_run_status" and m["data"]["run_id"] == run_id)[-1]
        progress = _messages(ws, lambda m: m["event"] == "dag_run_progress" and m["data"]["run_id"] == run_id)[-1]
        ws.send(json.dumps({"event": "subscribe_dag_run", "data": {"run_id": "no-such-run"}}))
        error = _messages(ws, lambda m: m["event"] == "error" and m["data"]["code"] == "not_found")[-1]
    assert status["data"]["dag_id"] and "seq" not in status  # a snapshot for this connection only
    assert progress["data"]["total_steps"] >= 1
    assert "no-such-run" in error["data"]["message"]


def test_rest_answers_from_the_replayed_state(replay: ReplayServer) -> None:
    with _open(replay, types=["agents", "dags"]) as ws:
        _messages(ws, lambda m: m["event"] == "dag_run_progress")

    def get(path: str, form: dict[str, str] | None = None) -> tuple[int, Any]:
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(replay.http_url + path, data=body,
                                         headers={"Authorization": f"Bearer {replay.token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    status, agents = get("/api/agents")
    assert status == 200 and agents["total"] >= 1 and agents["items"][0]["agent_id"]
    status, runs = get("/api/workflows/dag-runs")
    assert status == 200 and runs["total"] >= 1
    status, run = get(f"/api/workflows/dag-runs/{runs['items'][0]['run_id']}")
    assert status == 200 and isinstance(run["steps"], list)
    status, dashboard = get("/api/analytics/dashboard")
    assert status == 200 and "total_processed" in dashboard
    status, refused = get("/api/workflows/from-url", {"url": "https://example.test/doc"})
    assert status == 501 and "replays a recording" in refused["message"]


def test_loop_starts_the_recording_again(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for n in range(20):
            frame = {"event": "agent_status_update", "seq": n + 1,
                     "data": {"agent_id": "a1", "name": "A", "status": "working", "progress": n,
                              "timestamp": f"2026-01-05T00:00:{n:02d}.000Z"}}
            writer.write(json.dumps(frame), 1_767_571_200.0 + n * 0.01)
    server = ReplayServer(path, speed=1, loop=True, heartbeat=0.2).start_in_thread()
    try:
        with _open(server, server.token, types=["agents"]) as ws:
            stream = [m for m in _messages(ws, lambda m: m.get("seq", 0) >= 50) if "seq" in m]
    finally:
        server.stop()
    assert server.source.rounds >= 2
    assert [m["data"]["progress"] for m in stream[:40]] == list(range(20)) * 2


def test_a_damaged_recording_is_refused_unless_skipping(tmp_path: Path, recorded: tuple[Path, EventStore]) -> None:
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(recorded[0].read_bytes()[:-40])
    with pytest.raises(CorruptLog, match="torn last line") as info:
        ReplayServer(torn)
    assert info.value.path == str(torn)
    with pytest.warns(Warning, match="torn last line"):
        server = ReplayServer(torn, on_error="skip")
    assert server.source.frames == recorded[1].counts["raw"] - 1


def test_the_replay_command_serves_until_stopped(recorded: tuple[Path, EventStore]) -> None:
    env = {**os.environ, "AIOS_TOKEN": "cli-replay-token"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "replay", str(recorded[0]), "--port", "0", "--speed", "50",
         "--heartbeat", "0.2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        found = re.search(r"on (ws://127\.0\.0\.1:\d+/ws)", line)
        assert found, line
        client = AIOSClient(found.group(1), "cli-replay-token", snapshots=False)
        client.start()
        try:
            client.wait_for(lambda store: len(store.jobs) >= 5, timeout=60)
        finally:
            client.stop()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "cli-replay-token" not in line + stderr
