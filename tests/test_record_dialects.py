"""Recording, loading and replaying keep the dialect (issue 16): a recording of the AIOS v2
backend's own app loads into the tables live ingestion built, and replays as that server sent it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from autopilot_server import AutopilotServer

from aios_notebook import AIOSClient
from aios_notebook.server.replay import ReplayServer
from aios_notebook.server.replay_dialect import (
    DialectReplayServer,
    open_replay,
    recording_dialect,
)
from aios_notebook.store import EventStore

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.3, "jitter": 0.0, "healthy_after": 0.2}


def _typed(store: EventStore) -> dict[str, pd.DataFrame]:
    """The typed tables in a comparable form (no receive times: a replay receives anew)."""
    out = {}
    for name, key in (("jobs", "job_id"), ("dag_runs", "run_id"), ("dag_steps", ["run_id", "step_id"])):
        table = getattr(store, name)
        drop = [c for c in ("received_at", "seq", "snapshot", "updated_at") if c in table.columns]
        out[name] = table.drop(columns=drop).sort_values(key).reset_index(drop=True)
    events = store.job_events.drop(columns=["received_at"])
    out["job_events"] = events.reset_index(drop=True)
    return out


def _record(tmp_path: Path) -> tuple[Path, EventStore]:
    path = tmp_path / "autopilot.jsonl"
    with AutopilotServer(app="main", step_delay=0.03, email_steps=3) as server, \
            AIOSClient(server.url, None, store=EventStore(), snapshots=False, **FAST) as client:
        client.wait_for(lambda s: client.dialect == "autopilot", 10)
        recorder = client.record(path)
        run_id = server.create_sample_workflow()
        email = server.run_email(outcome="completed")
        failed = server.run_email(outcome="error")
        server.broadcast("dag.run.archived", {"run_id": run_id})
        client.wait_for(lambda s: {email, failed} <= set(s.jobs["job_id"])
                        and (s.raw["event"] == "dag.run.archived").any()
                        and s.dag_runs.set_index("run_id").loc[run_id, "status"] == "success", 15)
        recorder.stop()
        return path, client.store


def test_a_recording_keeps_its_dialect_and_loads_as_live(tmp_path: Path) -> None:
    path, live = _record(tmp_path)
    header = json.loads(path.read_text().splitlines()[0])
    assert header["dialect"] == "autopilot"
    assert recording_dialect(path).name == "autopilot"
    loaded = EventStore.load(path)
    live_tables, loaded_tables = _typed(live), _typed(loaded)
    for name in ("jobs", "dag_runs", "dag_steps"):
        assert len(loaded_tables[name]) > 0, name
    # the recording started after the greeting: what live ingestion made from the recorded frames
    for name in ("jobs", "dag_runs", "dag_steps"):
        pd.testing.assert_frame_equal(loaded_tables[name], live_tables[name], check_categorical=False)
    assert set(loaded.raw["event"].dropna()) >= {"dag.run.created", "email.processing.started"}
    described = loaded.errors[loaded.errors["kind"] == "malformed"]["message"]
    assert len(described) == 1 and "dag.run.archived" in described.iloc[0]  # the unmapped one, once
    # a recording without the header's word is recognised by its greeting
    lines = path.read_text().splitlines()
    bare = tmp_path / "bare.jsonl"
    first = json.loads(lines[0])
    first.pop("dialect")
    greeting = json.dumps({"t": first["started_at"], "frame": json.dumps(
        {"event": "connection.established", "data": {"message": "Connected to DAG updates"}})})
    bare.write_text("\n".join([json.dumps(first), greeting, *lines[1:]]) + "\n")
    assert recording_dialect(bare).name == "autopilot"
    pd.testing.assert_frame_equal(_typed(EventStore.load(bare))["jobs"], loaded_tables["jobs"], check_categorical=False)


def test_replay_serves_a_foreign_recording_as_the_server_sent_it(tmp_path: Path) -> None:
    path, _live = _record(tmp_path)
    loaded = EventStore.load(path)
    server = open_replay(path, speed=50)
    assert isinstance(server, DialectReplayServer) and server.dialect.name == "autopilot"
    with server, AIOSClient(server.url, None, store=EventStore(), snapshots=False, **FAST) as client:
        client.wait_for(lambda s: server.finished and len(s.jobs) == len(loaded.jobs)
                        and len(s.dag_steps) == len(loaded.dag_steps), 20)
        assert client.dialect == "autopilot"
        replayed = _typed(client.store)
        for name in ("jobs", "dag_runs", "dag_steps"):
            pd.testing.assert_frame_equal(replayed[name], _typed(loaded)[name], check_categorical=False)
        sent_texts = set(client.store.raw["text"])
        assert set(loaded.raw["text"]) - sent_texts <= set()  # every recorded frame, verbatim


def test_a_published_recording_still_replays_on_the_reference_server(tmp_path: Path) -> None:
    from aios_notebook.server import Simulator

    path = tmp_path / "ref.jsonl"
    sim = Simulator(seed=4, speed=120).start_in_thread()
    try:
        client = AIOSClient(sim.url, sim.token, store=EventStore(), **FAST)
        early = client.record(tmp_path / "early.jsonl")  # before the greeting: "auto"
        with client:
            client.wait_for(lambda s: client.dialect == "aios-v2", 15)
            recorder = client.record(path)
            client.wait_for(lambda s: len(s.job_events) > 20, 15)
            recorder.stop()
            early.stop()
    finally:
        sim.stop()
    assert json.loads(path.read_text().splitlines()[0])["dialect"] == "aios-v2"
    assert json.loads((tmp_path / "early.jsonl").read_text().splitlines()[0])["dialect"] == "auto"
    assert recording_dialect(tmp_path / "early.jsonl").name == "aios-v2"  # its greeting says
    assert isinstance(open_replay(path, speed=10), ReplayServer)


def test_the_record_command_records_a_server_without_auth(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    out = tmp_path / "cli.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "AIOS_TOKEN"}
    with AutopilotServer(app="main", step_delay=0.03, email_steps=2) as server:
        process = subprocess.Popen([sys.executable, "-m", "aios_notebook", "record", server.url, "-o", str(out),
                                    "--duration", "3", "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
        server.wait_until(lambda: server.live_count() == 1, 20)
        time.sleep(0.2)
        run_id = server.create_sample_workflow()
        server.run_email(outcome="completed")
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "connecting without a token" in err and "events" in err
    # recorded from before the greeting: the header says "auto", the greeting (first frame) says which
    assert json.loads(out.read_text().splitlines()[0])["dialect"] == "auto"
    assert recording_dialect(out).name == "autopilot"
    loaded = EventStore.load(out)
    assert run_id in set(loaded.dag_runs["run_id"]) and set(loaded.jobs["type"]) == {"email"}


def test_the_record_command_feeds_a_sink_that_takes_every_frame_without_failing(tmp_path: Path) -> None:
    # the recorder's sink is a StreamSink, not a store: the client feeds it every frame (with the
    # receive time in ns) and no snapshot is asked of it
    from aios_notebook.commands.streaming import DiscardStore as _DiscardStore
    from aios_notebook.storelike import StoreLike, StreamSink

    sink = _DiscardStore()
    assert isinstance(sink, StreamSink) and not isinstance(sink, StoreLike)
    assert isinstance(EventStore(background=False), StoreLike)
    with AutopilotServer(app="main") as server, \
            AIOSClient(server.url, None, store=sink, **FAST) as client:
        client.wait_for(lambda s: client.dialect == "autopilot", 10)
        server.create_sample_workflow()
        client.wait_for(lambda s: client.stats.events_received >= 1, 10)
        assert client.stats.store_errors == 0 and client.last_snapshot is None


def test_an_archive_of_a_foreign_recording_derives_its_latest_state(tmp_path: Path) -> None:
    # converted, the typed tables come from the translated frames; the latest-state tables are
    # derived from the raw frames, which must be read in the recording's dialect too (they were
    # read as the published protocol's: no job, no run). This recording starts after the greeting:
    # its dialect comes from its header, into the archive's manifest.
    from aios_notebook.history import Archive, convert

    path, live = _record(tmp_path)
    loaded = _typed(EventStore.load(path))
    convert(path, tmp_path / "archive", progress=False)
    archive = Archive(tmp_path / "archive")
    assert archive.manifest["dialect"] == "autopilot" and archive.dialect is not None
    derived = _typed(archive.store())
    for name in ("jobs", "dag_runs", "dag_steps"):
        assert len(derived[name]) > 0, name
        pd.testing.assert_frame_equal(derived[name], loaded[name], check_categorical=False, obj=name)
    assert set(archive.latest("jobs")["job_id"]) == set(loaded["jobs"]["job_id"])
    # a live store written as it is: no manifest names the dialect, raw's event names do
    live_archive = tmp_path / "live"
    live.to_archive(live_archive)
    written = Archive(live_archive)
    assert written.manifest["dialect"] == "aios-v2" and written.dialect is not None
    assert set(written.latest("jobs")["job_id"]) == set(live.jobs["job_id"]) != set()


def test_a_backtest_of_a_foreign_recording_sees_its_latest_state(tmp_path: Path) -> None:
    # a rule over jobs is fed the history in time order; the frames are the server's own, and
    # were fed as the published protocol's (the rule saw no job)
    from aios_notebook.rules import Insight, backtest, rule

    @rule(every="50ms", window="1m", full_window=False)
    def email_done(jobs: pd.DataFrame) -> Insight | None:
        done = jobs[(jobs["type"] == "email") & (jobs["status"] == "completed")]
        return Insight("email done", f"{len(done)} done", key="email") if len(done) else None

    path, live = _record(tmp_path)
    assert (live.jobs["status"] == "completed").any()
    for source in (path, EventStore.load(path)):
        firings = backtest([email_done], source, publish=False)
        assert list(firings["key"]) == ["email"], source
