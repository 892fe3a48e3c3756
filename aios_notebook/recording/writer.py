"""Writing recordings: a thread-safe JSONL writer with a flush timer, gzip and rotation by size.

Durability: lines go to a buffer and a timer thread flushes it to the OS every ``flush_interval``
seconds (0.5 s by default), so a ``kill -9`` loses at most the last interval: under a second even
when a busy machine delays the timer; flushing per line would cost a system call per frame. A gzip recording ends a gzip member at every flush (gzip
files may hold many members, read as one stream): each second of frames carries its own CRC, so
what was flushed before a crash is complete and verifiable, and the reader can tell a damaged
member from good ones instead of decoding garbage.

Rotation: with ``rotate_bytes``, a part that reaches that size on disk (compressed size for
``.gz``, which grows when the compressor emits data: at the latest at every flush) is closed and the next one
opened beside it (``rec.jsonl``, ``rec.part0001.jsonl``, ``rec.part0002.jsonl`` ...), each with
its own header; ``EventStore.load("rec*.jsonl")`` reads them back in order.
"""

from __future__ import annotations

import builtins
import glob
import gzip
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..exceptions import AIOSWarning, RecordingError
from .format import format_received_at, frame_line, header_line

__all__ = ["Recorder", "RecordingWriter", "part_path"]


def part_path(path: str | os.PathLike[str], part: int) -> Path:
    """The file of part ``part`` of a rotated recording (part 0 is ``path`` itself)."""
    path = Path(path)
    if part == 0:
        return path
    return path.with_name(_part_name(path.name, f"{part:04d}"))


def _part_name(name: str, label: str) -> str:
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        stem, suffix = name, ""
    return f"{stem}.part{label}" + (f".{suffix}" if suffix else "") + (".gz" if gz else "")


def _gzip_member(raw: IO[bytes]) -> IO[bytes]:
    # mtime=0 and no name: the same frames give the same bytes
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)  # type: ignore[return-value]


class RecordingWriter:
    """Writes frames to a recording file as they are received.

    Args:
        path: the file; a name ending in ``.gz`` is gzip-compressed.
        url: the server's URL, kept in the header without credentials.
        types: the subscription types being recorded (kept in the header).
        rotate_bytes: start a new part when the current one reaches this size on disk.
        flush_interval: seconds between flushes by the timer thread (at most this much is lost
            on a crash); 0 or None disables the timer (flush by hand).
        overwrite: replace an existing recording (and its parts) instead of refusing.
        dialect: the server's dialect (kept in the header): ``EventStore.load`` and ``replay``
            read the frames as the client did.

    ``write`` may be called from any thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        url: str | None = None,
        types: Iterable[str] | None = None,
        rotate_bytes: int | None = None,
        flush_interval: float | None = 0.5,
        overwrite: bool = False,
        dialect: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.url = url
        self.dialect = dialect
        self.types = sorted(types) if types is not None else None
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise RecordingError(f"rotate_bytes must be positive, got {rotate_bytes}")
        self.rotate_bytes = rotate_bytes
        self.compress = self.path.name.endswith(".gz")
        self.started_at = datetime.now(timezone.utc)
        self.events = 0
        self.paths: list[Path] = []
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed_bytes = 0
        self._raw: IO[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._dirty = False  # written since the last flush
        self._claim(overwrite)
        self._open_part(0)
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if flush_interval:
            self._timer = threading.Thread(
                target=self._flush_loop, args=(float(flush_interval),),
                name=f"aios-recording-flush:{self.path.name}", daemon=True,
            )
            self._timer.start()

    # -- public API -----------------------------------------------------------------------
    @property
    def current_path(self) -> Path:
        """The part being written."""
        return self.paths[-1]

    @property
    def bytes(self) -> int:
        """Bytes of the recording on disk or in its buffer (compressed size for ``.gz``)."""
        with self._lock:
            current = self._raw.tell() if self._raw is not None and not self._raw.closed else 0
            return self._closed_bytes + current

    @property
    def closed(self) -> bool:
        return self._out is None

    # builtins.bytes: in this class body ``bytes`` is the property above
    def write(self, frame: str | builtins.bytes | bytearray | memoryview,
              received_at: datetime | float | str | None = None) -> None:
        """Append one frame as received (``received_at``: when; default now)."""
        line = frame_line(frame, format_received_at(received_at)).encode("ascii")
        with self._lock:
            if self._out is None:
                raise RecordingError(f"{self.path}: the recording is closed")
            self._out.write(line)
            self._dirty = True
            self.events += 1
            if self.rotate_bytes is not None and self._part_size() >= self.rotate_bytes:
                self._rotate()

    def flush(self) -> None:
        """Hand everything written so far to the operating system."""
        with self._lock:
            out, raw = self._out, self._raw
            if out is None or raw is None:
                return
            if out is not raw and self._dirty:
                # end the gzip member: its CRC lets the reader verify this second of frames on
                # its own, so damage elsewhere in the file never garbles it
                out.close()  # writes the member's trailer; the file itself stays open
                self._out = _gzip_member(raw)
            self._dirty = False
            raw.flush()

    def close(self) -> None:
        """Flush, stop the timer and close the file (a gzip file gets its trailer)."""
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join()
        with self._lock:
            self._close_part()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"RecordingWriter({str(self.path)!r}, {state}, events={self.events})"

    # -- internals ------------------------------------------------------------------------
    def _claim(self, overwrite: bool) -> None:
        existing = [self.path] if self.path.exists() else []
        existing += sorted(self.path.parent.glob(_part_name(glob.escape(self.path.name), "[0-9]" * 4)))
        if existing and not overwrite:
            raise RecordingError(f"{self.path}: a recording is already there (pass overwrite=True to replace it)")
        for old in existing:
            old.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open_part(self, part: int) -> None:
        path = part_path(self.path, part)
        try:
            raw = open(path, "wb", buffering=1 << 16)  # noqa: SIM115 (closed in _close_part)
        except OSError as exc:
            raise RecordingError(f"{path}: cannot write: {exc.strerror or exc}") from exc
        self._raw = raw
        self._out = _gzip_member(raw) if self.compress else raw
        self.paths.append(path)
        started = self.started_at if part == 0 else datetime.now(timezone.utc)
        extra = {"dialect": self.dialect} if self.dialect is not None else {}
        self._out.write(header_line(self.url, started, self.types, part, **extra).encode("ascii"))

    def _part_size(self) -> int:
        assert self._raw is not None
        return self._raw.tell()

    def _close_part(self) -> None:
        out, raw = self._out, self._raw
        self._out = None
        if out is None or raw is None:
            return
        try:
            out.close()  # GzipFile.close does not close the fileobj it was given
            if raw is not out:
                raw.close()
        finally:
            self._closed_bytes += os.path.getsize(self.paths[-1])
            self._raw = None

    def _rotate(self) -> None:
        self._close_part()
        self._open_part(len(self.paths))

    def _flush_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except (OSError, ValueError) as exc:  # disk full, or closed underneath us
                self.error = exc
                warnings.warn(f"{self.path}: flushing the recording failed: {exc}", AIOSWarning, stacklevel=2)
                return


class Recorder:
    """Records every frame a client receives into a file: ``client.record(path)`` returns one.

    Frames only: what the client merges from REST snapshots, and its own notes about the
    connection (reconnects, connection errors), are not frames and are not in the recording.

    Attributes:
        path: the recording (the first part when rotated); ``paths`` lists every part.
        events: frames recorded so far; ``bytes``: size on disk so far.
    """

    def __init__(self, add_listener: Callable[[Callable[[Any, Any], None]], Any],
                 path: str | os.PathLike[str], **writer_options: Any) -> None:
        self._writer = RecordingWriter(path, **writer_options)
        self._stopped = False
        self._problem_reported = False
        self._handle = add_listener(self._on_frame)

    def _on_frame(self, frame: Any, received_at: Any = None) -> None:
        if self._stopped:
            return
        try:
            self._writer.write(frame, received_at)
        except (OSError, RecordingError, ValueError) as exc:
            # never break the client's I/O thread; say it once
            if not self._problem_reported:
                self._problem_reported = True
                self._writer.error = exc
                warnings.warn(f"{self.path}: recording stopped working: {exc}", AIOSWarning, stacklevel=2)

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def paths(self) -> list[Path]:
        return list(self._writer.paths)

    @property
    def events(self) -> int:
        return self._writer.events

    @property
    def bytes(self) -> int:
        return self._writer.bytes

    @property
    def running(self) -> bool:
        return not self._stopped

    @property
    def error(self) -> BaseException | None:
        """The write error that stopped the recording, if any."""
        return self._writer.error

    def flush(self) -> None:
        self._writer.flush()

    def stop(self) -> Recorder:
        """Stop listening and close the file. Idempotent; returns self."""
        if not self._stopped:
            self._stopped = True
            handle = self._handle
            close = getattr(handle, "close", None) or (handle if callable(handle) else None)
            if close is not None:
                close()
            self._writer.close()
        return self

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "recording" if not self._stopped else "stopped"
        return f"Recorder({str(self.path)!r}, {state}, events={self.events}, bytes={self.bytes})"
