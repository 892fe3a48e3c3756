"""RecordingWriter: the file format, gzip, rotation, flushing, thread-safety (real files, no server)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aios_notebook.exceptions import AIOSWarning, CorruptLog, RecordingError
from aios_notebook.recording import (
    RecordingReader,
    RecordingWriter,
    part_path,
    public_url,
    read_frames,
)

FRAMES: list[str | bytes] = [
    '{"event":"ping","data":{"timestamp":"2026-01-05T00:00:00.000Z"}}',
    '{"event":"processing_job_status","data":{"job_id":"j\\u00e9","filename":"caf\u00e9 \u2603.pdf","progress":5},"seq":1}',
    "not json at all, kept verbatim",
    '{"event": "x",\n "data": "newline inside the frame"}',
    b"\x00\xffbinary frame",
    "",
]

START = datetime(2026, 1, 5, tzinfo=timezone.utc)


def _write(path: Path, frames=FRAMES, **options) -> RecordingWriter:
    writer = RecordingWriter(path, flush_interval=None, **options)
    for index, frame in enumerate(frames):
        writer.write(frame, START + timedelta(seconds=index, microseconds=123456))
    writer.close()
    return writer


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
def test_frames_come_back_verbatim_with_their_receive_time(tmp_path: Path, name: str) -> None:
    writer = _write(tmp_path / name, url="ws://127.0.0.1:1/ws", types=["agents", "dags"])
    assert writer.events == len(FRAMES)
    assert writer.bytes == (tmp_path / name).stat().st_size
    got = list(read_frames(tmp_path / name))
    assert [f.frame for f in got] == FRAMES
    assert got[2].received_at == "2026-01-05T00:00:02.123456Z"
    reader = RecordingReader(tmp_path / name)
    (header,) = reader.headers
    assert (header.version, header.url, header.types, header.part) == (1, "ws://127.0.0.1:1/ws", ["agents", "dags"], 0)


def test_the_file_is_one_json_object_per_line_as_designed(tmp_path: Path) -> None:
    _write(tmp_path / "rec.jsonl", frames=[*FRAMES[:2], FRAMES[4]])
    lines = (tmp_path / "rec.jsonl").read_text(encoding="ascii").splitlines()
    header, *rows = (json.loads(line) for line in lines)
    assert header["aios_recording"] == 1 and "started_at" in header
    assert rows[0] == {"t": "2026-01-05T00:00:00.123456Z", "frame": FRAMES[0]}
    assert rows[1]["frame"] == FRAMES[1]
    assert rows[2] == {"t": "2026-01-05T00:00:02.123456Z", "binary": base64.b64encode(FRAMES[4]).decode()}


def test_no_credential_is_kept_in_the_header(tmp_path: Path) -> None:
    url = "wss://user:pa55word@example.test:8443/ws?token=s3cret-value&region=eu&api_key=k3y"
    _write(tmp_path / "rec.jsonl", url=url)
    text = (tmp_path / "rec.jsonl").read_text()
    for secret in ("pa55word", "s3cret-value", "k3y", "user:"):
        assert secret not in text
    assert RecordingReader(tmp_path / "rec.jsonl").headers[0].url == "wss://example.test:8443/ws?region=eu"
    assert public_url("ws://127.0.0.1:8000/ws") == "ws://127.0.0.1:8000/ws"


def test_receive_times_in_any_form_are_written_as_utc_microseconds(tmp_path: Path) -> None:
    writer = RecordingWriter(tmp_path / "rec.jsonl", flush_interval=None)
    writer.write("a", 1_767_571_200.5)
    writer.write("b", "2026-01-05T01:00:00+01:00")
    writer.write("c", datetime(2026, 1, 5))  # naive = UTC
    with pytest.raises(ValueError, match="not a timestamp"):
        writer.write("d", 'x","frame":"forged')
    writer.close()
    assert [f.received_at for f in read_frames(tmp_path / "rec.jsonl")] == [
        "2026-01-05T00:00:00.500000Z", "2026-01-05T00:00:00.000000Z", "2026-01-05T00:00:00.000000Z",
    ]


@pytest.mark.parametrize("name", ["rec.jsonl", "rec.jsonl.gz"])
def test_rotation_by_size_keeps_every_frame_in_order(tmp_path: Path, name: str) -> None:
    # random padding: the size that counts is the size on disk, compressed for .gz
    frames = [json.dumps({"event": "ping", "data": {"n": i, "pad": os.urandom(i % 50).hex()}}) for i in range(3000)]
    writer = _write(tmp_path / name, frames=frames, rotate_bytes=10_000)
    assert len(writer.paths) > 3
    assert writer.paths[1] == part_path(tmp_path / name, 1)
    assert all(p.exists() for p in writer.paths)
    assert writer.bytes == sum(p.stat().st_size for p in writer.paths)
    pattern = str(tmp_path / name).replace("rec.", "rec*")
    reader = RecordingReader(pattern)
    assert [h.part for h in reader.headers] == list(range(len(writer.paths)))
    assert [f.frame for f in reader] == frames


def test_parts_are_read_in_header_order_whatever_their_names_sort_to(tmp_path: Path) -> None:
    frames = [f'{{"event":"ping","data":{{"n":{i}}}}}' for i in range(400)]
    writer = _write(tmp_path / "z.jsonl", frames=frames, rotate_bytes=2_000)
    listed = list(reversed(writer.paths))  # worst case: given newest first
    assert [f.frame for f in read_frames(listed)] == frames


def test_an_existing_recording_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    first = _write(tmp_path / "rec.jsonl", frames=["a"] * 500, rotate_bytes=2_000)
    assert len(first.paths) > 2
    with pytest.raises(RecordingError, match="already there"):
        RecordingWriter(tmp_path / "rec.jsonl")
    _write(tmp_path / "rec.jsonl", frames=["b"], overwrite=True)
    # the stale parts of the longer recording are gone with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.jsonl"]
    assert [f.frame for f in read_frames(str(tmp_path / "rec*.jsonl"))] == ["b"]


def test_writing_after_close_is_an_error(tmp_path: Path) -> None:
    writer = _write(tmp_path / "rec.jsonl")
    assert writer.closed
    with pytest.raises(RecordingError, match="closed"):
        writer.write("late")
    writer.close()  # twice is fine


def test_the_timer_flushes_without_any_further_write(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    writer = RecordingWriter(path, flush_interval=0.05)
    try:
        writer.write("only frame")
        # nothing else is written: only the timer can put the line on disk
        deadline = time.monotonic() + 10
        while b"only frame" not in path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"only frame" in path.read_bytes()
    finally:
        writer.close()


def test_an_unclosed_gzip_recording_is_readable_up_to_the_last_flush(tmp_path: Path) -> None:
    # what kill -9 leaves: flushed (Z_SYNC_FLUSH) data but no gzip trailer
    path = tmp_path / "rec.jsonl.gz"
    writer = RecordingWriter(path, flush_interval=None)
    frames = [f'{{"event":"ping","data":{{"n":{i}}}}}' for i in range(1000)]
    for frame in frames:
        writer.write(frame)
    writer.flush()
    crashed = tmp_path / "crashed.jsonl.gz"
    shutil.copyfile(path, crashed)
    writer.close()
    with pytest.raises(CorruptLog, match="trailer") as info:
        list(read_frames(crashed))
    assert info.value.path == str(crashed) and info.value.line == len(frames) + 2
    with pytest.warns(AIOSWarning, match="crashed.jsonl.gz"):
        reader = RecordingReader(crashed, on_error="skip")
        assert [f.frame for f in reader] == frames
    assert len(reader.problems) == 1


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    writer = RecordingWriter(path, flush_interval=0.01)

    def work(n: int) -> None:
        for i in range(2000):
            writer.write(json.dumps({"event": "ping", "data": {"thread": n, "i": i, "pad": "y" * 100}}))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    frames = [json.loads(f.frame)["data"] for f in read_frames(path)]
    assert len(frames) == 8000
    for n in range(4):
        assert [d["i"] for d in frames if d["thread"] == n] == list(range(2000))
