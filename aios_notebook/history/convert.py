"""Converting JSONL recordings into an archive, one recording per process, every core busy.

Each helper process loads one recording exactly as ``EventStore.load`` does (the very tables live
ingestion builds) and writes its append-only tables as day files into a staging folder beside
the archive; the converting process, the archive's one writer, moves them in (leaving out rows
the archive holds already) and lists them in the manifest, recording by recording. A recording
converted before (same content) is skipped, so converting again adds nothing.

A recording is loaded whole by its process: rotate long recordings (``--rotate-mb``) so that a
part fits in one process's memory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exceptions import AIOSError, ConfigurationError
from ..protocol.dialects import get_dialect
from ..server.replay_dialect import recording_dialect
from ..store.archive import (
    ARCHIVE_TABLES,
    ArchiveError,
    ArchiveWriter,
    day_parts,
    remove_tree,
    source_id,
    write_part,
)
from ..store.schema import TABLES

__all__ = ["ConvertResult", "convert", "expand_sources"]


@dataclass
class ConvertResult:
    """What :func:`convert` did."""

    archive: Path
    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: int = 0
    rows: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def expand_sources(sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Recordings named by a path, a glob or a list of either, sorted within each glob.

    Raises:
        ConfigurationError: a glob or path that names no file.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    found: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(p for p in glob.glob(text) if os.path.isfile(p))
            if not matches:
                raise ConfigurationError(f"no recording matches {text!r}")
            found += [Path(m) for m in matches]
        elif os.path.isfile(text):
            found.append(Path(text))
        else:
            raise ConfigurationError(f"recording {text!r} does not exist")
    return list(dict.fromkeys(found))


def _stage(path: str, staging: str, on_error: str) -> tuple[list[tuple[str, dict[str, Any]]], int, str]:
    """In a helper process: load one recording, write its tables into ``staging``; returns the
    files, the frames and the dialect the recording was made in."""
    from ..store import EventStore

    # every append-only row kept; the latest-state tables, derived at query time, not built (0 rows)
    retention = {name: (None if name in ARCHIVE_TABLES else 0) for name in TABLES}
    store = EventStore.load(path, on_error=on_error,  # type: ignore[arg-type]
                            retention=retention, background=False)
    staged = []
    for name in ARCHIVE_TABLES:
        frame = store.table(name)
        if len(frame):
            for day, rows, places, seqs in day_parts(name, frame):
                staged.append(write_part(Path(staging), name, day, rows, places, seqs, False))
    return staged, store.frames, recording_dialect(path, on_error).name  # type: ignore[arg-type]


def convert(sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], archive: str | os.PathLike[str],
            *, workers: int | None = None, progress: bool = True, on_error: str = "raise") -> ConvertResult:
    """Convert recordings (a path, a glob such as ``'recordings/*.jsonl.gz'``, or a list) into
    the archive at ``archive`` (made when missing), one recording per process.

    Args:
        workers: processes (default: every core).
        progress: a progress bar (a widget in a notebook, a line on the terminal).
        on_error: ``"raise"`` (a damaged recording stops the conversion, naming file and
            line; what was converted before stays) or ``"skip"`` (load around damage).

    Raises:
        ConfigurationError: a glob matching nothing, a bad option.
        ArchiveError: another writer holds the archive, or it cannot be written.
        CorruptLog: a damaged recording (``on_error="raise"``).
    """
    if on_error not in ("raise", "skip"):
        raise ConfigurationError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    paths = expand_sources(sources)
    if workers is not None and workers < 1:
        raise ConfigurationError(f"workers must be >= 1, got {workers}")
    began = time.perf_counter()
    root = Path(archive)
    result = ConvertResult(root)
    with ArchiveWriter(root, source=", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")) as writer:
        todo = []
        for path in paths:
            identity = source_id(path)
            if writer.has_source(identity):
                result.skipped.append(str(path))
            else:
                todo.append((path, identity))
        staging = root / "_staging" / uuid.uuid4().hex[:12]
        staging.mkdir(parents=True, exist_ok=True)
        bar = _bar(len(todo), progress)
        try:
            count = min(len(todo), workers or os.cpu_count() or 1)
            if count <= 1:
                for path, identity in todo:
                    staged, frames, dialect = _stage(str(path), str(staging), on_error)
                    _adopt(writer, staging, path, identity, staged, frames, dialect, result, bar)
            elif todo:
                with ProcessPoolExecutor(count) as pool:
                    futures: list[tuple[Path, str, Future]] = [
                        (path, identity, pool.submit(_stage, str(path), str(staging), on_error))
                        for path, identity in todo
                    ]
                    try:
                        for path, identity, future in futures:  # in order: the archive's write order
                            staged, frames, dialect = future.result()
                            _adopt(writer, staging, path, identity, staged, frames, dialect, result, bar)
                    except BaseException:
                        for _, _, future in futures:
                            future.cancel()
                        raise
        except (AIOSError, OSError) as exc:
            if isinstance(exc, AIOSError):
                raise
            raise ArchiveError(f"{root}: converting failed: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
            remove_tree(staging)
            _remove_empty(root / "_staging")
    result.seconds = time.perf_counter() - began
    return result


def _adopt(writer: ArchiveWriter, staging: Path, path: Path, identity: str, staged: list[Any], frames: int,
           dialect: str, result: ConvertResult, bar: Any) -> None:
    rows = writer.adopt(staging, staged)
    if dialect != writer.manifest.get("dialect") and not get_dialect(dialect).native:
        # the frames' dialect, which Archive reads them in (an AIOS server's own); saved below
        writer.manifest["dialect"] = dialect
    writer.add_source(identity, {"path": str(path), "frames": frames, "rows": rows, "dialect": dialect})
    result.converted.append(str(path))
    result.events += frames
    result.rows += rows
    if bar is not None:
        elapsed = max(1e-9, float(bar.format_dict.get("elapsed") or 1e-9))
        bar.set_postfix_str(f"{result.events:,} events, {result.events / elapsed:,.0f}/s", refresh=False)
        bar.update(1)


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or not total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="recording", desc="converting")


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
