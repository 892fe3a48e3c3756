"""Checkpoints of the archive's latest-state tables: a table derived from a checkpoint is the
table the whole replay derives, at every moment; a checkpoint is read when it holds and ignored
when the files before it changed, is damaged or cannot be written."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from aios_notebook.history import Archive
from aios_notebook.history.checkpoints import FOLDER, KEEP
from aios_notebook.store import EventStore
from aios_notebook.store.schema import LATEST_TABLES
from tests.history_samples import store_of, workload

START, HOURS = "2026-01-05T22:00:00Z", 27.0  # three day partitions: 05, 06 and 07
MOMENTS = [None, "2026-01-05T23:30:00Z", "2026-01-06T00:00:00Z", "2026-01-06T13:05:00Z", "2026-01-07T00:20:00Z"]


@pytest.fixture(scope="module")
def events():
    return workload(HOURS, start=START)


@pytest.fixture(scope="module")
def source(events, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoints") / "archive"
    store_of(*events).to_archive(path)
    return path


@pytest.fixture
def path(source, tmp_path) -> Path:
    copy = tmp_path / "archive"
    shutil.copytree(source, copy)
    return copy


def _archive(path: Path, **options) -> Archive:
    archive = Archive(path, **options)
    archive._CHECKPOINT_FRAMES = 0  # the sample is small: write one after any replay
    return archive


def _replayed(path: Path, name: str, at) -> pd.DataFrame:
    return Archive(path, checkpoints=False).latest(name, at=at)


def test_a_table_from_a_checkpoint_is_the_whole_replays(path):
    for name in LATEST_TABLES:
        expected = {at: _replayed(path, name, at) for at in MOMENTS}
        for at in MOMENTS:  # each derivation may write a checkpoint the next ones start from
            pd.testing.assert_frame_equal(_archive(path).latest(name, at=at), expected[at], obj=f"{name} at {at}")
        assert sorted(p.name for p in (path / FOLDER / name).iterdir()) == ["2026-01-06", "2026-01-07"]
        for at in reversed(MOMENTS):  # and read back by a new reader
            pd.testing.assert_frame_equal(Archive(path).latest(name, at=at), expected[at], obj=f"{name} at {at}")
    assert len(expected["2026-01-07T00:20:00Z"]) > len(expected["2026-01-05T23:30:00Z"]) > 0


def test_a_checkpoint_is_what_is_read_while_its_files_are_unchanged(path, events):
    at = "2026-01-06T13:05:00Z"
    whole = _replayed(path, "jobs", at)
    _archive(path).latest("jobs", at=at)
    folder = path / FOLDER / "jobs" / "2026-01-06"
    key = (folder / "key.json").read_text()
    # the checkpoint holds the jobs of 05: without them, only the jobs of 06 come back
    for table in folder.glob("*.parquet"):
        table.unlink()
    EventStore(background=False).to_parquet(folder)
    emptied = Archive(path).latest("jobs", at=at)
    assert 0 < len(emptied) < len(whole)
    assert set(emptied["job_id"]) < set(whole["job_id"])
    # a file added to a day before it (late frames of 05): the checkpoint no longer holds
    frames, times = workload(1.0, start="2026-01-05T22:30:00Z", seed=11, first_seq=10**7)
    late = store_of(frames, times)
    late.to_archive(path)
    assert (folder / "key.json").read_text() == key  # still there, but for other files
    expected = _replayed(path, "jobs", at)
    assert not expected.equals(whole)
    pd.testing.assert_frame_equal(Archive(path).latest("jobs", at=at), expected)
    # a new digest: never the stale one again
    _archive(path).latest("jobs", at=at)
    assert (folder / "key.json").read_text() != key
    pd.testing.assert_frame_equal(Archive(path).latest("jobs", at=at), expected)


def test_a_damaged_checkpoint_is_derived_again(path, caplog):
    expected = _replayed(path, "dag_runs", None)
    _archive(path).latest("dag_runs")
    folder = path / FOLDER / "dag_runs" / "2026-01-07"
    (folder / "dag_runs.parquet").write_bytes(b"not parquet")
    with caplog.at_level(logging.WARNING, logger="aios_notebook.history"):
        got = Archive(path).latest("dag_runs")
    pd.testing.assert_frame_equal(got, expected)
    assert any("unreadable" in r.getMessage() and "2026-01-07" in r.getMessage() for r in caplog.records)


def test_an_archive_it_cannot_write_to_is_read_all_the_same(path):
    (path / FOLDER).write_text("not a folder")  # so nothing can be made under it (root included)
    expected = _replayed(path, "agents", None)
    pd.testing.assert_frame_equal(_archive(path).latest("agents"), expected)
    assert (path / FOLDER).read_text() == "not a folder"


def test_short_replays_write_none_and_old_days_and_killed_writes_are_let_go(path):
    Archive(path).latest("jobs")  # 3 days of the sample: far below the default replay
    assert not (path / FOLDER).exists()
    folder = path / FOLDER / "jobs"
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):  # older checkpoints than any written
        (folder / day).mkdir(parents=True)
        (folder / day / "key.json").write_text(json.dumps("stale"))
    abandoned, writing = folder / ".2026-01-04.99.tmp", folder / ".2026-01-05.98.tmp"
    for left in (abandoned, writing):
        left.mkdir()
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))  # a writer killed two hours ago
    _archive(path).latest("jobs")
    assert KEEP == 3 and sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "2026-01-02", "2026-01-03", "2026-01-07"]
    assert writing.exists() and not abandoned.exists()


def test_archives_without_checkpoints_write_none(path):
    archive = Archive(path, checkpoints=False)
    archive._CHECKPOINT_FRAMES = 0
    archive.latest("knowledge")
    assert not (path / FOLDER).exists()
