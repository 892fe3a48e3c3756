"""``StoreLike``: what the layers above the store rely on, as a Protocol.

The client feeds a store, the REST side merges snapshots into it, views and rules read it. They
take any object with these methods, ``EventStore`` being the one the kit makes; the protocol names
the seam where ``Any`` stood. It lives beside ``clock.py`` rather than in ``store/`` so that
naming it costs no pandas import (the client imports the store only when it makes one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["HasStore", "StoreLike", "StoreSource", "StreamSink", "TableSource"]


@runtime_checkable
class StreamSink(Protocol):
    """What a client's connection feeds: every frame, and its own errors and gaps (a recorder
    that keeps nothing in memory is one)."""

    def ingest_frame(self, text: Any, received_at: Any = None, *, received_ns: int | None = None) -> None: ...

    def add_error(self, kind: str, message: str, *, code: str | None = None, start: Any = None,
                  end: Any = None, details: Any = None, seq: int | None = None) -> None: ...

    def add_gap(self, start: Any, end: Any, reason: str) -> None: ...


@runtime_checkable
class TableSource(Protocol):
    """What views read: tables, the stream's time and gaps, and news of changes (a store, or a
    static window of history such as ``history.ArchiveSource``, whose tables never change)."""

    def table(self, name: str) -> pd.DataFrame: ...

    def subscribe(self, callback: Callable[[Any], Any], tables: Iterable[str] | str | None = None) -> Any: ...

    @property
    def now(self) -> pd.Timestamp: ...

    @property
    def gaps(self) -> pd.DataFrame: ...


@runtime_checkable
class StoreLike(StreamSink, TableSource, Protocol):
    """A store of the stream's tables (see ``EventStore`` for what each method does)."""

    # fed by REST snapshots and rules
    def merge_snapshot(self, kind: str, records: Iterable[Any], at: Any = None, source: str = "rest") -> int: ...

    def add_insights(self, insights: Iterable[Any], source: str | None = None) -> int: ...

    # read by rules (views read the TableSource part)
    def flush(self) -> Any: ...

    @property
    def version(self) -> int: ...

    @property
    def counts(self) -> dict[str, int]: ...


@runtime_checkable
class HasStore(Protocol):
    """Something that feeds a store and shows it (``AIOSClient``): views take one as their source."""

    @property
    def store(self) -> Any: ...


#: what views are given: a store (or another source of tables), or a client whose ``.store`` they read
StoreSource = TableSource | HasStore
