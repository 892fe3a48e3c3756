"""An archive as the source of a view's static figure: the tables a view reads, taken once from
the archive (only the columns and rows it needs), behind the few members views use of a store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from ..store.schema import LATEST_TABLES
from ..store.store import EventStore
from ..storelike import StoreSource
from .archive import Archive, as_ns

__all__ = ["ArchiveSource", "view_source"]


class _Static:
    """The handle of a subscription to history: nothing will change."""

    def close(self) -> None:
        pass


class ArchiveSource:
    """A static store over ``[start, end)`` of an archive (views read ``table``, ``now``,
    ``gaps`` and subscribe; history does not change, so no change is ever delivered).

    Args:
        archive: the Archive (or its folder).
        columns: table -> the columns read (others are empty); default all.
        filters: table -> a filter as ``Archive.table`` takes it.
    """

    def __init__(self, archive: Archive | str, *, start: Any = None, end: Any = None,
                 columns: Mapping[str, list[str]] | None = None, filters: Mapping[str, Any] | None = None) -> None:
        self.archive = archive if isinstance(archive, Archive) else Archive(archive)
        self.start, self.end = start, end
        self._columns = dict(columns or {})
        self._filters = dict(filters or {})
        self._frames: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            if name in LATEST_TABLES:
                end = as_ns(self.end, "end")
                frame = self.archive.latest(name, at=None if end is None else pd.Timestamp(end - 1, tz="UTC"))
            else:
                frame = self.archive.table(name, self.start, self.end, columns=self._columns.get(name),
                                           filter=self._filters.get(name))
            self._frames[name] = frame
        return frame.copy(deep=False)

    def __getattr__(self, name: str) -> pd.DataFrame:
        if name in EventStore.TABLE_NAMES:
            return self.table(name)
        raise AttributeError(name)

    @property
    def now(self) -> pd.Timestamp:
        """The end of the window, or the archive's newest event."""
        end = as_ns(self.end, "end")
        if end is not None:
            return pd.Timestamp(end, tz="UTC")
        span = self.archive.time_range
        return span[1] if span is not None else pd.Timestamp(0, tz="UTC")

    @property
    def gaps(self) -> pd.DataFrame:
        rows = self.archive.table("errors", self.start, self.end, columns=["start", "end", "message"],
                                  filter={"kind": "gap"})
        return rows.rename(columns={"message": "reason"}).reset_index(drop=True)

    def subscribe(self, callback: Callable[[Any], Any], tables: Any = None) -> _Static:
        return _Static()

    def __repr__(self) -> str:
        return f"<ArchiveSource {self.archive.path} [{self.start} .. {self.end})>"


def view_source(source: StoreSource | Archive, *, columns: Mapping[str, list[str]] | None = None,
                filters: Mapping[str, Any] | None = None) -> StoreSource:
    """``source`` itself, or for an :class:`Archive` an :class:`ArchiveSource` of it reading
    only ``columns`` / ``filters``."""
    if isinstance(source, Archive):
        return ArchiveSource(source, columns=columns, filters=filters)
    return source
