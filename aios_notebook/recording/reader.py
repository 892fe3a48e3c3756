"""Reading recordings: fast, streaming, and loud about damage.

A recording is read in large chunks (gzip decompressed incrementally, so a file cut short by a
crash still yields everything before the cut) and handed out as :class:`FrameBatch` columns.
Lines written by :mod:`.writer` take a fast path (no full ``json.loads`` of the line: the frame's
string literal is unescaped directly); anything else falls back to ``json.loads``.

Damage is never silently mis-read: a missing, empty, torn, non-JSON or gzip-corrupt file raises
:class:`~aios_notebook.exceptions.CorruptLog` naming the file and the line. With
``on_error="skip"`` the reader keeps what it can (everything before a gzip fault, every good line
around a bad one), lists each problem in ``reader.problems`` and warns once per file.
"""

from __future__ import annotations

import base64
import binascii
import glob
import json
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from json.decoder import scanstring  # type: ignore[attr-defined]  # json.loads's C string scanner; not in typeshed
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple, cast

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from ..arrow_pool import BULK_POOL
from ..exceptions import AIOSWarning, ConfigurationError, CorruptLog, RecordingError
from ..protocol.codec import parse_timestamp
from .format import FORMAT_VERSION, HEADER_KEY, format_received_at

__all__ = [
    "FrameBatch",
    "RecordedFrame",
    "RecordingHeader",
    "RecordingReader",
    "read_frames",
    "resolve_paths",
]

OnError = Literal["raise", "skip"]

_CHUNK = 4 << 20  # bytes read (or decompressed) at a time
_GZIP_PIECE = 64 << 10  # compressed bytes fed to zlib at a time
_GZIP_HOLD = 64 << 20  # decoded bytes of one gzip member held back until its CRC is checked
_GZIP_MAGIC = b"\x1f\x8b"
_FRAME_AT_32 = 'Z","frame":"'  # after '{"t":"' and a 26-character time: what the writer puts there
_HEADER = object()  # marks a header line met inside a file
_SNIPPET = 60
# the columnar path: lines exactly as the writer makes them, parsed by Arrow in one call per chunk
_LINE_SCHEMA = pa.schema([("t", pa.string()), ("frame", pa.string())])
_LINE_PARSE = pj.ParseOptions(explicit_schema=_LINE_SCHEMA, unexpected_field_behavior="error")
_LINE_READ = pj.ReadOptions(use_threads=True, block_size=1 << 20)
# format_received_at's one form, 2026-11-26T14:00:00.123456Z: the fixed characters, then digits
_TIME_FIXED = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: ".", 26: "Z"}
_TIME_DIGITS = [i for i in range(27) if i not in _TIME_FIXED]
_MIN_COLUMNS = 64 << 10  # bytes: below this the line loop is as quick


@dataclass(frozen=True)
class RecordingHeader:
    """The header line of one recording file."""

    path: Path
    version: int
    url: str | None
    started_at: str | None
    types: list[str] | None
    part: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class RecordedFrame(NamedTuple):
    """One frame of a recording: when it was received (ISO-Z) and the frame (str, or bytes if binary)."""

    received_at: str
    frame: str | bytes


class FrameBatch:
    """Consecutive frames of one file, as columns (what the bulk loader and replay consume).

    A batch read by the columnar path (see :meth:`_FileReader._columns`) holds Arrow arrays
    (``time_array``, ``frame_chunks``) and makes the Python lists only when asked: the bulk
    loader never asks, so no Python string is made per frame.
    """

    __slots__ = ("_frame_array", "_frames", "_received_at", "first_line", "frame_chunks", "path", "starts_recording",
                 "time_array")

    def __init__(self, path: Path, first_line: int, received_at: list[str] | None, frames: list[str | bytes] | None,
                 starts_recording: bool = False, *, time_array: pa.Array | None = None,
                 frame_chunks: list[pa.Array] | None = None) -> None:
        self.path = path
        self.first_line = first_line
        self._received_at = received_at
        self._frames = frames
        #: the first frames of a recording (part 0, or a file without header), not a continuation:
        #: the recording client connected afresh here
        self.starts_recording = starts_recording
        self.time_array = time_array  # receive times in the writer's one ISO form (Arrow strings)
        #: text frames (Arrow strings) in the pieces Arrow's reader made of them (a megabyte of
        #: lines each); None when read line by line. The loader joins several batches' pieces into
        #: its own batch in one copy, which joining each batch's pieces first would double.
        self.frame_chunks = frame_chunks
        self._frame_array: pa.Array | None = None

    @property
    def frame_array(self) -> pa.Array | None:
        """The text frames as one Arrow string array (None when read line by line)."""
        if self._frame_array is None and self.frame_chunks is not None:
            chunks = self.frame_chunks
            self._frame_array = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks, memory_pool=BULK_POOL)
        return self._frame_array

    @property
    def received_at(self) -> list[str]:
        """Receive times, ISO 8601 UTC with microseconds and ``Z``."""
        if self._received_at is None:  # then the batch was made from arrays: it has them
            self._received_at = cast("pa.Array", self.time_array).to_pylist()
        return self._received_at

    @property
    def frames(self) -> list[str | bytes]:
        """The frames: text as ``str``, binary frames as ``bytes``."""
        if self._frames is None:  # then the batch was made from arrays: it has them
            self._frames = pa.chunked_array(cast("list[pa.Array]", self.frame_chunks), pa.string()).to_pylist()
        return self._frames

    def __len__(self) -> int:
        if self._frames is None:
            return sum(map(len, cast("list[pa.Array]", self.frame_chunks)))
        return len(self._frames)


def resolve_paths(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files named by a path, a glob pattern, or a list of them (in the order given; globs sorted).

    Raises:
        CorruptLog: a named file does not exist, or a pattern matches nothing.
    """
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not items:
        raise ConfigurationError("no recording given")
    paths: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise CorruptLog(text, 0, "no recording matches this pattern")
            paths.extend(Path(m) for m in matches)
        else:
            path = Path(text)
            if not path.exists():
                raise CorruptLog(text, 0, "no such file")
            if path.is_dir():
                raise CorruptLog(text, 0, "is a folder, not a recording (give a file or a glob)")
            paths.append(path)
    return paths


def _file_order(path: Path, header: RecordingHeader | None) -> tuple[str, int, str]:
    # a file without a header sorts as part 0 with no started_at: before the dated ones
    if header is None:
        return "", 0, str(path)
    return header.started_at or "", header.part, str(path)


class RecordingReader:
    """Reads one recording, its rotated parts, or several recordings (a glob or a list).

    Files are read in the order of their headers' ``started_at`` then ``part`` (so the parts of a
    rotated recording, and recordings of consecutive days, come back in time order).

    Args:
        source: a path, a glob pattern, or a list of paths.
        on_error: ``"raise"`` (the default) raises :class:`CorruptLog` at the first problem;
            ``"skip"`` keeps every good line, records the problems in ``problems`` and warns.
    """

    def __init__(self, source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                 on_error: OnError = "raise", *, quiet: bool = False) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigurationError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        self.on_error = on_error
        self.quiet = quiet  # collect problems without warning (the caller warns: warn_problems)
        self.problems: list[CorruptLog] = []
        paths = resolve_paths(source)
        headers = {path: self._peek_header(path) for path in paths}
        if len(paths) > 1:
            paths.sort(key=lambda p: _file_order(p, headers[p]))
        self.paths = paths
        self._headers = headers

    @property
    def headers(self) -> list[RecordingHeader]:
        """The header of every file that has one, in reading order."""
        return [h for p in self.paths if (h := self._headers[p]) is not None]

    def __iter__(self) -> Iterator[RecordedFrame]:
        for batch in self.batches():
            yield from map(RecordedFrame, batch.received_at, batch.frames)

    def batches(self) -> Iterator[FrameBatch]:
        """Every frame of every file, in columns of up to a few thousand frames."""
        for path in self.paths:
            before = len(self.problems)
            try:
                yield from _FileReader(path, self).batches()
            finally:
                if not self.quiet:
                    self._warn(self.problems[before:])

    def header_of(self, path: Path) -> RecordingHeader | None:
        """The header of one of ``paths`` (None when it has none)."""
        return self._headers.get(path)

    def warn_problems(self) -> None:
        """One warning per file with problems (for readers made with ``quiet=True``)."""
        by_file: dict[str, list[CorruptLog]] = {}
        for problem in self.problems:
            by_file.setdefault(problem.path, []).append(problem)
        for problems in by_file.values():
            self._warn(problems)

    def count(self) -> int:
        """Number of frames (reads everything)."""
        return sum(len(b) for b in self.batches())

    # -- problems -------------------------------------------------------------------------
    def _problem(self, path: Path, line: int, reason: str) -> None:
        problem = CorruptLog(str(path), line, reason)
        if self.on_error == "raise":
            raise problem
        self.problems.append(problem)

    @staticmethod
    def _warn(problems: list[CorruptLog]) -> None:
        # one warning per file, however many lines were damaged
        if problems:
            more = f" (and {len(problems) - 1} more problem(s) in {problems[0].path})" if len(problems) > 1 else ""
            warnings.warn(f"skipped: {problems[0]}{more}", AIOSWarning, stacklevel=3)

    def _peek_header(self, path: Path) -> RecordingHeader | None:
        # only to order files: damage is reported when the file is read
        try:
            with _open(path) as handle:
                first = handle.readline(1 << 16)
            obj = json.loads(first)
        except (OSError, EOFError, ValueError, zlib.error):
            return None
        return _header(path, obj)


def read_frames(source: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                on_error: OnError = "raise") -> Iterator[RecordedFrame]:
    """Every frame of a recording (or glob / list of them), in order: ``(received_at, frame)``."""
    return iter(RecordingReader(source, on_error))


def _open(path: Path) -> IO[bytes]:
    import gzip

    handle = open(path, "rb")  # noqa: SIM115 (returned)
    if handle.read(2) == _GZIP_MAGIC:
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def _header(path: Path, obj: Any) -> RecordingHeader | None:
    if not isinstance(obj, dict) or HEADER_KEY not in obj:
        return None
    version = obj.get(HEADER_KEY)
    types = obj.get("types")
    part = obj.get("part")
    known = {HEADER_KEY, "url", "started_at", "types", "part"}
    return RecordingHeader(
        path=path,
        version=version if isinstance(version, int) else 0,
        url=obj.get("url") if isinstance(obj.get("url"), str) else None,
        started_at=obj.get("started_at") if isinstance(obj.get("started_at"), str) else None,
        types=[t for t in types if isinstance(t, str)] if isinstance(types, list) else None,
        part=part if isinstance(part, int) else 0,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def _writer_times(times: pa.Array) -> bool:
    """Whether every time is in the writer's one form (27 ASCII characters, checked by position
    on the array's bytes: no Python string per time)."""
    offsets = np.frombuffer(times.buffers()[1], np.int32, len(times) + 1, times.offset * 4)
    if not len(times) or offsets[-1] - offsets[0] != 27 * len(times) or (np.diff(offsets) != 27).any():
        return len(times) == 0
    data = np.frombuffer(times.buffers()[2], np.uint8, 27 * len(times), int(offsets[0])).reshape(-1, 27)
    fixed = all((data[:, i] == ord(c)).all() for i, c in _TIME_FIXED.items())
    return fixed and bool(((data[:, _TIME_DIGITS] - 48) < 10).all())


def _snippet(text: str) -> str:
    return repr(text if len(text) <= _SNIPPET else text[:_SNIPPET] + "...")


class _FileReader:
    """Reads one file into batches; reports problems through the owning reader."""

    def __init__(self, path: Path, owner: RecordingReader) -> None:
        self.path = path
        self.owner = owner
        self.line = 0  # lines fully read so far
        self.gzipped = False
        self.damaged = False  # a bad line in gzip data: what follows cannot be trusted
        header = owner.header_of(path)
        self.fresh = header is None or header.part == 0  # the next batch starts a recording

    def batches(self) -> Iterator[FrameBatch]:
        # bytes until a block of lines needs text: the writer's lines are ASCII, and the columnar
        # path hands them to Arrow as they are read (decoding and encoding again cost as much)
        carry = b""
        started = False  # the first line (the header) has been seen
        for chunk, problem in self._chunks():
            block = carry + chunk
            cut = block.rfind(b"\n") + 1
            carry = block[cut:]
            complete: bytes | memoryview
            ascii_only = block.isascii()
            if ascii_only:
                # a view of the complete lines: the columnar path hands them to Arrow as they lie
                # (slicing them off the block was a copy of every byte of the file)
                complete = memoryview(block)[:cut]
            else:
                lines = block[:cut]
                ascii_only = lines.isascii()  # else only the torn line after them was not
                if not ascii_only:
                    try:
                        lines.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        # keep the lines before the bad byte; the line it is in is torn there
                        good = lines[: exc.start]
                        cut = good.rfind(b"\n") + 1
                        lines, carry = good[:cut], good[cut:]
                        problem = f"not UTF-8 text ({exc.reason}): a binary or damaged file"
                complete = lines
            if complete and not started:
                started = True
                end = block.find(b"\n")  # within complete: it ends with one
                if self._first_line(str(complete[:end], "utf-8")):
                    complete = complete[end + 1 :]
            if complete:
                yield from self._parse_block(complete, ascii_only)
                if self.damaged:
                    return
            if problem is not None:
                # the stream broke: the text after the last newline goes with it
                if carry:
                    problem += f"; line {self.line + 1} is torn: {_snippet(carry.decode('utf-8', 'replace'))}"
                self._report(self.line + 1, problem)
                return
        if not started and not carry:
            self._report(1, "empty file: no header line")
            return
        if carry:  # no newline at the end: a complete line, or one torn by a crash
            try:
                text = carry.decode("utf-8")
            except UnicodeDecodeError as exc:
                torn = _snippet(carry[: exc.start].decode("utf-8", "replace"))
                self._report(self.line + 1, f"not UTF-8 text at the end of the file ({exc.reason}); "
                                            f"line {self.line + 1} is torn: {torn}")
                return
            if not started and self._first_line(text):
                return
            yield from self._parse([text], last=True)

    def _parse_block(self, data: bytes | memoryview, ascii_only: bool) -> Iterator[FrameBatch]:
        """Complete lines (``data`` ends with a newline, valid UTF-8): in columns when every
        line is the writer's own, else line by line."""
        batch = self._columns(data) if ascii_only and len(data) >= _MIN_COLUMNS else None
        if batch is not None:
            yield batch
            return
        lines = str(data, "utf-8").split("\n")
        lines.pop()  # the empty string after the last newline
        yield from self._parse(lines)

    def _columns(self, data: bytes | memoryview) -> FrameBatch | None:
        """The lines (ASCII) as Arrow columns, or None unless every one is a plain frame line
        exactly as the writer makes it; the line loop then reads them (and names any damage by
        its line).

        Arrow is strict where it matters: it rejects a torn or non-JSON line, an unknown key (a
        header, a binary frame), a duplicate key, a lone surrogate; a blank line or two objects on
        one line change the row count; a missing key is a null; a time not in the writer's form
        fails the shape check.
        """
        try:
            table = pj.read_json(pa.py_buffer(data), read_options=_LINE_READ, parse_options=_LINE_PARSE,
                                 memory_pool=BULK_POOL)
        except (pa.ArrowException, ValueError):
            return None
        count = int(np.count_nonzero(np.frombuffer(data, np.uint8) == 10))  # 5x bytes.count
        if table.num_rows != count:
            return None
        times = table.column("t").combine_chunks()
        frames = table.column("frame")  # left in Arrow's pieces: see FrameBatch.frame_chunks
        if times.null_count or frames.null_count or not _writer_times(times):
            return None
        first_line = self.line + 1
        self.line += count
        return FrameBatch(self.path, first_line, None, None, self._take_fresh(), time_array=times,
                          frame_chunks=frames.chunks)

    # -- low level ------------------------------------------------------------------------
    def _report(self, line: int, reason: str) -> None:
        self.owner._problem(self.path, line, reason)

    def _report_line(self, reason: str) -> None:
        if self.gzipped:
            # the writer never compresses a bad line: this is damaged deflate data, and what it
            # decodes into next may look valid while being wrong, so the file ends here
            self.damaged = True
            reason += "; the gzip data is damaged from here on: the rest of the file is not read"
        self._report(self.line, reason)

    def _chunks(self) -> Iterator[tuple[bytes, str | None]]:
        """Byte chunks; a chunk with a problem (a gzip fault) is the file's last."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except OSError as exc:
            yield b"", f"cannot read: {exc.strerror or exc}"
            return
        with handle:
            gzipped = self.gzipped = handle.read(2) == _GZIP_MAGIC
            handle.seek(0)
            # gzip members are small (the writer ends one at every flush): joined up to a chunk,
            # so that the columnar path sees enough lines at once
            pending: list[bytes] = []
            size = 0
            for data, problem in self._gunzip(handle) if gzipped else self._plain(handle):
                pending.append(data)
                size += len(data)
                if problem is not None or size >= _CHUNK:
                    yield b"".join(pending), problem
                    if problem is not None:
                        return
                    pending, size = [], 0
            if pending:
                yield b"".join(pending), None

    @staticmethod
    def _plain(handle: IO[bytes]) -> Iterator[tuple[bytes, str | None]]:
        while data := handle.read(_CHUNK):
            yield data, None

    @staticmethod
    def _gunzip(handle: IO[bytes]) -> Iterator[tuple[bytes, str | None]]:
        """Decompressed data, released one gzip member at a time once its CRC has been checked.

        The writer ends a member at every flush, so a member is about a second of frames. Damaged
        deflate data decodes into wrong text until zlib notices (at the latest at the member's
        CRC), so a member is held back until it checks out and dropped whole when it does not.
        A truncated member (a crash, a cut file) is released: deflate decodes a prefix of its
        input exactly, only the end is missing.
        """
        decompressor = zlib.decompressobj(wbits=31)
        held: list[bytes] = []
        held_size = 0
        finished = False
        while not finished and (data := handle.read(_GZIP_PIECE)):
            while data:
                try:
                    out = decompressor.decompress(data)
                except zlib.error as exc:
                    lost = f"; {held_size:,} decoded bytes since the last verified member dropped" if held_size else ""
                    yield b"", f"gzip data corrupt ({exc}){lost}"
                    return
                if out:
                    held.append(out)
                    held_size += len(out)
                if not decompressor.eof:
                    if held_size > _GZIP_HOLD:
                        # one huge member (written by another tool): it cannot all be held back
                        yield b"".join(held), None
                        held, held_size = [], 0
                    break
                yield b"".join(held), None  # this member's CRC and size checked out
                held, held_size = [], 0
                # concatenated members are one stream (as gzip -d reads them); trailing zero
                # padding is tolerated, as gzip does
                data = decompressor.unused_data
                if data.strip(b"\x00"):
                    decompressor = zlib.decompressobj(wbits=31)
                else:
                    finished = True
                    break
        if not finished:
            held.append(decompressor.flush())
            yield b"".join(held), None
            yield b"", "gzip stream ends without its trailer (truncated: cut short while recording?)"

    def _first_line(self, line: str) -> bool:
        """Check the first line: True when it is the header (consumed), False to read it as a frame."""
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        header = _header(self.path, obj)
        if header is not None:
            if not 1 <= header.version <= FORMAT_VERSION:
                raise RecordingError(
                    f"{self.path}: recording format version {header.version!r}; this kit reads version {FORMAT_VERSION}"
                )
            self.line = 1
            return True
        if isinstance(obj, dict) and "t" in obj:
            self._report(1, "no header line: the recording starts with a frame")
            return False
        self.line = 1
        self._report(1, f"not an aios recording: the first line is no header: {_snippet(line)}")
        return True  # consumed (reported, not read as a frame)

    def _parse(self, lines: list[str], last: bool = False) -> Iterator[FrameBatch]:
        received: list[str] = []
        frames: list[str | bytes] = []
        first_line = self.line + 1
        add_t = received.append
        add_f = frames.append
        for text in lines:
            self.line += 1
            # fast path: exactly the shape the writer produces, receive time included
            if text.startswith('{"t":"') and text[32:44] == _FRAME_AT_32:
                try:
                    frame, end = scanstring(text, 44)
                except ValueError:
                    end = -1
                if end > 0 and text[end:] == "}" and text[16] == "T":
                    add_t(text[6:33])
                    add_f(frame)
                    continue
            row = self._slow_line(text, last)
            if row is None:
                if self.damaged:
                    break
                continue
            if row[0] is _HEADER:
                # a header inside the file: recordings concatenated (cat a.jsonl b.jsonl)
                if frames:
                    yield FrameBatch(self.path, first_line, received, frames, self._take_fresh())
                    received, frames = [], []
                    add_t, add_f = received.append, frames.append
                first_line = self.line + 1
                self.fresh = self.fresh or row[1] == 0
                continue
            add_t(row[0])
            add_f(row[1])
        if frames:
            yield FrameBatch(self.path, first_line, received, frames, self._take_fresh())

    def _take_fresh(self) -> bool:
        fresh, self.fresh = self.fresh, False
        return fresh

    def _slow_line(self, text: str, last: bool) -> tuple[Any, Any] | None:
        """``(received_at, frame)``, ``(_HEADER, part)`` for a header, or None (reported)."""
        stripped = text.strip()
        if not stripped:
            self._report_line("blank line")
            return None
        try:
            obj = json.loads(stripped)
        except ValueError as exc:
            if last:
                self._report_line(f"torn last line (cut short while recording?): {_snippet(stripped)}")
            else:
                # not always a JSONDecodeError: an integer over 4300 digits raises a plain ValueError
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                self._report_line(f"not JSON ({reason}): {_snippet(stripped)}")
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
            header = _header(self.path, obj)
            if header is not None:
                return _HEADER, header.part
            self._report_line(f"not a frame line (needs 't' and 'frame' or 'binary'): {_snippet(stripped)}")
            return None
        moment = parse_timestamp(obj["t"])
        if moment is None:
            self._report_line(f"unreadable receive time {_snippet(obj['t'])}")
            return None
        received_at = format_received_at(moment)  # one form: the loader converts them in bulk
        frame = obj.get("frame")
        if isinstance(frame, str):
            return received_at, frame
        encoded = obj.get("binary")
        if isinstance(encoded, str):
            try:
                return received_at, base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                self._report_line("binary frame is not valid base64")
                return None
        self._report_line(f"not a frame line (needs 't' and 'frame' or 'binary'): {_snippet(stripped)}")
        return None
