"""Reading the Parquet archive: tables by window, latest state as of a moment, DuckDB SQL,
EventStores for a slice of history, Dask dataframes.

The archive's layout, manifest and safety rules are in :mod:`aios_notebook.store.archive` (its
writer). A reader reads only the files the manifest lists, so it never sees a file being written.

Windows are half-open, ``start <= t < end``, in event time (each table's placing time, see
``store.archive.place_ns``); ``latest(name, at)`` takes every event up to and including ``at``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..exceptions import ConfigurationError
from ..protocol.dialects import DIALECTS, Dialect, dialect_of_events
from ..store import bulk
from ..store.archive import (
    ARCHIVE_TABLES,
    ArchiveError,
    arrow_schema,
    place_ns,
    read_manifest,
    read_part,
)
from ..store.load import GREETING_WITHIN, FrameTranslator, foreign_dialect
from ..store.parquet import arrow_frame
from ..store.schema import EVENT_ROUTES, LATEST_TABLES, TABLES
from ..store.store import EventStore, store_from_frames
from .checkpoints import Checkpoints

if TYPE_CHECKING:
    import dask.dataframe as dd
    import duckdb

__all__ = ["Archive", "as_ns"]

_NAT = np.iinfo(np.int64).min
_BATCH_ROWS = 65_536
# the columns place_ns reads, per table
_PLACE_COLUMNS = {
    "raw": ("text", "received_at"),
    "errors": ("received_at",),
    "insights": ("timestamp", "created_at"),
    "metrics": ("timestamp",),
}


def as_ns(value: Any, what: str) -> int | None:
    """A moment a caller gives (datetime, ISO text, pandas Timestamp; naive = UTC) -> int ns."""
    if value is None:
        return None
    try:
        moment = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what}: cannot read {value!r} as a time") from exc
    if moment is pd.NaT:
        return None
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    return int(moment.value)


def _place_columns(name: str) -> tuple[str, ...]:
    return _PLACE_COLUMNS.get(name, ("timestamp", "received_at"))


def _feeding(tables: set[str]) -> list[str]:
    """Event names whose frames fill any of ``tables``."""
    return sorted(e for e, routes in EVENT_ROUTES.items() if any(r.table in tables for r in routes))


def _filter_expression(filter: Any) -> Any:
    """``filter`` as pyarrow's ``filters``: a mapping column -> value (or list of values), an
    Arrow expression, or DNF tuples as ``pyarrow.parquet.read_table`` takes them."""
    if filter is None or not isinstance(filter, Mapping):
        return filter
    expression = None
    for column, wanted in filter.items():
        field = pc.field(column)
        term = field.isin(list(wanted)) if isinstance(wanted, (list, tuple, set, frozenset)) else field == wanted
        expression = term if expression is None else expression & term
    return expression


class Archive:
    """A Parquet archive of the stream (``aios-notebook archive``, ``client.archive``,
    ``store.to_archive``), read out of core.

    Args:
        path: the archive's folder.
        memory_limit: DuckDB's memory limit for :meth:`sql` (e.g. ``"1GB"``; DuckDB's default
            otherwise); DuckDB spills to disk beyond it.
        threads: DuckDB's threads (default: every core).
        checkpoints: keep checkpoints of the derived latest-state tables in the archive's
            ``_checkpoints`` folder, so that :meth:`latest` late in a long archive replays only
            the days since the last one (see :mod:`.checkpoints`); False derives every time.

    Raises:
        ArchiveError: not an archive, a manifest of a newer format, or a file it lists is
            missing (the error names it).
    """

    #: frames a derivation replays before it writes a checkpoint (a shorter replay is cheap)
    _CHECKPOINT_FRAMES = 500_000

    def __init__(self, path: str | Path, *, memory_limit: str | None = None, threads: int | None = None,
                 checkpoints: bool = True) -> None:
        self.path = Path(path)
        self.memory_limit = memory_limit
        self.threads = threads
        self.checkpoints = checkpoints
        self.manifest: dict[str, Any] = {}
        self._dialect: tuple[Dialect | None] | None = None  # the frames' foreign dialect, once looked at
        self.refresh()

    def refresh(self) -> Archive:
        """Read the manifest again (a writer may have added files since)."""
        manifest = read_manifest(self.path)
        assert manifest is not None
        for relative in manifest["files"]:
            if not (self.path / relative).is_file():
                raise ArchiveError(f"{self.path / relative}: listed in {self.path}/_archive.json but missing "
                                   f"(a deleted or moved partition)")
        self.manifest = manifest
        self._dialect = None
        return self

    # -- what is there -------------------------------------------------------------------------
    @property
    def tables(self) -> tuple[str, ...]:
        """Every table name it answers for: the archived ones and the derived latest-state ones."""
        return tuple(TABLES)

    @property
    def time_range(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        found = self.manifest.get("time_range")
        return None if not found else (pd.Timestamp(found[0]), pd.Timestamp(found[1]))

    @property
    def seq_range(self) -> tuple[int, int] | None:
        found = self.manifest.get("seq_range")
        return None if not found else (int(found[0]), int(found[1]))

    @property
    def rows(self) -> dict[str, int]:
        """Rows per archived table."""
        return dict(self.manifest.get("tables", {}))

    def files(self, name: str, start: Any = None, end: Any = None) -> list[Path]:
        """The files of table ``name`` holding rows of ``[start, end)``, in write order."""
        return [self.path / relative for relative, _ in self._entries(name, as_ns(start, "start"), as_ns(end, "end"))]

    def _entries(self, name: str, start: int | None, end: int | None) -> list[tuple[str, dict[str, Any]]]:
        self._check_table(name, archived=True)
        out = []
        for relative, entry in self.manifest["files"].items():
            if entry["table"] != name:
                continue
            span = entry.get("time")
            if span is None:
                if start is None and end is None:
                    out.append((relative, entry))
                continue
            if (start is not None and span[1] < start) or (end is not None and span[0] >= end):
                continue
            out.append((relative, entry))
        # day by day (the partitions), in write order within a day
        return sorted(out, key=lambda item: item[1]["date"])

    def _check_table(self, name: str, archived: bool = False) -> None:
        if name not in TABLES:
            raise ConfigurationError(f"unknown table {name!r} (tables: {', '.join(TABLES)})")
        if archived and name not in ARCHIVE_TABLES:
            raise ConfigurationError(
                f"table {name!r} is a latest-state table, derived when read: use .latest({name!r}, at=...)"
            )

    def coverage(self) -> pd.DataFrame:
        """Rows per day and table; days between the first and last with no row at all are
        listed too, with ``gap`` True. Index: the day (``date``)."""
        rows: dict[str, dict[str, int]] = {}
        for entry in self.manifest["files"].values():
            day = rows.setdefault(entry["date"], {})
            day[entry["table"]] = day.get(entry["table"], 0) + entry["rows"]
        frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(ARCHIVE_TABLES))
        frame = frame.fillna(0).astype("int64")
        known = [d for d in frame.index if d != "unknown"]
        if known:
            days = pd.date_range(min(known), max(known), freq="D").strftime("%Y-%m-%d")
            frame = frame.reindex(list(days) + [d for d in frame.index if d == "unknown"], fill_value=0)
        frame.index.name = "date"
        frame["gap"] = frame.sum(axis=1) == 0
        return frame

    # -- reading tables --------------------------------------------------------------------------
    def _read(self, path: Path, name: str, columns: list[str] | None, filter: Any) -> pa.Table:
        return read_part(path, name, columns, filter)

    def _tables(self, name: str, start: int | None, end: int | None, columns: list[str] | None,
                filter: Any, entries: list[tuple[str, dict[str, Any]]] | None = None) -> Iterator[pa.Table]:
        """The rows of ``[start, end)`` file by file (files inside the window are not filtered);
        of ``entries`` only, when given (some of ``_entries(name, start, end)``)."""
        expression = _filter_expression(filter)
        needed = None if columns is None else list(dict.fromkeys([*columns, *_place_columns(name)]))
        for relative, entry in self._entries(name, start, end) if entries is None else entries:
            span = entry.get("time")
            inside = (start is None or (span is not None and span[0] >= start)) and (
                end is None or (span is not None and span[1] < end))
            table = self._read(self.path / relative, name, columns if inside else needed, expression)
            if not inside and table.num_rows:
                places = place_ns(name, table.select(list(_place_columns(name))).to_pandas())
                keep = places != _NAT
                if start is not None:
                    keep &= places >= start
                if end is not None:
                    keep &= places < end
                table = table.filter(pa.array(keep))
                if columns is not None:
                    table = table.select(columns)
            yield table

    def table(self, name: str, start: Any = None, end: Any = None, columns: list[str] | None = None,
              filter: Any = None) -> pd.DataFrame:
        """Table ``name``'s rows in ``[start, end)`` as pandas, with the store's dtypes, reading
        only the files of that window and the columns asked for.

        ``filter``: ``{"type": "pdf"}`` or ``{"type": ["pdf", "docx"]}``, an Arrow expression
        (``pyarrow.compute.field("type") == "pdf"``) or DNF tuples (``[("type", "=", "pdf")]``).
        A latest-state table (jobs, agents, ...) is derived: ``latest(name, at=end)``, the rows
        updated in the window.
        """
        if columns is not None:
            unknown = [c for c in columns if c not in TABLES[name].names] if name in TABLES else []
            if unknown:
                raise ConfigurationError(f"columns: table {name!r} has no column(s) {', '.join(unknown)}")
        if name in LATEST_TABLES:
            hi = as_ns(end, "end")
            frame = self.latest(name, at=None if hi is None else pd.Timestamp(hi - 1, tz="UTC"))
            lo = as_ns(start, "start")
            if lo is not None:
                frame = frame[frame["updated_at"] >= pd.Timestamp(lo, tz="UTC")].reset_index(drop=True)
            return frame if columns is None else frame[columns]
        parts = [t for t in self._tables(name, as_ns(start, "start"), as_ns(end, "end"), columns, filter)
                 if t.num_rows]
        if not parts:
            empty = EventStore(background=False).table(name)
            return empty if columns is None else empty[columns]
        return arrow_frame(name, pa.concat_tables(parts))

    def frames(self, start: Any = None, end: Any = None,
               events: list[str] | None = None) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """The raw frames of ``[start, end)`` in write order, in batches of Arrow strings and
        their receive times (int64 ns); only those of ``events`` (event names) if given."""
        return self._frames_ns(as_ns(start, "start"), as_ns(end, "end"), events)

    # -- derived state ---------------------------------------------------------------------------
    def _feed(self, tables: set[str], start: int | None, end: int | None, every_event: bool = False) -> EventStore:
        """A store fed the raw frames of ``[start, end)`` that fill ``tables`` (all frames with
        ``every_event``), append-only tables kept empty: the latest-state rule of the store itself."""
        scratch = _scratch()
        self._feed_files(scratch, start, end, None if every_event else _feeding(tables))
        return scratch

    def _feed_files(self, store: EventStore, start: int | None, end: int | None, events: list[str] | None,
                    entries: list[tuple[str, dict[str, Any]]] | None = None) -> int:
        """Feed ``store`` the raw frames of ``[start, end)`` (of ``events``; in ``entries``
        only, when given); returns how many. Frames of another dialect (an AIOS server's own)
        go through the client's session, as live, and every one of them is read: their event
        names are the server's."""
        fed = 0
        dialect = self.dialect
        translator = None if dialect is None else FrameTranslator(dialect)
        for texts, received in self._frames_ns(start, end, events if translator is None else None, entries):
            if translator is None:
                fed += bulk.ingest_frames(store, texts, received)
            else:
                items, moments = translator.batch(texts.to_pylist(), received)
                fed += bulk.ingest_frames(store, items, moments) if items else 0
        return fed

    @property
    def dialect(self) -> Dialect | None:
        """The foreign dialect the archived frames were received in (an AIOS server's own), or
        None for the published protocol's: the manifest's (conversion writes it), else a greeting
        among the first frames, else the server's own event names, which raw keeps."""
        if self._dialect is None:
            named = DIALECTS.get(self.manifest.get("dialect") or "")
            found = named if named is not None and not named.native else None
            for relative, _ in self._entries("raw", None, None)[:1] if found is None else []:
                file = pq.ParquetFile(self.path / relative)
                if not file.metadata.num_row_groups:
                    continue
                found = foreign_dialect(next(file.iter_batches(GREETING_WITHIN, columns=["text"])).column(0).to_pylist())
                if found is None:  # a recording may begin after the greeting: then the names say
                    names = file.read_row_group(0, columns=["event"]).column(0)
                    found = dialect_of_events(pc.unique(names.drop_null()).to_pylist())
            self._dialect = (found,)
        return self._dialect[0]

    def _frames_ns(self, start: int | None, end: int | None, events: list[str] | None,
                   entries: list[tuple[str, dict[str, Any]]] | None = None) -> Iterator[tuple[pa.Array, np.ndarray]]:
        filter = None if events is None else pc.field("event").isin(events)
        for table in self._tables("raw", start, end, ["received_at", "text"], filter, entries):
            for batch in table.to_batches(_BATCH_ROWS):
                if batch.num_rows:
                    texts = batch.column("text")
                    if isinstance(texts, pa.ChunkedArray):
                        texts = texts.combine_chunks()
                    received = batch.column("received_at").cast(pa.int64()).fill_null(0)
                    yield texts.cast(pa.string()), received.to_numpy()

    def _derive(self, name: str, end: int | None) -> EventStore:
        """A store fed every frame before ``end`` that fills latest-state table ``name``: from
        the newest checkpoint that still holds, writing one at the last day boundary when the
        replay to it was long (see :mod:`.checkpoints`)."""
        entries = self._entries("raw", None, end)
        events = _feeding({name})
        dialect = self.dialect
        keys = dict(Checkpoints.keys(name, entries, dialect.name if dialect else "")) if self.checkpoints else {}
        found = Checkpoints(self.path).find(name, keys, _restore) if keys else None
        since, scratch = found if found else ("", _scratch())
        todo = [item for item in entries if item[1]["date"] >= since]
        boundary = max(keys, default="")
        if boundary > since:  # the days before the last one: replayed once, kept
            fed = self._feed_files(scratch, None, end, events, [e for e in todo if e[1]["date"] < boundary])
            if fed >= self._CHECKPOINT_FRAMES:
                Checkpoints(self.path).save(name, boundary, keys[boundary], scratch)
            todo = [item for item in todo if item[1]["date"] >= boundary]
        self._feed_files(scratch, None, end, events, todo)
        return scratch

    def latest(self, name: str, at: Any = None) -> pd.DataFrame:
        """Latest-state table ``name`` (jobs, agents, knowledge, dag_runs, dag_steps) as of
        ``at`` (default: the end of the archive): the last event per key up to ``at``, by the
        store's own rule (a later seq wins; a null clears, an older event only fills).

        Derived from the archived frames of the events that fill the table; REST snapshots
        are not frames and are not archived, so ``snapshot`` is False throughout.
        """
        self._check_table(name)
        if name not in LATEST_TABLES:
            raise ConfigurationError(f"{name!r} is not a latest-state table (those are {', '.join(LATEST_TABLES)})")
        moment = as_ns(at, "at")
        return self._derive(name, None if moment is None else moment + 1).table(name)

    def store(self, start: Any = None, end: Any = None, *, tables: list[str] | None = None,
              **options: Any) -> EventStore:
        """An EventStore holding ``[start, end)``: what a client connected over that window
        would hold (its latest-state tables from that window's events), so every view, rule
        and report works on a slice of history unchanged.

        Args:
            tables: only these tables (default all; a backtest asks for what its rules read).
            options: for ``EventStore(...)``; retention defaults to none (the window is the
                limit), and the store does not parse in the background.
        """
        lo, hi = as_ns(start, "start"), as_ns(end, "end")
        wanted = set(TABLES if tables is None else tables)
        for name in wanted:
            self._check_table(name)
        frames: dict[str, pd.DataFrame] = {}
        for name in ARCHIVE_TABLES:
            if name in wanted:
                frames[name] = self.table(name, lo and pd.Timestamp(lo, tz="UTC"), hi and pd.Timestamp(hi, tz="UTC"))
        latest = wanted & set(LATEST_TABLES)
        now: int | None = None
        if latest or tables is None:
            scratch = self._feed(latest, lo, hi, every_event=True)  # every frame: the store's now
            for name in latest:
                frames[name] = scratch.table(name)
            now = _ns_or_none(scratch)
        if now is None:
            times = [frame[TABLES[name].time].max() for name, frame in frames.items() if len(frame)
                     and name in ARCHIVE_TABLES and name not in ("errors", "raw")]
            known = [t for t in times if t is not None and t is not pd.NaT]
            now = int(max(known).value) if known else None
        options.setdefault("retention", {name: None for name in TABLES})
        options.setdefault("background", False)
        return store_from_frames(frames, {"now": now}, factory=lambda: EventStore(**options))

    # -- SQL and Dask ------------------------------------------------------------------------------
    def connect(self, query: str | None = None) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with a view per archived table (over its files) and, for the
        latest-state tables ``query`` names, their derived state registered."""
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")  # days and hours of time_bucket and date_trunc are UTC ones
        if self.memory_limit:
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        for name in ARCHIVE_TABLES:
            files = [str(self.path / relative) for relative, _ in self._entries(name, None, None)]
            if files:
                listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM read_parquet([{listing}])')
            else:
                con.register(name, arrow_schema(name).empty_table())
        if query is not None:
            for name in LATEST_TABLES:  # read FROM or JOINed, not a column's alias
                if re.search(rf'\b(?:from|join)\s+"?{name}"?(?:\s|$|\)|,|;)', query, re.IGNORECASE):
                    con.register(name, self.latest(name))
        return con

    def sql(self, query: str, params: Any = None) -> pd.DataFrame:
        """Run DuckDB SQL over views named like the store's tables; the result as pandas.

        Event tables are read from their files out of core (DuckDB reads only the columns and
        row groups it needs); latest-state tables the query names are derived first.
        """
        import duckdb

        con = self.connect(query)
        try:
            result = con.execute(query, params)
            types = [str(column[1]).upper() for column in result.description or []]
            frame = result.df()
            for name, kind in zip(list(frame.columns), types, strict=False):
                # DuckDB hands TIMESTAMPTZ_NS over as naive UTC: the store's times are aware UTC
                if "TZ" in kind and pd.api.types.is_datetime64_dtype(frame[name]) and frame[name].dt.tz is None:
                    frame[name] = frame[name].dt.tz_localize("UTC")
            return frame
        except duckdb.IOException as exc:
            raise ArchiveError(f"{self.path}: a file of the archive could not be read: {exc}") from exc
        except duckdb.Error as exc:
            raise ArchiveError(f"{self.path}: query failed: {exc}") from exc
        finally:
            con.close()

    def dask(self, name: str, start: Any = None, end: Any = None, columns: list[str] | None = None,
             filter: Any = None) -> dd.DataFrame:
        """Table ``name``'s rows of ``[start, end)`` as a ``dask.dataframe`` over the same files
        (one partition per file), with the store's dtypes."""
        import dask
        import dask.dataframe as dd

        lo, hi = as_ns(start, "start"), as_ns(end, "end")
        entries = self._entries(name, lo, hi)
        meta = self.table(name, columns=columns).iloc[:0] if not entries else None
        if meta is not None:
            return dd.from_pandas(meta, npartitions=1)
        parts = [dask.delayed(_read_window)(str(self.path), name, relative, entry, lo, hi, columns, filter)
                 for relative, entry in entries]
        empty = EventStore(background=False).table(name)
        return dd.from_delayed(parts, meta=empty if columns is None else empty[columns], verify_meta=False)

    def __repr__(self) -> str:
        span = self.manifest.get("time_range")
        where = f"{span[0]} .. {span[1]}" if span else "empty"
        rows = sum(self.rows.values())
        return f"<Archive {self.path}: {rows:,} rows, {len(self.manifest['files'])} files, {where}>"


#: the store latest-state tables are derived in: its append-only tables are not built
_SCRATCH: dict[str, Any] = {"retention": dict.fromkeys(ARCHIVE_TABLES, 0), "background": False}


def _scratch() -> EventStore:
    return EventStore(**_SCRATCH)


def _restore(folder: Path) -> EventStore:
    return EventStore.from_parquet(folder, **_SCRATCH)


def _ns_or_none(store: EventStore) -> int | None:
    return None if not store.frames else int(store.now.value)


def _read_window(root: str, name: str, relative: str, entry: dict[str, Any], start: int | None,
                 end: int | None, columns: list[str] | None, filter: Any) -> pd.DataFrame:
    """One file's rows of a window (a Dask task, on a worker that may not share our memory)."""
    archive = Archive.__new__(Archive)  # the one file: no manifest read per task
    archive.path = Path(root)
    archive.manifest = {"files": {relative: entry}}
    parts = list(archive._tables(name, start, end, columns, filter))
    table = pa.concat_tables(parts) if parts else None
    if table is None or not table.num_rows:
        empty = EventStore(background=False).table(name)
        return empty if columns is None else empty[columns]
    return arrow_frame(name, table)
