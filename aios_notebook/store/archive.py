"""Writing the Parquet archive of the stream: the store's append-only tables, one folder per table
and one per day, appended to by one writer at a time (docs/design.md, section history/).

Layout::

    archive/_archive.json                                 the manifest (see below)
    archive/_archive.lock                                 held by the one writer
    archive/job_events/date=2026-01-05/part-....parquet   zstd, row groups of 128k rows

Only the append-only tables are written (job_events, agent_events, dag_step_events, insights,
metrics, errors, raw): latest-state tables are derived from them when read (the last event per
key, see :mod:`aios_notebook.history`), so the archive only ever grows. Each file holds exactly
its table's columns and dtypes (categoricals as dictionary columns, timestamps UTC, lists and
dicts as JSON text, as :mod:`.parquet` writes them).

A row's day is the day of its event time: ``timestamp`` (else ``received_at``) for the event
tables, ``received_at`` for errors, and for ``raw`` the timestamp inside the frame (the time a
backtest places it at), else when it was received. Raw rows are thus found by event time too.

Safety: a file is written under a temporary name (starting with a dot) and renamed once complete;
the manifest (``_archive.json``), rewritten the same way after every write, lists every file with
its rows and its seq and time ranges, and readers read only the files it lists: a reader or a
crash never sees half a file, and a file renamed but not yet listed is invisible. A writer takes
``_archive.lock`` (created exclusively; a lock left by a process that died is taken over) and, on
taking it, removes what a crashed writer left: temporary files and files the manifest does not list.

Duplicates: a row whose seq falls inside the seq range *and* time range of a file already holding
that table is not written again (re-converting a recording, a resync replaying events), and a
recording converted before is recognised by its content and skipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..exceptions import RecordingError
from ..storelike import StoreLike
from .parquet import arrow_frame, frame_arrow, json_columns
from .schema import APPEND_TABLES, TABLES

__all__ = [
    "ARCHIVE_TABLES",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "ROW_GROUP_ROWS",
    "ArchiveError",
    "ArchiveLock",
    "ArchiveWriter",
    "arrow_frame_of",
    "arrow_schema",
    "check_schema",
    "day_parts",
    "frame_times",
    "place_ns",
    "public_url",
    "read_manifest",
    "read_part",
    "remove_tree",
    "source_id",
    "write_part",
    "write_store",
]

#: the version of the layout and manifest; readers refuse a newer one
FORMAT_VERSION = 1
MANIFEST_NAME = "_archive.json"
LOCK_NAME = "_archive.lock"
#: the files' metadata key (format version, table)
FILE_META_KEY = b"aios_archive"
#: rows per row group: about 128k, large enough for zstd and DuckDB's parallel scans
ROW_GROUP_ROWS = 131_072
#: the tables an archive holds, in the store's order
ARCHIVE_TABLES: tuple[str, ...] = APPEND_TABLES
DIALECT = "aios-v2"

_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400 * 1_000_000_000
# the first "timestamp" in a frame, text or number: the very match backtests place frames by
_TIMESTAMP = r'"timestamp"\s*:\s*(?P<v>"[^"]*"|-?\d+(?:\.\d+)?)'


class ArchiveError(RecordingError):
    """An archive cannot be read or written: names the file and what is wrong with it."""


# -- schema and placement ------------------------------------------------------------------------
_KIND_TYPES: dict[str, pa.DataType] = {
    "cat": pa.dictionary(pa.int32(), pa.string()),
    "text": pa.large_string(),
    "obj": pa.large_string(),  # JSON text
    "f64": pa.float64(),
    "f32": pa.float32(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "ts": pa.timestamp("ns", tz="UTC"),
    "bool": pa.bool_(),
}


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema of table ``name`` in the archive (every file of it has exactly this)."""
    return pa.schema([pa.field(c.name, _KIND_TYPES[c.kind]) for c in TABLES[name].columns])


def _canonical(name: str, table: pa.Table) -> pa.Table:
    """``table`` cast to the archive's schema (pandas makes int8 codes, or null dictionaries for
    an empty categorical), keeping pandas' metadata so that the dtypes come back."""
    schema = arrow_schema(name)
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            if pa.types.is_dictionary(column.type) and pa.types.is_null(column.type.value_type):
                column = pa.nulls(len(column), pa.string()).dictionary_encode()
            column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(table.schema.metadata))


def frame_times(texts: Any, fallback: np.ndarray) -> np.ndarray:
    """Event time (int64 ns) of raw frames: their first ``"timestamp"`` (ISO text or epoch
    seconds), else ``fallback`` (their receive time)."""
    # chunk by chunk: combining the chunks of a million frames copies their text (0.8 s), and
    # Arrow's functions take chunked arrays as they are
    array = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.large_string())
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    out = np.array(fallback, dtype=np.int64, copy=True)
    if not len(array):
        return out
    found = pc.struct_field(pc.extract_regex(array, _TIMESTAMP), "v")
    quoted = pc.starts_with(found, '"').fill_null(False).to_numpy(zero_copy_only=False)
    numeric = (~quoted) & pc.is_valid(found).to_numpy(zero_copy_only=False)
    if quoted.any():
        where = np.flatnonzero(quoted)
        ns = _iso_ns(pc.utf8_slice_codeunits(found if quoted.all() else found.filter(pa.array(quoted)), 1, -1))
        good = ns != _NAT
        out[where[good]] = ns[good]
    if numeric.any():
        texts = found.filter(pa.array(numeric)).to_numpy(zero_copy_only=False)
        seconds = pd.to_numeric(pd.Series(texts), errors="coerce").to_numpy(float)
        where = np.flatnonzero(numeric)
        good = np.isfinite(seconds) & (np.abs(seconds) < 9.2e9)
        out[where[good]] = np.round(seconds[good] * 1e9).astype(np.int64)
    return out


def _iso_ns(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """ISO 8601 texts as int64 ns (NaT's value where not a time). Arrow's cast reads the usual
    forms (a zone or Z) 25 times faster than pandas; a column with any text it refuses, naive
    times included, goes to pandas whole, whose reading is the rule."""
    try:
        return pc.cast(texts, pa.timestamp("ns", "UTC")).cast(pa.int64()).fill_null(_NAT).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(pd.Series(texts.to_numpy(zero_copy_only=False)), utc=True, format="ISO8601",
                                errors="coerce")
        return parsed.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _ns(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    return values.view(np.int64)


def place_ns(name: str, frame: pd.DataFrame) -> np.ndarray:
    """The time (int64 ns, int64 min when none) that places each row of table ``name`` in the
    archive: its day folder, and the windows of reads (see the module docstring)."""
    if not len(frame):
        return np.empty(0, np.int64)
    if name == "raw":  # Arrow's strings as they are: no Python string per frame
        return frame_times(pa.Array.from_pandas(frame["text"]), _ns(frame["received_at"]))
    if name == "errors":
        return _ns(frame["received_at"])
    out = _ns(frame["timestamp"]).copy()
    backup = "created_at" if name == "insights" else "received_at" if "received_at" in frame.columns else None
    if backup is not None:
        missing = out == _NAT
        if missing.any():
            out[missing] = _ns(frame[backup])[missing]
    return out


def _day(ns: int) -> str:
    if ns == _NAT:
        return "unknown"
    return pd.Timestamp(ns - ns % _DAY_NS, unit="ns").strftime("%Y-%m-%d")


# -- manifest ------------------------------------------------------------------------------------
def _empty_manifest(source: str | None) -> dict[str, Any]:
    return {
        "aios_archive": FORMAT_VERSION,
        "source": source,
        "dialect": DIALECT,
        "time_range": None,
        "seq_range": None,
        "tables": {name: 0 for name in ARCHIVE_TABLES},
        "files": {},
        "sources": {},
    }


def read_manifest(root: str | Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The manifest of the archive at ``root``.

    Raises:
        ArchiveError: no manifest (unless ``missing_ok``), damaged JSON, or a newer format.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        if missing_ok:
            return None
        if Path(root).is_dir():
            raise ArchiveError(f"{root}: not an archive (no {MANIFEST_NAME}; write one with "
                               f"`aios-notebook archive` or store.to_archive)") from None
        raise ArchiveError(f"{root}: no such archive folder") from None
    except OSError as exc:
        raise ArchiveError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from exc
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchiveError(f"{path}: damaged manifest ({exc})") from exc
    if not isinstance(manifest, dict) or "aios_archive" not in manifest or "files" not in manifest:
        raise ArchiveError(f"{path}: not an aios-notebook archive manifest")
    version = manifest["aios_archive"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArchiveError(f"{path}: archive format version {version!r} is newer than this aios-notebook "
                           f"reads ({FORMAT_VERSION}); upgrade aios-notebook")
    return manifest


def _summarise(manifest: dict[str, Any]) -> None:
    """Recompute the manifest's ranges and row counts from its files."""
    times: list[int] = []
    seqs: list[int] = []
    rows = {name: 0 for name in ARCHIVE_TABLES}
    for entry in manifest["files"].values():
        rows[entry["table"]] = rows.get(entry["table"], 0) + entry["rows"]
        if entry.get("time"):
            times += entry["time"]
        if entry.get("seq"):
            seqs += entry["seq"]
    manifest["tables"] = rows
    manifest["time_range"] = (
        [pd.Timestamp(min(times), tz="UTC").isoformat(), pd.Timestamp(max(times), tz="UTC").isoformat()]
        if times else None
    )
    manifest["seq_range"] = [min(seqs), max(seqs)] if seqs else None


def _write_json(path: Path, value: Any) -> None:
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temp.write_text(json.dumps(value, indent=1, sort_keys=False))
    os.replace(temp, path)


# -- the lock ------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ArchiveLock:
    """``_archive.lock``: one writer per archive. A lock whose process is gone (same host) is
    taken over; a live one is an :class:`ArchiveError` naming the file and its holder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.held = False

    def acquire(self) -> ArchiveLock:
        self.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now(timezone.utc).isoformat()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or (holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1)))):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # left by a writer that died: take it over
                    continue
                raise ArchiveError(
                    f"{self.path}: the archive is being written by another writer (pid {holder.get('pid')} "
                    f"on {holder.get('host')} since {holder.get('since')}); one writer at a time"
                ) from None
            with os.fdopen(fd, "w") as out:
                json.dump(me, out)
            self.held = True
            return self
        raise ArchiveError(f"{self.path}: could not take the writer's lock")

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text() or "null")
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            # being written this instant by its taker, or damaged: young means taken
            try:
                if time.time() - self.path.stat().st_mtime < 5:
                    return {"pid": "?", "host": "?", "since": "just now"}
            except FileNotFoundError:
                return None
            return None
        return holder if isinstance(holder, dict) else None

    def release(self) -> None:
        if self.held:
            self.held = False
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> ArchiveLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- the writer ----------------------------------------------------------------------------------
def _ranges(values: np.ndarray) -> list[int] | None:
    known = values[values != _NAT]
    return [int(known.min()), int(known.max())] if len(known) else None


def _source_id(path: str | Path) -> str:
    """A recording's identity: its size and a hash of its content."""
    digest = hashlib.sha1()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).stat().st_size}-{digest.hexdigest()}"


class ArchiveWriter:
    """Appends tables to an archive; the one writer while open (``close()`` or ``with``).

    Args:
        root: the archive's folder (made when missing).
        source: where the events came from (a URL without credentials, or recordings); kept
            in the manifest.
    """

    def __init__(self, root: str | Path, *, source: str | None = None) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ArchiveError(f"{self.root}: exists and is not a folder")
        self._lock = ArchiveLock(self.root).acquire()
        try:
            manifest = read_manifest(self.root, missing_ok=True)
            self.manifest: dict[str, Any] = manifest if manifest is not None else _empty_manifest(source)
            if source and not self.manifest.get("source"):
                self.manifest["source"] = source
            self._clean()
            self.created = manifest is None
            if manifest is None:
                _write_json(self.root / MANIFEST_NAME, self.manifest)
        except BaseException:
            self._lock.release()
            raise
        self._mutex = threading.Lock()
        self.rows_written = 0
        # per table, the (seq, time) ranges of its files as rows of an int64 array: what the
        # duplicate checks compare against, without a Python loop over every file of the archive
        # for every file added (quadratic: 10^9 events are some 60,000 files)
        self._spans: dict[str, np.ndarray] = {}

    def _clean(self) -> None:
        """Remove what a crashed writer left: temporary files and files not in the manifest."""
        listed = set(self.manifest["files"])
        for name in ARCHIVE_TABLES:
            folder = self.root / name
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                if path.is_file():
                    relative = path.relative_to(self.root).as_posix()
                    if relative not in listed and (path.name.startswith(".") or path.suffix in (".parquet", ".tmp")):
                        path.unlink()
        remove_tree(self.root / "_staging")

    # -- bookkeeping
    def has_source(self, source_id: str) -> bool:
        return source_id in self.manifest.get("sources", {})

    def add_source(self, source_id: str, description: Mapping[str, Any]) -> None:
        with self._mutex:
            self.manifest.setdefault("sources", {})[source_id] = dict(description)
            self._save()

    def _save(self) -> None:
        _summarise(self.manifest)
        _write_json(self.root / MANIFEST_NAME, self.manifest)

    def _file_spans(self, name: str) -> np.ndarray:
        """Table ``name``'s files with both ranges: rows of (seq lo, seq hi, time lo, time hi)."""
        spans = self._spans.get(name)
        if spans is None:
            rows = [entry["seq"] + entry["time"] for entry in self.manifest["files"].values()
                    if entry["table"] == name and entry.get("seq") and entry.get("time")]
            spans = self._spans[name] = np.array(rows, np.int64).reshape(-1, 4)
        return spans

    def _add_files(self, entries: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for relative, entry in entries:
            self.manifest["files"][relative] = entry
            self._spans.pop(entry["table"], None)

    def _duplicates(self, name: str, seqs: np.ndarray, places: np.ndarray) -> np.ndarray:
        """Rows whose (seq, time) fall inside a file of ``name`` already written."""
        dup = np.zeros(len(seqs), bool)
        has_seq = seqs != _NAT
        if not has_seq.any():
            return dup
        spans = self._file_spans(name)
        spans = spans[(spans[:, 3] >= places.min()) & (spans[:, 2] <= places.max())]
        for s0, s1, t0, t1 in spans.tolist():
            dup |= has_seq & (seqs >= s0) & (seqs <= s1) & (places >= t0) & (places <= t1)
        return dup

    def write(self, frames: Mapping[str, pd.DataFrame], *, save: bool = True, tail: bool = True) -> int:
        """Append the rows of append-only tables (others are ignored: they are derived).

        Returns how many rows were written (duplicates left out).
        """
        written = 0
        with self._mutex:
            entries = []
            for name in ARCHIVE_TABLES:
                frame = frames.get(name)
                if frame is None or not len(frame):
                    continue
                entries += self._write_table(name, frame, tail)
            self._add_files(entries)
            written += sum(entry["rows"] for _, entry in entries)
            if entries and save:
                self._save()
        self.rows_written += written
        return written

    def _write_table(self, name: str, frame: pd.DataFrame, tail: bool) -> list[tuple[str, dict[str, Any]]]:
        places = place_ns(name, frame)
        seqs = _seqs(frame)
        keep = ~self._duplicates(name, seqs, places)
        if not keep.all():
            frame, places, seqs = frame.loc[keep], places[keep], seqs[keep]
        if not len(frame):
            return []
        return [self._write_part(name, day, part, part_places, part_seqs, tail)
                for day, part, part_places, part_seqs in _split_days(frame, places, seqs)]

    def _write_part(self, name: str, day: str, frame: pd.DataFrame, places: np.ndarray, seqs: np.ndarray,
                    tail: bool) -> tuple[str, dict[str, Any]]:
        return write_part(self.root, name, day, frame, places, seqs, tail)

    def adopt(self, staging: Path, staged: list[tuple[str, dict[str, Any]]]) -> int:
        """Move files written beside the archive (``write_part`` into ``staging``, by helper
        processes) into it, leaving out rows it holds already; returns the rows added."""
        added = 0
        with self._mutex:
            for relative, entry in staged:
                source = staging / relative
                name = entry["table"]
                if entry.get("seq") and self._overlaps(name, entry):
                    frame = arrow_frame_of(_read_part(source, name))
                    source.unlink()
                    places = place_ns(name, frame)
                    seqs = _seqs(frame)
                    keep = ~self._duplicates(name, seqs, places)
                    if not keep.any():
                        continue
                    relative, entry = write_part(self.root, name, entry["date"], frame.loc[keep],
                                                 places[keep], seqs[keep], entry.get("tail", False))
                else:
                    target = self.root / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                self._add_files([(relative, entry)])
                added += entry["rows"]
            self._save()
        self.rows_written += added
        return added

    def _overlaps(self, name: str, new: Mapping[str, Any]) -> bool:
        (s0, s1), (t0, t1) = new["seq"], new["time"] or (_NAT, _NAT)
        spans = self._file_spans(name)
        return bool(((spans[:, 0] <= s1) & (s0 <= spans[:, 1]) & (spans[:, 2] <= t1) & (t0 <= spans[:, 3])).any())

    def compact(self, *, before: Any = None, min_files: int = 2) -> int:
        """Merge each day's small files of the live tail into one day file.

        Days before ``before`` (a time; default the day of the archive's newest row, which is
        still being written) with at least ``min_files`` tail files. Returns the files merged.
        """
        with self._mutex:
            files = self.manifest["files"]
            if before is None:
                newest = max((e["time"][1] for e in files.values() if e.get("time")), default=None)
                limit = "9999-99-99" if newest is None else _day(int(newest))
            else:
                limit = _day(int(pd.Timestamp(before).value))
            groups: dict[tuple[str, str], list[str]] = {}
            for relative, entry in files.items():
                if entry.get("tail") and entry["date"] != "unknown" and entry["date"] < limit:
                    groups.setdefault((entry["table"], entry["date"]), []).append(relative)
            merged = 0
            replaced: list[str] = []
            for (name, day), members in groups.items():
                if len(members) < min_files:
                    continue
                parts = [_read_part(self.root / m, name) for m in members]
                table = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
                seqs = table.column("seq").to_numpy(zero_copy_only=False)
                seqs = np.where(np.isnan(seqs), _NAT, seqs).astype(np.int64) if seqs.dtype.kind == "f" else seqs.astype(np.int64)
                relative, entry = self._write_compact(name, day, table, seqs, members)
                # the day file first in write order, where its members were: reads keep their order
                position = list(files).index(members[0])
                items = [(k, v) for k, v in files.items() if k not in members]
                items.insert(min(position, len(items)), (relative, entry))
                files.clear()
                files.update(items)
                self._spans.pop(name, None)
                replaced += members
                merged += len(members)
            if replaced:
                self._save()
                for relative in replaced:
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / relative).unlink()
        return merged

    def _write_compact(self, name: str, day: str, table: pa.Table, seqs: np.ndarray,
                       members: list[str]) -> tuple[str, dict[str, Any]]:
        files = self.manifest["files"]
        times = [t for m in members if files[m].get("time") for t in files[m]["time"]]
        folder = self.root / name / f"date={day}"
        stem = f"day-{(min(times) if times else 0):020d}-{uuid.uuid4().hex[:12]}.parquet"
        _write_file(table, folder / stem)
        entry = {"table": name, "date": day, "rows": table.num_rows, "seq": _ranges(seqs),
                 "time": [min(times), max(times)] if times else None, "tail": False}
        return (folder / stem).relative_to(self.root).as_posix(), entry

    def close(self) -> None:
        """Save the manifest and give the lock back. An archive this writer created and wrote
        nothing to is removed again: no empty archive is left to be mistaken for one."""
        with self._mutex:
            if self._lock.held:
                if self.created and not self.manifest["files"] and not self.manifest.get("sources"):
                    with contextlib.suppress(OSError):
                        (self.root / MANIFEST_NAME).unlink()
                else:
                    self._save()
        self._lock.release()
        if self.created and not self.manifest["files"]:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only when empty

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_part(path: Path, name: str) -> pa.Table:
    return read_part(path, name)


def read_part(path: Path, name: str, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
    """One file of table ``name`` (only ``columns``, rows passing ``filter``: pyarrow's
    ``filters``), its schema checked first: a missing, damaged, foreign or newer file is an
    :class:`ArchiveError` naming it."""
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError:
        raise ArchiveError(f"{path}: listed in the archive's manifest but missing (a deleted partition?)") from None
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(f"{path}: not a readable Parquet file ({exc})") from exc
    check_schema(path, name, schema)
    try:
        return pq.read_table(path, columns=columns, filters=filter, schema=schema)
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(f"{path}: damaged Parquet file ({exc})") from exc


def remove_tree(folder: Path) -> None:
    """Remove ``folder`` and what it holds (staging folders of helper processes)."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    folder.rmdir()


def check_schema(path: Path | str, name: str, schema: pa.Schema) -> None:
    """Raise :class:`ArchiveError` unless ``schema`` is that of an archive file of ``name``."""
    raw = (schema.metadata or {}).get(FILE_META_KEY)
    if raw is None:
        raise ArchiveError(f"{path}: not an archive file (a foreign Parquet file: no aios_archive metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ArchiveError(f"{path}: damaged aios_archive metadata ({exc})") from exc
    version = meta.get("format")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ArchiveError(f"{path}: written in archive format {version!r}, newer than this aios-notebook "
                           f"reads ({FORMAT_VERSION}); upgrade aios-notebook")
    if meta.get("table") != name:
        raise ArchiveError(f"{path}: holds table {meta.get('table')!r}, not {name!r}")
    if [(f.name, _loose(f.type)) for f in schema] != [(f.name, _loose(f.type)) for f in arrow_schema(name)]:
        raise ArchiveError(f"{path}: its columns are not those of table {name!r} in archive format {FORMAT_VERSION}")


def write_part(root: Path, name: str, day: str, frame: pd.DataFrame, places: np.ndarray, seqs: np.ndarray,
               tail: bool) -> tuple[str, dict[str, Any]]:
    """Write one file of table ``name`` for ``day`` under ``root`` (temporary name, then
    renamed); returns its path relative to ``root`` and its manifest entry."""
    frame = frame.copy(deep=False)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].cat.remove_unused_categories()  # small day files
    table = _canonical(name, frame_arrow(name, frame.reset_index(drop=True)))
    meta = dict(table.schema.metadata or {})
    meta[FILE_META_KEY] = json.dumps({"format": FORMAT_VERSION, "table": name,
                                      "json_columns": json_columns(name)}).encode()
    table = table.replace_schema_metadata(meta)
    folder = Path(root) / name / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    first = _ranges(places)
    stem = f"part-{(first[0] if first else 0):020d}-{uuid.uuid4().hex[:12]}.parquet"
    _write_file(table, folder / stem)
    entry = {"table": name, "date": day, "rows": len(frame), "seq": _ranges(seqs),
             "time": _ranges(places), "tail": tail}
    return (folder / stem).relative_to(root).as_posix(), entry


def _write_file(table: pa.Table, path: Path) -> None:
    """Write ``path`` under a temporary name (a dot first: no reader lists it) and rename it
    once complete; a failed write leaves nothing behind."""
    temp = path.with_name(f".{path.name}.tmp")
    try:
        _write_parquet(table, temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def _write_parquet(table: pa.Table, path: Path) -> None:
    """zstd level 3, row groups of 128k; Parquet's dictionary pages only for the dictionary
    columns: measured on raw frames, a dictionary of unique texts cost 12% in size and 40% in
    time, and level 3 against 1 saves a further sixth of the size for little time."""
    dictionary = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
    pq.write_table(table, path, compression="zstd", compression_level=3, use_dictionary=dictionary,
                   row_group_size=ROW_GROUP_ROWS)


def day_parts(name: str, frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, np.ndarray]]:
    """Table ``name``'s rows day by day: ``(day, rows, their placing times, their seqs)``."""
    return _split_days(frame, place_ns(name, frame), _seqs(frame))


def _seqs(frame: pd.DataFrame) -> np.ndarray:
    """The rows' seqs as int64 (NaT's value where none)."""
    return frame["seq"].to_numpy(dtype=np.int64, na_value=_NAT) if "seq" in frame.columns else np.full(len(frame), _NAT)


def _split_days(frame: pd.DataFrame, places: np.ndarray,
               seqs: np.ndarray) -> Iterator[tuple[str, pd.DataFrame, np.ndarray, np.ndarray]]:
    """``frame``'s rows, placed at ``places``, day by day (rows without a time: ``"unknown"``)."""
    days = np.where(places == _NAT, _NAT, places - places % _DAY_NS)
    if len(days) and bool((days[1:] >= days[:-1]).all()):  # in time order, the usual case: slices copy nothing
        bounds = [0, *(np.flatnonzero(np.diff(days)) + 1).tolist(), len(days)]
        for start, stop in itertools.pairwise(bounds):
            yield _day(int(days[start])), frame.iloc[start:stop], places[start:stop], seqs[start:stop]
        return
    for day in pd.unique(days):
        mask = days == day
        yield _day(int(day)), (frame.loc[mask] if not mask.all() else frame), places[mask], seqs[mask]


def arrow_frame_of(table: pa.Table) -> pd.DataFrame:
    """An archive file's rows as the store's DataFrame (JSON text back to objects)."""
    name = json.loads((table.schema.metadata or {})[FILE_META_KEY])["table"]
    return arrow_frame(name, table)


def _loose(kind: pa.DataType) -> str:
    """A type as the check compares it: Arrow's two string widths are one."""
    return str(kind).replace("large_string", "string")


# -- whole stores, live clients ------------------------------------------------------------------
def write_store(store: StoreLike, root: str | Path, *, source: str | None = None) -> int:
    """Append what ``store`` holds (its append-only tables) to the archive at ``root``."""
    frames = {name: store.table(name) for name in ARCHIVE_TABLES}
    with ArchiveWriter(root, source=source) as writer:
        return writer.write(frames, tail=False)


def public_url(url: str | None) -> str | None:
    """``url`` without credentials (user info, query): what an archive may keep of it."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def source_id(path: str | Path) -> str:
    """A recording's identity for the manifest (size and content hash)."""
    return _source_id(path)
