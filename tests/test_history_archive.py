"""The Parquet archive: what a store holds written and read back exactly, windows, latest state as
of a moment, DuckDB SQL, EventStores for a window, Dask, coverage, compaction, views; and bad input
(damaged, foreign, missing and newer files, two writers, files being written)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_notebook.history import Archive, ArchiveError
from aios_notebook.store.archive import ARCHIVE_TABLES, LOCK_NAME, MANIFEST_NAME, ArchiveWriter
from aios_notebook.store.schema import LATEST_TABLES
from aios_notebook.views import JobsView, SuccessRateTrend
from tests.history_samples import store_of, workload

START, HOURS = "2026-01-05T21:00:00Z", 6.0  # crosses midnight: two day partitions


@pytest.fixture(scope="module")
def events() -> tuple[list[str], np.ndarray]:
    return workload(HOURS, scenario="failure_burst", start=START)


@pytest.fixture(scope="module")
def live(events):
    return store_of(*events)


@pytest.fixture(scope="module")
def archive_path(live, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("archive") / "archive"
    assert live.to_archive(path) > 0
    return path


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True)


def test_tables_come_back_exactly(live, archive_path):
    archive = Archive(archive_path)
    for name in ARCHIVE_TABLES:
        pd.testing.assert_frame_equal(archive.table(name), live.table(name), obj=name)
    # two days, one folder per table and per day, zstd, the manifest's counts are the rows
    manifest = json.loads((archive_path / MANIFEST_NAME).read_text())
    assert manifest["aios_archive"] == 1 and manifest["dialect"] == "aios-v2"
    assert {Path(p).parts[1] for p in manifest["files"]} == {"date=2026-01-05", "date=2026-01-06"}
    assert manifest["tables"]["job_events"] == len(live.job_events)
    first = next(iter(manifest["files"]))
    assert pq.ParquetFile(archive_path / first).metadata.row_group(0).column(0).compression == "ZSTD"
    assert manifest["seq_range"] == [int(live.raw["seq"].min()), int(live.raw["seq"].max())]


def test_writing_the_same_store_again_adds_nothing(live, archive_path, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(archive_path, copy)
    assert live.to_archive(copy) == 0
    assert Archive(copy).rows == Archive(archive_path).rows


def test_windows_columns_and_filters(live, archive_path):
    archive = Archive(archive_path)
    start, end = pd.Timestamp("2026-01-05T22:00Z"), pd.Timestamp("2026-01-06T01:30Z")
    events = live.job_events
    inside = events[(events["timestamp"] >= start) & (events["timestamp"] < end)]
    got = archive.table("job_events", start, end)
    pd.testing.assert_frame_equal(_sorted(got), _sorted(inside), check_categorical=False)
    pdf = archive.table("job_events", start, end, columns=["timestamp", "type", "status"], filter={"type": "pdf"})
    assert list(pdf.columns) == ["timestamp", "type", "status"]
    assert len(pdf) == int((inside["type"] == "pdf").sum()) > 0
    # raw rows are placed by their frame's event time
    raw = archive.table("raw", start, end)
    assert len(raw) == int(((live.raw["received_at"] >= start) & (live.raw["received_at"] < end)).sum())
    # a window reads only its files
    assert len(archive.files("job_events", start="2026-01-06T00:10Z")) == 1


def test_latest_equals_the_live_store(live, archive_path, events):
    archive = Archive(archive_path)
    for name in LATEST_TABLES:
        pd.testing.assert_frame_equal(archive.latest(name), live.table(name), obj=name)
    # as of a moment: the store that had received the events up to then
    frames, times = events
    at = pd.Timestamp("2026-01-05T23:20Z")
    upto = int(np.searchsorted(times, at.value, side="right"))
    then = store_of(frames[:upto], times[:upto])
    for name in ("jobs", "dag_runs", "knowledge"):
        pd.testing.assert_frame_equal(archive.latest(name, at=at), then.table(name), obj=name)


def test_store_of_a_window_is_what_a_client_of_that_window_builds(archive_path, events):
    archive = Archive(archive_path)
    frames, times = events
    start, end = pd.Timestamp("2026-01-05T23:00Z"), pd.Timestamp("2026-01-06T00:30Z")
    lo, hi = np.searchsorted(times, [start.value, end.value])
    window = store_of(frames[lo:hi], times[lo:hi])
    got = archive.store(start, end)
    for name in ("job_events", "agent_events", "metrics", "jobs", "agents", "dag_steps", "raw"):
        pd.testing.assert_frame_equal(got.table(name), window.table(name), obj=name, check_categorical=False)
    assert got.now == window.now


def test_sql_over_the_archive(live, archive_path):
    archive = Archive(archive_path, memory_limit="256MB", threads=1)
    rates = archive.sql(
        "SELECT type, date_trunc('hour', timestamp) AS hour, "
        "avg(CASE WHEN event = 'processing_job_completed' THEN 1.0 ELSE 0.0 END) AS success_rate "
        "FROM job_events WHERE event IN ('processing_job_completed', 'processing_job_failed') "
        "GROUP BY ALL ORDER BY type, hour")
    done = live.job_events[live.job_events["event"].isin(["processing_job_completed", "processing_job_failed"])]
    expected = (done.assign(hour=done["timestamp"].dt.floor("h"),
                            ok=(done["event"] == "processing_job_completed").astype(float))
                .groupby([done["type"].astype(str), "hour"], observed=True)["ok"].mean().sort_index())
    assert len(rates) == len(expected)
    assert np.allclose(rates["success_rate"].to_numpy(), expected.to_numpy())
    # a latest-state table named in a query is derived first
    statuses = archive.sql("SELECT status, count(*) AS n FROM jobs GROUP BY status").set_index("status")["n"]
    assert statuses.to_dict() == live.jobs["status"].value_counts().loc[lambda s: s > 0].to_dict()


def test_dask_dataframe_over_the_same_files(live, archive_path):
    archive = Archive(archive_path)
    frame = archive.dask("agent_events", columns=["timestamp", "agent_id", "event"])
    assert frame.npartitions == len(archive.files("agent_events"))
    counts = frame.groupby("agent_id", observed=True).size().compute(scheduler="sync")
    expected = live.agent_events.groupby("agent_id", observed=True).size()
    assert counts.sort_index().to_dict() == expected.sort_index().to_dict()


def test_coverage_days_rows_and_gaps(archive_path, tmp_path):
    coverage = Archive(archive_path).coverage()
    assert list(coverage.index) == ["2026-01-05", "2026-01-06"] and not coverage["gap"].any()
    # a day with no event between two days with events is a gap
    early, early_times = workload(2)
    late, late_times = workload(2, start="2026-01-08T00:00:00Z", first_seq=len(early) + 1)
    path = tmp_path / "gappy"
    store_of(early, early_times).to_archive(path)
    store_of(late, late_times).to_archive(path)
    coverage = Archive(path).coverage()
    assert coverage.loc["2026-01-06", "gap"] and coverage.loc["2026-01-07", "gap"]
    assert not coverage.loc["2026-01-08", "gap"] and coverage.loc["2026-01-05", "job_events"] > 0


def test_live_tail_files_are_compacted_into_day_files(live, tmp_path):
    path = tmp_path / "tail"
    frames = {name: live.table(name) for name in ARCHIVE_TABLES}
    with ArchiveWriter(path) as writer:
        for part in np.array_split(np.arange(len(frames["raw"])), 5):  # five small writes
            lo, hi = part[0], part[-1] + 1
            writer.write({"raw": frames["raw"].iloc[lo:hi]})
        first_day = [p for p, e in writer.manifest["files"].items() if e["date"] == "2026-01-05"]
        assert len(first_day) >= 2 and all(e["tail"] for e in writer.manifest["files"].values())
        assert writer.write({"raw": frames["raw"].iloc[:10]}) == 0  # rows it holds: not again
        # the day still being written (the newest) stays as it is; a finished day becomes one file
        assert writer.compact() == len(first_day)
        assert [e["tail"] for e in writer.manifest["files"].values() if e["date"] == "2026-01-05"] == [False]
        writer.compact(before="2026-01-07")
        assert writer.write({"raw": frames["raw"]}) == 0  # the day files hold them now
    archive = Archive(path)
    assert len(archive.files("raw")) == 2  # one per day
    assert len(Archive(path).files("raw", end="2026-01-06")) == 1
    pd.testing.assert_frame_equal(archive.table("raw"), live.raw)
    assert sorted(p.name for p in (path / "raw").rglob("*.parquet")) == sorted(p.name for p in archive.files("raw"))


def test_views_accept_an_archive(live, archive_path):
    archive = Archive(archive_path)
    trend = SuccessRateTrend(archive).figure()
    expected = SuccessRateTrend(live).figure()
    assert len(trend.data) >= 2
    assert json.loads(trend.to_json())["data"] == json.loads(expected.to_json())["data"]
    assert JobsView(archive).values == JobsView(live).values


# -- bad input ---------------------------------------------------------------------------------
@pytest.fixture()
def copy(archive_path, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(archive_path, target)
    return target


def _a_file(path: Path, table: str = "job_events") -> Path:
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    return path / next(p for p, e in manifest["files"].items() if e["table"] == table)


def test_a_damaged_file_is_named(copy):
    victim = _a_file(copy)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=str(victim.name)):
        Archive(copy).table("job_events")


def test_a_foreign_parquet_file_is_named(copy):
    victim = _a_file(copy)
    pq.write_table(pa.table({"a": [1, 2]}), victim)
    with pytest.raises(ArchiveError, match=f"{victim.name}.*foreign"):
        Archive(copy).table("job_events")


def test_a_missing_partition_is_named(copy):
    victim = _a_file(copy)
    victim.unlink()
    with pytest.raises(ArchiveError, match=f"{victim.name}.*missing"):
        Archive(copy)


def test_a_newer_format_is_refused(copy):
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["aios_archive"] = 2
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArchiveError, match="format version 2 is newer"):
        Archive(copy)
    manifest["aios_archive"] = 1
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    victim = _a_file(copy)
    table = pq.read_table(victim)
    meta = dict(table.schema.metadata)
    meta[b"aios_archive"] = json.dumps({"format": 3, "table": "job_events"}).encode()
    pq.write_table(table.replace_schema_metadata(meta), victim)
    with pytest.raises(ArchiveError, match=f"{victim.name}.*format 3"):
        Archive(copy).table("job_events")
    with pytest.raises(ArchiveError, match="not an archive"):
        Archive(copy / "job_events")


def test_one_writer_at_a_time(copy, live):
    with ArchiveWriter(copy), pytest.raises(ArchiveError, match=f"{LOCK_NAME}.*another writer"):
        live.to_archive(copy)
    assert not (copy / LOCK_NAME).exists()
    # a lock left by a writer that died is taken over
    (copy / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename, "since": "x"}))
    assert live.to_archive(copy) == 0


def test_readers_skip_files_being_written_and_writers_clean_them(copy, live):
    folder = _a_file(copy).parent
    (folder / ".part-000-being-written.parquet.tmp").write_bytes(b"PAR1 half")
    shutil.copy(_a_file(copy), folder / "part-999-not-listed.parquet")  # renamed, not yet listed
    pd.testing.assert_frame_equal(Archive(copy).table("job_events"), live.job_events)
    with ArchiveWriter(copy):
        pass
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in Archive(copy).files("job_events") if p.parent == folder)


def test_a_write_that_fails_leaves_nothing_behind(copy, live, monkeypatch):
    before = (copy / MANIFEST_NAME).read_text()
    listed = sorted(str(p) for p in copy.rglob("*.parquet"))
    original = pq.write_table

    def disk_full(table, where, **options):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", disk_full)
    shifted = live.job_events.assign(seq=live.job_events["seq"] + 10**9)  # new rows
    with ArchiveWriter(copy) as writer, pytest.raises(OSError, match="No space"):
        writer.write({"job_events": shifted})
    monkeypatch.setattr(pq, "write_table", original)
    assert (copy / MANIFEST_NAME).read_text() == before
    assert sorted(str(p) for p in copy.rglob("*.parquet")) == listed
    assert not list(copy.rglob("*.tmp")) and not (copy / LOCK_NAME).exists()
