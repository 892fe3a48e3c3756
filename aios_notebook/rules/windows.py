"""Windows over the store's tables: sorted snapshots sliced by time with binary search.

The engine reads each table a rule needs once per pass (a :class:`Snapshot`), sorts it by its time
column when it is not sorted already, and hands rules the rows of ``(start, end]`` found with
``searchsorted``: no boolean mask over the whole table per evaluation, and column arrays are
converted to numpy once per snapshot, not once per window.

Time columns: event tables are placed by their event ``timestamp``, latest-state tables by
``updated_at`` (the latest state of the entities that changed in the window), errors and raw by
``received_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import RuleError
from ..storelike import StoreLike

__all__ = [
    "EVENT_TABLES",
    "TABLES",
    "TIME_COLUMNS",
    "Rows",
    "Snapshot",
    "TableSnapshot",
    "time_ns",
]

#: the column each table is windowed by
TIME_COLUMNS: dict[str, str] = {
    "job_events": "timestamp",
    "agent_events": "timestamp",
    "dag_step_events": "timestamp",
    "metrics": "timestamp",
    "insights": "timestamp",
    "jobs": "updated_at",
    "agents": "updated_at",
    "knowledge": "updated_at",
    "dag_runs": "updated_at",
    "dag_steps": "updated_at",
    "errors": "received_at",
    "raw": "received_at",
}
TABLES: tuple[str, ...] = tuple(TIME_COLUMNS)

#: append-only histories the stream alone writes: their rows up to ``t`` are the same whether
#: read at ``t`` or later, so a backtest may read them once (insights and errors are not here:
#: the engine itself writes to them)
EVENT_TABLES: frozenset[str] = frozenset({"job_events", "agent_events", "dag_step_events", "metrics", "raw"})

_NAT = np.iinfo(np.int64).min


def time_ns(values: Any) -> np.ndarray:
    """A datetime-like column (aware or naive = UTC) -> int64 nanoseconds, NaT as int64 min."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    index = pd.DatetimeIndex(values)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("ns").asi8


class TableSnapshot:
    """One table as read at one moment, in time order, with its column arrays cached."""

    __slots__ = ("_codes", "_columns", "frame", "name", "times")

    def __init__(self, name: str, frame: pd.DataFrame) -> None:
        column = TIME_COLUMNS[name]
        if column not in frame.columns:
            raise RuleError(f"table {name!r} has no {column!r} column to window it by")
        times = time_ns(frame[column])
        known = times != _NAT
        if not known.all():
            # a row without a time cannot be placed in any window
            frame, times = frame.loc[known], times[known]
        if len(times) > 1 and not bool((times[1:] >= times[:-1]).all()):
            order = np.argsort(times, kind="stable")
            frame, times = frame.take(order), times[order]
        self.name = name
        self.frame = frame
        self.times = times
        self._columns: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.times)

    @property
    def first_ns(self) -> int | None:
        """Time of the earliest row (None when empty)."""
        return int(self.times[0]) if len(self.times) else None

    def span(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        """Row positions ``[lo, hi)`` of the rows whose time is in ``(start, end]``."""
        times = self.times
        return (
            int(times.searchsorted(start_ns, side="right")),
            int(times.searchsorted(end_ns, side="right")),
        )

    def rows(self, start_ns: int, end_ns: int) -> Rows:
        """The rows in ``(start, end]``."""
        lo, hi = self.span(start_ns, end_ns)
        return Rows(self, lo, hi)

    def column(self, name: str) -> np.ndarray:
        """The whole column as a numpy array (times as int64 ns), converted once."""
        array = self._columns.get(name)
        if array is None:
            if name not in self.frame.columns:
                raise RuleError(f"table {self.name!r} has no column {name!r}")
            series = self.frame[name]
            if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
                array = time_ns(series)
            elif pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
                array = series.to_numpy(dtype="float64", na_value=np.nan)
            else:
                array = series.to_numpy(dtype=object, na_value=None)
            self._columns[name] = array
        return array

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)`` of a column: int codes per row (-1 when missing) and the values
        (with a last None, so that ``values[codes]`` reads None for a missing value)."""
        found = self._codes.get(name)
        if found is None:
            if name not in self.frame.columns:
                raise RuleError(f"table {self.name!r} has no column {name!r}")
            codes, uniques = pd.factorize(self.frame[name], use_na_sentinel=True)
            # one slot more than the values: code -1 (missing) indexes it and reads None
            values = np.empty(len(uniques) + 1, dtype=object)
            values[:-1] = np.asarray(uniques, dtype=object)
            found = (np.asarray(codes, dtype=np.int64), values)
            self._codes[name] = found
        return found


class Rows:
    """Rows ``[lo, hi)`` of a :class:`TableSnapshot`: cheap to make, converted only when asked."""

    __slots__ = ("_frame", "hi", "lo", "snapshot")

    def __init__(self, snapshot: TableSnapshot, lo: int, hi: int) -> None:
        self.snapshot = snapshot
        self.lo = lo
        self.hi = max(lo, hi)
        self._frame: pd.DataFrame | None = None

    @property
    def table(self) -> str:
        return self.snapshot.name

    def __len__(self) -> int:
        return self.hi - self.lo

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (a slice of the snapshot)."""
        if self._frame is None:
            self._frame = self.snapshot.frame.iloc[self.lo:self.hi]
        return self._frame

    @property
    def times(self) -> np.ndarray:
        """Their times as int64 nanoseconds (sorted)."""
        return self.snapshot.times[self.lo:self.hi]

    def column(self, name: str) -> np.ndarray:
        """One column as a numpy array (numbers as float64 with NaN, text as objects)."""
        return self.snapshot.column(name)[self.lo:self.hi]

    def codes(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)``: int code per row (-1 missing) and the values the codes index
        (``values[-1]`` is None, so ``values[codes]`` reads None where a value is missing)."""
        codes, values = self.snapshot.codes(name)
        return codes[self.lo:self.hi], values

    def isin(self, name: str, wanted: Iterable[Any]) -> np.ndarray:
        """Boolean mask of the rows whose ``name`` is one of ``wanted`` (compares codes, not text)."""
        codes, values = self.codes(name)
        wanted = set(wanted)
        hits = [i for i, value in enumerate(values[:-1]) if value in wanted]
        if not hits:
            return np.zeros(len(codes), dtype=bool)
        if len(hits) == 1:
            return codes == hits[0]
        return np.isin(codes, hits)

    def values(self, name: str, mask: np.ndarray | None = None) -> list[Any]:
        """Column ``name`` of the rows (those of ``mask`` if given) as a list, None when missing."""
        codes, values = self.codes(name)
        return values[codes if mask is None else codes[mask]].tolist()

    def __repr__(self) -> str:
        return f"Rows({self.table!r}, {len(self)} rows)"


class Snapshot:
    """The tables some rules read, each read once from the store and sorted by time."""

    def __init__(self, store: StoreLike, tables: Iterable[str]) -> None:
        self._tables: dict[str, TableSnapshot] = {}
        for name in dict.fromkeys(tables):
            frame = store.table(name)
            if not isinstance(frame, pd.DataFrame):
                raise RuleError(f"store.table({name!r}) is a {type(frame).__name__}, not a DataFrame")
            self._tables[name] = TableSnapshot(name, frame)

    def table(self, name: str) -> TableSnapshot:
        try:
            return self._tables[name]
        except KeyError:
            raise RuleError(f"table {name!r} was not read for this pass") from None

    def first_ns(self, tables: Iterable[str]) -> int | None:
        """The earliest time in any of ``tables`` (None when they are all empty)."""
        firsts = [t for t in (self._tables[name].first_ns for name in tables) if t is not None]
        return min(firsts) if firsts else None
