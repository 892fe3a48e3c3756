"""Writing archives from the command line and from a client: ``archive convert`` of recordings
(every core, idempotent, no duplicate rows), ``archive URL`` from a live reference server,
``client.archive``, and their bad input."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aios_notebook import Simulator
from aios_notebook.cli import main
from aios_notebook.client import AIOSClient
from aios_notebook.history import Archive, convert
from aios_notebook.store import EventStore
from aios_notebook.store.archive import ARCHIVE_TABLES, MANIFEST_NAME
from tests.history_samples import record, workload


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """Three recordings of one stream, one after the other (rotated parts)."""
    folder = tmp_path_factory.mktemp("recordings")
    frames, times = workload(3.0, start="2026-01-05T22:30:00Z")
    for index, part in enumerate(np.array_split(np.arange(len(frames)), 3)):
        record(folder / f"day{index}.jsonl.gz", [frames[i] for i in part], times[part])
    return folder


def test_convert_from_the_command_line(recordings, tmp_path, capsys):
    out = tmp_path / "archive"
    pattern = str(recordings / "*.jsonl.gz")
    assert main(["archive", "convert", pattern, "-o", str(out), "--workers", "2", "--quiet"]) == 0
    assert "converted 3 recording(s)" in capsys.readouterr().err
    archive = Archive(out)
    loaded = EventStore.load(pattern, retention={name: None for name in EventStore.TABLE_NAMES})
    for name in ARCHIVE_TABLES:
        pd.testing.assert_frame_equal(archive.table(name), loaded.table(name), obj=name, check_categorical=False)
    pd.testing.assert_frame_equal(archive.latest("jobs"), loaded.jobs, check_categorical=False)
    # again: every recording is known, nothing is added
    rows = archive.rows
    assert main(["archive", "convert", pattern, "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err.count("skipped") == 3
    assert Archive(out).rows == rows
    assert not (out / "_staging").exists() and not list(out.rglob("*.tmp"))


def test_an_overlapping_recording_adds_no_duplicate_row(recordings, tmp_path):
    out = tmp_path / "archive"
    first = sorted(recordings.glob("*.jsonl.gz"))
    convert(first[:2], out, workers=1, progress=False)
    # a recording holding the second part again and the third (another recorder, same stream)
    store = EventStore.load(first[1:], retention={name: None for name in EventStore.TABLE_NAMES})
    raw = store.raw
    both = record(tmp_path / "both.jsonl", raw["text"].tolist(), raw["received_at"].astype("int64").to_numpy())
    result = convert(both, out, workers=1, progress=False)
    assert result.converted == [str(both)]
    whole = EventStore.load(first, retention={name: None for name in EventStore.TABLE_NAMES})
    archive = Archive(out)
    assert archive.rows["job_events"] == len(whole.job_events)
    assert archive.table("raw")["seq"].is_unique


def test_convert_bad_input_is_named(tmp_path, capsys):
    out = tmp_path / "archive"
    assert main(["archive", "convert", str(tmp_path / "none*.jsonl"), "-o", str(out), "--quiet"]) == 1
    assert "no recording matches" in capsys.readouterr().err and not out.exists()
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"aios_recording": 1}\n{"t": "2026-01-05T00:00:00Z", "frame": "x"}\nnot json at all\n')
    assert main(["archive", "convert", str(damaged), "-o", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "damaged.jsonl:3" in err
    assert not out.exists()  # nothing half-written left behind


def test_archive_a_live_stream_from_the_command_line(tmp_path, capsys, monkeypatch):
    sim = Simulator(seed=3, speed=600, scenario="steady").start_in_thread()
    try:
        monkeypatch.setenv("ARCHIVE_TEST_TOKEN", sim.token)
        out = tmp_path / "live"
        code = main(["archive", sim.url, "-o", str(out), "--token-env", "ARCHIVE_TEST_TOKEN",
                     "--duration", "3", "--interval", "0.5", "--quiet"])
    finally:
        sim.stop()
    err = capsys.readouterr().err
    assert code == 0, err
    archive = Archive(out)
    assert archive.rows["job_events"] > 0 and archive.rows["raw"] > 0
    assert sim.token not in (out / MANIFEST_NAME).read_text() and sim.token not in err
    assert json.loads((out / MANIFEST_NAME).read_text())["source"] == sim.url


def test_archive_fails_fast_when_nobody_answers(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARCHIVE_TEST_TOKEN", "secret-token-value")
    out = tmp_path / "never"
    began = time.monotonic()
    code = main(["archive", "ws://127.0.0.1:9/ws", "-o", str(out), "--token-env", "ARCHIVE_TEST_TOKEN", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "nothing archived" in err and time.monotonic() - began < 30
    assert not out.exists()
    monkeypatch.delenv("ARCHIVE_TEST_TOKEN")
    assert main(["archive", "ws://127.0.0.1:9/ws", "-o", str(out), "--token-env", "ARCHIVE_TEST_TOKEN"]) == 2
    assert "ARCHIVE_TEST_TOKEN is not set" in capsys.readouterr().err


def test_client_archive_alongside_the_store(tmp_path):
    sim = Simulator(seed=5, speed=600, scenario="steady").start_in_thread()
    out = tmp_path / "client"
    try:
        client = AIOSClient(sim.url, sim.token, snapshots=False).start()
        archiver = client.archive(out, interval=0.3, rows=500)
        client.wait_for(lambda s: len(s.job_events) > 300, timeout=60)
        client.stop()
        archiver.stop()
    finally:
        sim.stop()
    assert archiver.error is None and archiver.frames > 0
    archive = Archive(out)
    # the frames the client's store took are the archive's, row for row (receive times apart:
    # the listener sees them in microseconds)
    live = client.store.job_events.drop(columns=["received_at"])
    got = archive.table("job_events").drop(columns=["received_at"])
    pd.testing.assert_frame_equal(got, live, check_categorical=False)
    assert os.listdir(out) and not (out / "_archive.lock").exists()


def test_archive_a_server_without_auth_with_no_token_set(tmp_path, capsys, monkeypatch):
    # the AIOS v2 backend's own app takes no token: with AIOS_TOKEN unset, archive connects
    # without one, as record does (it used to refuse: "AIOS_TOKEN is not set"); its frames are
    # another dialect's, translated into the typed tables and derived latest state
    import threading

    from autopilot_server import AutopilotServer

    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    out = tmp_path / "autopilot"
    with AutopilotServer(app="main", step_delay=0.03, email_steps=2) as server:
        def workload() -> None:
            server.wait_until(lambda: server.live_count() == 1, 20)
            time.sleep(0.2)
            server.create_sample_workflow()
            server.run_email(outcome="completed")

        feeding = threading.Thread(target=workload, daemon=True)
        feeding.start()
        code = main(["archive", server.url, "-o", str(out), "--duration", "3", "--interval", "0.5", "--quiet"])
        feeding.join(timeout=30)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "connecting without a token" in err
    # the server's frames as it sent them, and the tables the client's store builds from them
    archive = Archive(out)
    assert archive.rows["raw"] > 0 and archive.rows["job_events"] > 0 and archive.rows["dag_step_events"] > 0
    assert archive.dialect is not None and archive.dialect.name == "autopilot"
    assert set(archive.latest("jobs")["type"]) == {"email"} and len(archive.latest("dag_runs")) == 1
