"""What a view reads from the store for one redraw: the tables it needs, ``now`` and the gaps.

The store hands out a new DataFrame per read (the caller owns it) with the columns of
docs/design.md (``aios_notebook.store.TABLES``). A store saved by an older version may lack a
column or a table: missing ones are added empty, so the drawing code can rely on every
documented column being there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..store import TABLES
from ..storelike import TableSource

__all__ = ["Frames", "read_frames", "read_table"]

_GAP_COLUMNS = ("start", "end", "reason")


def _with_columns(frame: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    if frame is None:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in columns})
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        frame = frame.assign(**{name: pd.Series(pd.NA, index=frame.index, dtype="object") for name in missing})
    return frame


def read_table(store: TableSource, name: str) -> pd.DataFrame:
    """One table of the store (``store.<name>``) with at least the documented columns."""
    spec = TABLES.get(name)
    return _with_columns(getattr(store, name, None), spec.names if spec is not None else ())


def _utc(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.to_datetime(value, utc=True, errors="coerce")
    return None if pd.isna(stamp) else stamp


@dataclass
class Frames:
    """A consistent read for one redraw.

    Attributes:
        tables: table name -> DataFrame (owned by the view).
        now: the store's ``now`` (latest event time) as a UTC Timestamp, None before any event.
        gaps: the stream's gaps (start, end, reason); ``end`` is NaT while a gap is open.
    """

    tables: dict[str, pd.DataFrame]
    now: pd.Timestamp | None = None
    gaps: pd.DataFrame = field(default_factory=lambda: _with_columns(None, _GAP_COLUMNS))

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]


def read_frames(store: TableSource, tables: tuple[str, ...], *, gaps: bool = False) -> Frames:
    """Read ``tables`` (and, with ``gaps``, ``store.gaps``) plus ``store.now``."""
    frames = Frames({name: read_table(store, name) for name in tables}, now=_utc(getattr(store, "now", None)))
    if gaps:
        frames.gaps = _with_columns(getattr(store, "gaps", None), _GAP_COLUMNS)
    return frames
