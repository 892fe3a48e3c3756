"""Reading damaged recordings: every fault names the file and the line; on_error="skip" keeps the rest."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from aios_notebook.exceptions import AIOSWarning, ConfigurationError, CorruptLog, RecordingError
from aios_notebook.recording import RecordingReader, RecordingWriter, read_frames
from aios_notebook.recording import reader as reader_module

FRAMES = [json.dumps({"event": "ping", "data": {"n": i, "pad": os.urandom(8).hex()}}) for i in range(2000)]


@pytest.fixture(autouse=True, params=["columns", "lines"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test both ways: the columnar path tried on every chunk, and the line loop only."""
    monkeypatch.setattr(reader_module, "_MIN_COLUMNS", 0 if request.param == "columns" else 1 << 62)
    return request.param


def _read_both(source: object, monkeypatch: pytest.MonkeyPatch, **options: object) -> dict[str, list[tuple]]:
    out = {}
    for way, threshold in (("columns", 0), ("lines", 1 << 62)):
        monkeypatch.setattr(reader_module, "_MIN_COLUMNS", threshold)
        out[way] = [(b.first_line, b.starts_recording, b.received_at, b.frames)
                    for b in RecordingReader(source, **options).batches()]  # type: ignore[arg-type]
    return out


def test_columns_and_lines_read_the_same_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = ["caf\u00e9 \U0001f600 not ascii", '{"event": "x", "data": {"s": "\\ud83d\\ude00 \\"q\\""}}',
           "", "line\nbreak", '{"lone": "\\ud800"}']
    frames = FRAMES[:700] + odd + FRAMES[700:1400]
    path = tmp_path / "r.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame, 1_767_571_200.0 + index / 1000)
        writer.write(b"\x00\x01 binary", 1_767_571_300.0)
        writer.write(FRAMES[1500], 1_767_571_301.0)
    both = _read_both(path, monkeypatch)
    assert both["columns"] == both["lines"]
    got = [f for batch in both["columns"] for f in batch[3]]
    assert got == [*frames, b"\x00\x01 binary", FRAMES[1500]]
    # two recordings in one file (cat a b): the second header starts a new batch either way
    twice = tmp_path / "twice.jsonl"
    twice.write_bytes(path.read_bytes() * 2)
    both = _read_both(twice, monkeypatch)
    assert both["columns"] == both["lines"] and len(both["columns"]) >= 2


def test_the_columnar_path_hands_out_arrow_arrays_and_makes_lists_on_demand(tmp_path: Path, way: str) -> None:
    path = _recording(tmp_path / "r.jsonl")
    batches = list(RecordingReader(path).batches())
    columnar = [b.frame_array is not None and b.time_array is not None for b in batches]
    assert all(columnar) if way == "columns" else not any(columnar)
    assert sum(map(len, batches)) == len(FRAMES)
    assert [f for b in batches for f in b.frames] == FRAMES
    assert batches[0].received_at[0] == "2026-01-05T00:00:00.000000Z"
    # gzip with a member per flush (small): the members are joined before the lines are read
    packed = tmp_path / "r.jsonl.gz"
    with RecordingWriter(packed, flush_interval=None) as writer:
        for index, frame in enumerate(FRAMES):
            writer.write(frame, 1_767_571_200.0)
            if index % 20 == 0:
                writer.flush()
    batches = list(RecordingReader(packed).batches())
    assert [f for b in batches for f in b.frames] == FRAMES
    if way == "columns":
        assert len(batches) == 1 and batches[0].frame_array is not None


def _recording(path: Path, frames: list[str] = FRAMES) -> Path:
    with RecordingWriter(path, flush_interval=None) as writer:
        for frame in frames:
            writer.write(frame, 1_767_571_200.0)
    return path


def _skip(path: Path | str, match: str) -> tuple[list[str | bytes], list[CorruptLog]]:
    with pytest.warns(AIOSWarning, match=match):
        reader = RecordingReader(path, on_error="skip")
        frames = [f.frame for f in reader]
    return frames, reader.problems


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorruptLog, match="no such file") as info:
        RecordingReader(tmp_path / "nope.jsonl")
    assert info.value.path == str(tmp_path / "nope.jsonl")
    with pytest.raises(CorruptLog, match="no such file"):
        RecordingReader(tmp_path / "nope.jsonl", on_error="skip")  # nothing to keep: always an error


def test_a_pattern_matching_nothing_is_named(tmp_path: Path) -> None:
    with pytest.raises(CorruptLog, match="matches") as info:
        RecordingReader(str(tmp_path / "*.jsonl"))
    assert info.value.path.endswith("*.jsonl")


def test_a_folder_or_nothing_at_all_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CorruptLog, match="folder"):
        RecordingReader(tmp_path)
    with pytest.raises(ConfigurationError):
        RecordingReader([])
    with pytest.raises(ConfigurationError, match="on_error"):
        RecordingReader(_recording(tmp_path / "r.jsonl"), on_error="ignore")  # type: ignore[arg-type]


def test_an_empty_file_is_named_at_line_1(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(CorruptLog, match="empty file") as info:
        list(read_frames(path))
    assert (info.value.path, info.value.line) == (str(path), 1)
    frames, problems = _skip(path, "empty file")
    assert frames == [] and len(problems) == 1


def test_an_empty_gzip_file_is_named_too(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(CorruptLog, match="empty file"):
        list(read_frames(path))


@pytest.mark.parametrize("cut", [2, 7, 30])
def test_a_torn_last_line_is_named_and_what_came_before_is_kept(tmp_path: Path, cut: int) -> None:
    path = _recording(tmp_path / "torn.jsonl")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - cut])  # the writer died inside the last line
    with pytest.raises(CorruptLog, match="torn last line") as info:
        list(read_frames(path))
    assert info.value.line == len(FRAMES) + 1  # header is line 1
    frames, problems = _skip(path, "torn last line")
    assert frames == FRAMES[:-1]
    assert [p.line for p in problems] == [len(FRAMES) + 1]


def test_a_last_line_without_its_newline_but_whole_is_read(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert [f.frame for f in read_frames(path)] == FRAMES


def test_a_non_json_line_is_named_and_the_lines_around_it_are_kept(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    lines[501] = "garbage {{{\n"  # line 502 of the file: the 501st frame
    lines[800] = '{"frame": "no receive time"}\n'
    path.write_text("".join(lines))
    with pytest.raises(CorruptLog, match="not JSON") as info:
        list(read_frames(path))
    assert (info.value.path, info.value.line) == (str(path), 502)
    assert str(info.value).startswith(f"{path}:502: ")
    frames, problems = _skip(path, "r.jsonl:502")
    assert [(p.line, p.reason.split(" (")[0].split(":")[0]) for p in problems] == [(502, "not JSON"), (801, "not a frame line")]
    assert frames == FRAMES[:500] + FRAMES[501:799] + FRAMES[800:]


def test_a_line_json_refuses_without_a_decode_error_is_named_too(tmp_path: Path) -> None:
    # an integer of more than 4300 digits: json.loads raises a plain ValueError, not a JSONDecodeError
    path = _recording(tmp_path / "r.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    lines[301] = '{"t": 1' + "7" * 5000 + "}\n"
    path.write_text("".join(lines))
    with pytest.raises(CorruptLog, match="not JSON") as info:
        list(read_frames(path))
    assert info.value.line == 302
    frames, problems = _skip(path, "r.jsonl:302")
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [(302, "not JSON")]
    assert "4300" in problems[0].reason  # the reason json gave, in its words
    assert frames == FRAMES[:300] + FRAMES[301:]


def test_a_bad_base64_binary_frame_is_named(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl", FRAMES[:3])
    with path.open("a") as handle:
        handle.write('{"t": "2026-01-05T00:00:00Z", "binary": "***"}\n')
    with pytest.raises(CorruptLog, match="base64") as info:
        list(read_frames(path))
    assert info.value.line == 5


def test_a_file_that_is_not_a_recording_is_named_at_line_1(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(CorruptLog, match="not an aios recording") as info:
        list(read_frames(path))
    assert info.value.line == 1


def test_a_binary_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "image.jsonl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    with pytest.raises(CorruptLog, match=r"not UTF-8|not an aios recording"):
        list(read_frames(path))


def test_a_recording_without_header_is_reported_but_its_frames_kept(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl", FRAMES[:10])
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(CorruptLog, match="no header"):
        list(read_frames(path))
    frames, _ = _skip(path, "no header")
    assert frames == FRAMES[:10]


def test_a_newer_format_is_refused_whatever_on_error_says(tmp_path: Path) -> None:
    path = tmp_path / "future.jsonl"
    path.write_text('{"aios_recording": 2, "url": null}\n{"t": "2026-01-05T00:00:00Z", "frame": "x"}\n')
    with pytest.raises(RecordingError, match="version 2"):
        list(read_frames(path, on_error="skip"))


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_a_corrupt_gzip_stream_is_named_and_what_came_before_is_kept(tmp_path: Path, where: float) -> None:
    frames = FRAMES * 10
    path = tmp_path / "r.jsonl.gz"
    with RecordingWriter(path, flush_interval=None) as writer:
        for index, frame in enumerate(frames):
            writer.write(frame, 1_767_571_200.0)
            if index % 1000 == 999:
                writer.flush()  # what the timer does every second: ends a gzip member
    data = bytearray(path.read_bytes())
    middle = int(len(data) * where)
    data[middle : middle + 64] = bytes(64)  # a damaged disk block
    path.write_bytes(bytes(data))
    damaged = "gzip data (corrupt|is damaged)"
    with pytest.raises(CorruptLog, match=damaged) as info:
        list(read_frames(path))
    assert info.value.path == str(path) and info.value.line > 2
    # damaged deflate data decodes into wrong text until zlib notices: none of it is kept,
    # every member before the damaged one is
    kept, problems = _skip(path, damaged)
    assert 0 < len(kept) < len(frames)
    assert len(kept) % 1000 == 0
    assert kept == frames[: len(kept)]
    assert len(problems) == 1 and problems[0].line == len(kept) + 2


def test_a_cut_gzip_file_is_named_and_what_came_before_is_kept(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CorruptLog, match="trailer"):
        list(read_frames(path))
    frames, problems = _skip(path, "trailer")
    assert 0 < len(frames) < len(FRAMES) and frames == FRAMES[: len(frames)]
    assert "torn" in problems[0].reason  # the cut went through a line: said so, not mis-read


def test_concatenated_recordings_and_gzip_members_read_as_one(tmp_path: Path) -> None:
    a = _recording(tmp_path / "a.jsonl.gz", FRAMES[:100])
    b = _recording(tmp_path / "b.jsonl.gz", FRAMES[100:200])
    both = tmp_path / "both.jsonl.gz"
    both.write_bytes(a.read_bytes() + b.read_bytes())  # cat a.gz b.gz > both.gz
    assert [f.frame for f in read_frames(both)] == FRAMES[:200]


def test_lines_written_by_other_tools_take_the_slow_path(tmp_path: Path) -> None:
    path = tmp_path / "handmade.jsonl"
    rows = [
        {"aios_recording": 1, "url": None, "started_at": "2026-01-05T00:00:00Z", "types": None},
        {"frame": FRAMES[0], "t": "2026-01-05T00:00:00Z"},  # keys in another order
        {"t": "2026-01-05T00:00:01Z", "frame": FRAMES[1], "note": "extra keys are fine"},
    ]
    text = "\r\n".join(json.dumps(row, indent=None, separators=(", ", ": ")) for row in rows) + "\r\n"
    path.write_text(text)
    got = list(read_frames(path))
    assert [f.frame for f in got] == FRAMES[:2]
    assert got[1].received_at == "2026-01-05T00:00:01.000000Z"  # one form, whatever the writer


def test_a_large_recording_crosses_chunk_boundaries_intact(tmp_path: Path) -> None:
    # lines with multi-byte characters straddle the reader's 4 MiB chunks
    frames = [json.dumps({"event": "x", "data": {"s": "é☃" * (i % 700)}}, ensure_ascii=False) for i in range(12_000)]
    path = _recording(tmp_path / "big.jsonl", frames)
    assert path.stat().st_size > 8 << 20
    assert [f.frame for f in read_frames(path)] == frames


def test_an_unreadable_receive_time_is_named(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl", FRAMES[:3])
    with path.open("a") as handle:
        handle.write('{"t": "yesterday", "frame": "x"}\n')
        handle.write('{"t": "2026-01-05T01:00:00+01:00", "frame": "y"}\n')
    with pytest.raises(CorruptLog, match="unreadable receive time") as info:
        list(read_frames(path))
    assert info.value.line == 5
    got, _ = _skip(path, "unreadable receive time")
    assert got == [*FRAMES[:3], "y"]


def test_batches_say_where_a_recording_starts(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "r.jsonl", flush_interval=None, rotate_bytes=3_000) as writer:
        for frame in FRAMES[:200]:
            writer.write(frame)
    other = _recording(tmp_path / "other.jsonl", FRAMES[:5])
    both = tmp_path / "both.jsonl"
    both.write_text(other.read_text() + other.read_text())  # cat other other > both
    starts = [b.starts_recording for b in RecordingReader(writer.paths).batches()]
    assert starts[0] and not any(starts[1:])  # rotated parts continue the recording
    batches = list(RecordingReader(both).batches())
    assert [(b.starts_recording, len(b)) for b in batches] == [(True, 5), (True, 5)]
