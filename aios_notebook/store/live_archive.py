"""Archiving a live client's frames as they come (``client.archive(path)``): the frames are parsed
into tables by a store of their own, exactly as any store parses them, and handed to the
archive's writer (:mod:`.archive`) every so often. It sits above both: the writer knows nothing
of stores, and the store writes archives through the writer."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..exceptions import AIOSWarning, ConfigurationError
from ..protocol.dialects import AUTO, DIALECTS
from . import bulk
from .archive import ARCHIVE_TABLES, ArchiveError, ArchiveWriter, public_url
from .load import FrameTranslator, foreign_dialect
from .store import EventStore

__all__ = ["LiveArchiver"]


class LiveArchiver:
    """Appends the frames a client receives to an archive, every ``interval`` seconds or
    ``rows`` frames (``client.archive(path)`` returns one).

    Frames are parsed into tables exactly as the store parses them (a store of their own, so
    the client's store may be anything) and written as small tail files, which
    :meth:`ArchiveWriter.compact` merges into day files once their day is over. Frames only,
    like a recording: the client's REST snapshots and connection notes are not frames.

    Attributes:
        path: the archive; ``frames`` taken so far; ``rows`` written; ``error``: the write
            error that stopped it, if any.
    """

    def __init__(self, add_listener: Callable[[Callable[[Any, Any], None]], Any], path: str | os.PathLike[str], *,
                 interval: float = 60.0, rows: int = 100_000, source: str | None = None,
                 compact: bool = True, dialect: Callable[[], str] | None = None) -> None:
        if not interval > 0:
            raise ConfigurationError(f"interval must be > 0 seconds, got {interval!r}")
        if not (isinstance(rows, int) and rows >= 1):
            raise ConfigurationError(f"rows must be a whole number >= 1, got {rows!r}")
        self.path = Path(path)
        self.interval = float(interval)
        self.limit = rows
        self.compact_days = compact
        # the client's dialect once it is known (its greeting): another dialect's frames are
        # translated, as the client's store takes them, by a session of the archiver's own
        self._dialect = dialect
        self._translator: FrameTranslator | None = None
        self._writer = ArchiveWriter(self.path, source=public_url(source))
        self._waiting: list[tuple[Any, int]] = []
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.frames = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="aios-archiver", daemon=True)
        self._thread.start()
        self._handle = add_listener(self._on_frame)

    @property
    def rows(self) -> int:
        return self._writer.rows_written

    def _on_frame(self, frame: Any, received_at: Any = None) -> None:
        if self._stopped.is_set():
            return
        if isinstance(received_at, datetime):
            moment = int(received_at.timestamp() * 1e6) * 1000
        elif isinstance(received_at, (int, float)):
            moment = int(received_at * 1e9)
        else:
            moment = time.time_ns()
        self._waiting.append((frame, moment))  # one append: safe from the I/O thread
        self.frames += 1
        if len(self._waiting) >= self.limit:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write the frames waiting now; returns the rows written."""
        count = len(self._waiting)
        if not count or self.error is not None:
            return 0
        batch = self._waiting[:count]
        del self._waiting[:count]
        try:
            store = EventStore(retention={name: None for name in ARCHIVE_TABLES}, background=False)
            frames: list[Any] = [f for f, _ in batch]
            moments = np.fromiter((t for _, t in batch), np.int64, count)
            translator = self._translator_for(frames)
            if translator is not None:
                frames, moments = translator.batch(frames, moments)
            bulk.ingest_frames(store, frames, moments)
            written = self._writer.write({name: store.table(name) for name in ARCHIVE_TABLES})
            if self.compact_days:
                self._writer.compact()
            return written
        except (OSError, ArchiveError, pa.ArrowException) as exc:
            self.error = exc
            warnings.warn(f"{self.path}: archiving stopped working: {exc}", AIOSWarning, stacklevel=2)
            return 0

    def _translator_for(self, frames: list[Any]) -> FrameTranslator | None:
        if self._translator is None:
            name = self._dialect() if self._dialect is not None else AUTO
            dialect = DIALECTS.get(name) if name != AUTO else foreign_dialect(frames)
            if dialect is not None and not dialect.native:
                self._translator = FrameTranslator(dialect)
                self._writer.manifest["dialect"] = dialect.name  # saved with the rows below
        return self._translator

    def stop(self) -> LiveArchiver:
        """Stop listening, write what waits, compact finished days, release the archive."""
        if self._stopped.is_set():
            return self
        close = getattr(self._handle, "close", None) or getattr(self._handle, "remove", None)
        if close is not None:
            close()
        self._stopped.set()
        self._wake.set()
        self._thread.join()
        self.flush()
        self._writer.close()
        return self

    @property
    def running(self) -> bool:
        return not self._stopped.is_set()

    def __enter__(self) -> LiveArchiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiveArchiver {state} {self.path}: {self.frames:,} frames, {self.rows:,} rows>"
