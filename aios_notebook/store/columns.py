"""Column buffers: typed, growable, cheap to append to and to turn into pandas arrays.

A column holds rows ``[0, len)`` in a NumPy buffer that doubles when full (or, for Arrow text
in append-only tables, a list of immutable Arrow chunks), so an append costs the size of what is
appended, never the size of the table. ``to_pandas(start, stop)`` always returns arrays the
caller owns (a copy, or immutable Arrow data), so a DataFrame handed to a notebook can be
modified freely without touching the store.

Values come in as Arrow arrays of the kind's Arrow type (see :func:`arrow_type`), or as Python
lists for ``obj`` columns, and are *encoded* into ``(values, missing)`` NumPy pairs first, once
per batch, so that appending and in-place updates (latest-state tables) share one conversion.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..arrow_pool import BULK_POOL

__all__ = [
    "F32_MAX",
    "INT_RANGES",
    "NAT",
    "ArrowTextColumn",
    "CategoryColumn",
    "Column",
    "Dictionary",
    "Encoded",
    "FloatColumn",
    "MaskedColumn",
    "ObjectColumn",
    "arrow_type",
    "make_column",
    "normalize",
    "release_freed_memory",
]

# pandas' "str" dtype, resolved once: each read builds a few categories and string arrays, and
# resolving the name each time took a third of building a 5,000-category dtype (30 -> 18 us)
STR_DTYPE = pd.api.types.pandas_dtype("str")
#: the array class of STR_DTYPE when Arrow holds it (pandas 3), made straight from Arrow strings
_STR_ARRAY = pd.arrays.ArrowStringArray if getattr(STR_DTYPE, "storage", None) == "pyarrow" else None
NAT = np.iinfo(np.int64).min  # pandas' NaT as int64 nanoseconds
TS_TYPE = pa.timestamp("ns", tz="UTC")
_UTC_DTYPE = pd.DatetimeTZDtype("ns", "UTC")
_INITIAL = 1024
#: what an integer column holds: a number beyond it is a wrong value (missing, an errors row)
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
#: the largest float32: a number beyond it in a float32 column is a wrong value too (not inf)
F32_MAX = float(np.finfo(np.float32).max)

#: (values, missing): missing is None when the values carry their own null (NaN, -1, NaT, None)
Encoded = tuple[np.ndarray, "np.ndarray | None"]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "cat": pa.string(),
    "text": pa.string(),
    "f64": pa.float64(),
    "f32": pa.float64(),
    "int32": pa.int64(),
    "int64": pa.int64(),
    "ts": TS_TYPE,
    "bool": pa.bool_(),
}


def arrow_type(kind: str) -> pa.DataType | None:
    """The Arrow type batches carry for ``kind`` (None for ``obj``: a Python list)."""
    return _ARROW_TYPES.get(kind)


def normalize(kind: str, value: Any, n: int) -> pa.Array | list:
    """``value`` (Arrow array, Python list or None for all-missing) as the kind's batch type."""
    if kind == "obj":
        if value is None:
            return [None] * n
        if isinstance(value, (pa.Array, pa.ChunkedArray)):
            return value.to_pylist()
        return list(value)
    target = _ARROW_TYPES[kind]
    if value is None:
        return pa.nulls(n, target)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        python = pa.int64() if kind == "ts" else target  # timestamps: int nanoseconds (or None)
        try:
            array = pa.array(value, python)
        except (OverflowError, pa.ArrowInvalid):  # an integer beyond int64: missing, as in _encode_list
            array = pa.array([None if type(v) is int and not _in_int64(v) else v for v in value], python)
        return array.cast(TS_TYPE) if kind == "ts" else array
    if value.type != target:
        value = value.cast(target)
    return value


def _in_int64(value: int) -> bool:
    low, high = INT_RANGES["int64"]
    return low <= value <= high


def _float_or_nan(value: Any) -> float:
    try:
        return np.nan if value is None else float(value)
    except OverflowError:
        return np.nan


def _grow(buffer: np.ndarray, needed: int, used: int | None = None, ceiling: int | None = None) -> np.ndarray:
    """A buffer of at least ``needed`` rows holding ``buffer``'s first ``used`` (all if None),
    grown by doubling but not past ``ceiling`` (the rows a column may ever hold) unless needed.

    The rows past them are left unwritten: callers write every row they add. (Fresh pages never
    written are not resident, but reused heap memory is: hence the ceiling.)
    """
    capacity = max(_INITIAL, len(buffer))
    while capacity < needed:
        capacity *= 2
    if ceiling is not None and capacity > ceiling:
        capacity = max(needed, ceiling, len(buffer))
    if capacity == len(buffer):
        return buffer
    # a new buffer, never a resize in place: DataFrames handed out earlier may not see a change
    grown = np.empty(capacity, dtype=buffer.dtype)
    count = len(buffer) if used is None else used
    grown[:count] = buffer[:count]
    return grown


def _rows(buffer: np.ndarray, start: int, stop: int, frozen: bool) -> np.ndarray:
    """``buffer[start:stop]``: a copy, or for rows that never change a read-only view."""
    if not frozen:
        return buffer[start:stop].copy()
    view = buffer[start:stop].view()  # its own flags: the buffer itself stays writeable
    view.flags.writeable = False
    return view


def _datetimes(values: np.ndarray) -> Any:
    """int64 ns (NaT included) -> a UTC datetime array, without a copy or checks when pandas
    offers it (a tenth of the DatetimeIndex constructor's cost, paid on every read)."""
    simple_new = getattr(pd.arrays.DatetimeArray, "_simple_new", None)
    if simple_new is not None:
        try:
            return simple_new(values.view("M8[ns]"), dtype=_UTC_DTYPE)
        except TypeError:  # another signature in another pandas
            pass
    return pd.DatetimeIndex(values.view("M8[ns]"), tz="UTC", copy=False).array


def _code_dtype(categories: int) -> type:
    # the dtype pandas itself picks for codes, so from_codes does not convert again
    if categories < np.iinfo(np.int8).max:
        return np.int8
    if categories < np.iinfo(np.int16).max:
        return np.int16
    return np.int32


class Dictionary:
    """An append-only string -> code mapping: codes stay valid for the life of the store."""

    def __init__(self, values: list[str] | None = None) -> None:
        self.values: list[str] = values if values is not None else []
        self.index: dict[str, int] = dict(zip(self.values, _codes(0, len(self.values)), strict=True))
        self._chunks: list[pa.Array] = []
        self._built = 0
        self._dtype: pd.CategoricalDtype | None = None

    def __len__(self) -> int:
        return len(self.values)

    def code(self, value: str) -> int:
        """The code of one value (added when new)."""
        code = self.index.get(value)
        if code is None:
            code = self.index[value] = _codes(len(self.values), len(self.values) + 1)[0]
            self.values.append(value)
        return code

    def codes_of_list(self, values: list) -> np.ndarray:
        """Codes (int32, -1 for None) of a list of strings."""
        if len(values) >= 1000:  # one look-up per distinct value: Arrow finds them in C
            try:
                array = pa.array(values, pa.string())
            except (pa.ArrowException, TypeError, ValueError):  # a lone surrogate: one by one
                pass
            else:
                return self.codes(array)
        get = self.index.get
        codes = [-1 if value is None else get(value, -2) for value in values]
        if -2 in codes:  # values never seen before
            code = self.code
            codes = [-1 if value is None else code(value) for value in values]
        return np.array(codes, np.int32)

    def codes(self, values: pa.Array) -> np.ndarray:
        """Codes (int32, -1 for null) of a string array: one dict look-up per distinct value."""
        n = len(values)
        if n == 0:
            return np.empty(0, np.int32)
        if values.null_count == n:
            return np.full(n, -1, np.int32)
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()
        get = self.index.get
        mapping = np.array([get(value, -1) for value in distinct] + [-1], np.int32)
        new = np.flatnonzero(mapping[:-1] < 0)  # values never seen before (each once: distinct)
        if new.size:
            start = len(self.values)
            fresh = [distinct[i] for i in new.tolist()]
            self.values.extend(fresh)
            self.index.update(zip(fresh, _codes(start, start + len(fresh)), strict=True))
            mapping[new] = np.arange(start, start + len(fresh), dtype=np.int32)
        indices = encoded.indices
        if indices.null_count:
            indices = pc.fill_null(indices, len(distinct))
        return mapping[indices.to_numpy(zero_copy_only=False)]

    def dtype(self) -> pd.CategoricalDtype:
        """The categorical dtype of the current values (rebuilt only when values were added)."""
        if self._dtype is None or self._built != len(self.values):
            if self._built < len(self.values):
                # large_string: what pandas' "str" arrays hold, so it does not cast every chunk
                # again each time a category is added
                self._chunks.append(pa.array(self.values[self._built :], pa.large_string(), memory_pool=BULK_POOL))
                if len(self._chunks) > 64:
                    self._chunks = [pa.concat_arrays(self._chunks, memory_pool=BULK_POOL)]
                self._built = len(self.values)
            chunked = pa.chunked_array(self._chunks, pa.large_string())
            # the array pd.array(chunked, dtype=STR_DTYPE) makes, at half its cost (a read pays
            # it whenever a category was added since the last: ids of new jobs, every read)
            values = _STR_ARRAY(chunked, dtype=STR_DTYPE) if _STR_ARRAY else pd.array(chunked, dtype=STR_DTYPE)
            categories = pd.Index(values, copy=False)
            # values are unique by construction: skip pandas' O(n) uniqueness check when possible
            fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
            self._dtype = fast(categories, False) if fast else pd.CategoricalDtype(categories)
        return self._dtype


class Column:
    """Base of the column buffers. Rows ``[0, len(self))`` are live."""

    kind: str

    def __init__(self) -> None:
        self.n = 0
        #: the rows this column may ever need to hold at once (its table's row limit and the
        #: room for compaction), which buffers do not grow past unless they must; None: unknown
        self.ceiling: int | None = None

    def __len__(self) -> int:
        return self.n

    # -- implemented by subclasses -------------------------------------------------------
    def encode(self, values: pa.Array | list | np.ndarray) -> Encoded:
        """Batch values (an Arrow array of the kind's type, or a Python list, where None is a
        missing value) -> ``(values, missing)`` in this column's storage representation."""
        raise NotImplementedError

    def append(self, encoded: Encoded) -> None:
        """Add rows at the end."""
        raise NotImplementedError

    def put(self, rows: np.ndarray, encoded: Encoded, take: np.ndarray) -> None:
        """``self[rows] = encoded[take]`` (latest-state tables)."""
        raise NotImplementedError

    def missing(self, rows: np.ndarray) -> np.ndarray:
        """True where ``self[rows]`` holds no value."""
        raise NotImplementedError

    def encoded_missing(self, encoded: Encoded) -> np.ndarray:
        """True where an encoded batch holds no value."""
        raise NotImplementedError

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> Any:
        """Rows ``[start, stop)`` as a pandas array the caller owns.

        ``frozen``: those rows never change again (append-only tables write past their end
        only, and retention or growth makes new buffers), so they may be handed out as a
        read-only view instead of a copy: pandas copies before it writes to one (and already
        hands out read-only NumPy arrays of a frame shared with the store's cache).
        """
        raise NotImplementedError

    def keep(self, selector: slice | np.ndarray, room: int = 0) -> None:
        """Keep only ``self[selector]`` (retention), in new buffers with room for ``room`` more
        rows (beyond them a buffer grows by doubling)."""
        raise NotImplementedError

    def extend_empty(self, count: int) -> None:
        """Add ``count`` empty rows (new keys of a latest-state table)."""
        raise NotImplementedError

    def release(self, start: int) -> None:
        """Rows before ``start`` were dropped by retention and are never read again: a column
        may let their memory go before the table's next :meth:`keep` (by default it waits)."""


class _NumpyColumn(Column):
    """A column held in one growable NumPy buffer (plus, optionally, a missing mask).

    Rows beyond ``n`` hold nothing yet (they are written when added, never before: see
    :func:`_grow`).
    """

    fill: Any = None
    dtype: Any = None
    masked = False

    def __init__(self) -> None:
        super().__init__()
        self.buf = np.full(0, self.fill, dtype=self.dtype)
        self.miss = np.zeros(0, bool) if self.masked else None

    def _reserve(self, count: int) -> None:
        needed = self.n + count
        if needed > len(self.buf):
            self.buf = _grow(self.buf, needed, self.n, self.ceiling)
            if self.miss is not None:
                self.miss = _grow(self.miss, needed, self.n, self.ceiling)

    def append(self, encoded: Encoded) -> None:
        values, missing = encoded
        count = len(values)
        self._reserve(count)
        self.buf[self.n : self.n + count] = values
        if self.miss is not None:
            self.miss[self.n : self.n + count] = False if missing is None else missing
        self.n += count

    def extend_empty(self, count: int) -> None:
        self._reserve(count)
        self.buf[self.n : self.n + count] = self.fill
        if self.miss is not None:
            self.miss[self.n : self.n + count] = True
        self.n += count

    def put(self, rows: np.ndarray, encoded: Encoded, take: np.ndarray) -> None:
        values, missing = encoded
        self.buf[rows] = values[take]
        if self.miss is not None:
            self.miss[rows] = False if missing is None else missing[take]

    def assign(self, rows: np.ndarray, encoded: Encoded) -> None:
        """``self[rows] = encoded`` (one value per row)."""
        values, missing = encoded
        self.buf[rows] = values
        if self.miss is not None:
            self.miss[rows] = False if missing is None else missing

    def missing(self, rows: np.ndarray) -> np.ndarray:
        if self.miss is not None:
            return self.miss[rows]
        return self._value_missing(self.buf[rows])

    def encoded_missing(self, encoded: Encoded) -> np.ndarray:
        values, missing = encoded
        if self.miss is not None:
            return np.zeros(len(values), bool) if missing is None else missing
        return self._value_missing(values)

    def _value_missing(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def keep(self, selector: slice | np.ndarray, room: int = 0) -> None:
        live = self.buf[: self.n][selector]
        missing = None if self.miss is None else self.miss[: self.n][selector]
        self.n = len(live)
        # copies (old views stay untouched), with room for ``room`` more rows
        self.buf = np.empty(self.n + room, dtype=self.dtype)
        self.buf[: self.n] = live
        if missing is not None:
            self.miss = np.empty(self.n + room, bool)
            self.miss[: self.n] = missing


class CategoryColumn(_NumpyColumn):
    """Strings from a small or repeating set: codes into a :class:`Dictionary`.

    Codes are held in the integer type pandas itself gives them for the dictionary's size (int8
    up to 126 values): most columns have a handful of values and then take a byte a row. The
    buffer is widened, in a new buffer, when the dictionary outgrows it. When retention leaves
    an eighth of the dictionary unused (ids of jobs long gone), it is rebuilt with the values
    still in use: a store that keeps a bounded number of rows keeps a bounded dictionary too.
    A value costs the dictionary about 150 bytes of Python objects (its string, its slot in the
    index, its code), against the 20 bytes pandas counts for a category: at half unused, as
    this was before, the dictionaries of the default limits held 130,000 values (20 MB) for
    nothing (benchmarks/soak.py).
    """

    kind = "cat"
    fill = -1
    dtype: Any = np.int8

    def __init__(self, dictionary: Dictionary | None = None) -> None:
        super().__init__()
        self.dictionary = dictionary or Dictionary()
        self._widen()

    def _widen(self) -> None:
        """A buffer wide enough for every code of the dictionary (a new one when it grew)."""
        wanted = np.dtype(_code_dtype(len(self.dictionary)))
        if wanted.itemsize > self.buf.itemsize:
            grown = np.empty(len(self.buf), wanted)
            grown[: self.n] = self.buf[: self.n]
            self.buf = grown
            self.dtype = wanted.type

    def append(self, encoded: Encoded) -> None:
        self._widen()
        super().append(encoded)

    def put(self, rows: np.ndarray, encoded: Encoded, take: np.ndarray) -> None:
        self._widen()
        super().put(rows, encoded, take)

    def assign(self, rows: np.ndarray, encoded: Encoded) -> None:
        self._widen()
        super().assign(rows, encoded)

    def keep(self, selector: slice | np.ndarray, room: int = 0) -> None:
        super().keep(selector, room)
        size = len(self.dictionary)
        if size < _DICTIONARY_KEPT:
            return
        used = np.flatnonzero(np.bincount(self.buf[: self.n].astype(np.intp) + 1, minlength=size + 1)[1:])
        if len(used) * _DICTIONARY_SLACK > size * (_DICTIONARY_SLACK - 1):  # nearly all in use
            return
        values = self.dictionary.values
        self.dictionary = Dictionary([values[i] for i in used.tolist()])
        remap = np.full(size + 1, -1, np.int32)  # the last one: code -1 stays -1
        remap[used] = np.arange(len(used), dtype=np.int32)
        self.dtype = _code_dtype(len(used))
        codes = self.buf
        self.buf = np.empty(len(codes), self.dtype)
        self.buf[: self.n] = remap[codes[: self.n]]

    def encode(self, values: pa.Array | list) -> Encoded:
        if isinstance(values, pa.Array):
            if values.type != pa.string():
                values = values.cast(pa.string())
            return self.dictionary.codes(values), None
        return self.dictionary.codes_of_list(list(values)), None

    def _value_missing(self, values: np.ndarray) -> np.ndarray:
        return values < 0

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> pd.Categorical:
        dtype = self.dictionary.dtype()
        wanted = _code_dtype(len(dtype.categories))
        if self.buf.dtype == wanted:  # the usual case: no copy of rows that never change
            codes = _rows(self.buf, start, stop, frozen)
        else:
            codes = self.buf[start:stop].astype(wanted)
        return pd.Categorical.from_codes(codes, dtype=dtype, validate=False)


class FloatColumn(_NumpyColumn):
    """Numbers, NaN when missing."""

    fill = np.nan

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dtype = np.float32 if kind == "f32" else np.float64
        super().__init__()

    def encode(self, values: pa.Array | list) -> Encoded:
        if isinstance(values, pa.Array):
            if values.null_count == len(values):
                return np.full(len(values), np.nan, self.dtype), None
            wide = values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        else:
            try:
                wide = np.array(values, dtype=np.float64)  # None becomes NaN
            except OverflowError:  # an integer beyond a float's range: missing
                wide = np.array([_float_or_nan(v) for v in values], np.float64)
        if self.dtype is np.float64:
            return wide, None
        with np.errstate(over="ignore"):  # beyond float32's range: missing, not an infinity nobody sent
            narrow = wide.astype(self.dtype)
        beyond = np.isinf(narrow) & np.isfinite(wide)
        if beyond.any():
            narrow[beyond] = np.nan
        return narrow, None

    def _value_missing(self, values: np.ndarray) -> np.ndarray:
        return np.isnan(values)

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> np.ndarray:
        return _rows(self.buf, start, stop, frozen)


class MaskedColumn(_NumpyColumn):
    """Integers, timestamps and booleans: values plus a missing mask (pandas masked arrays)."""

    masked = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.dtype = {"int32": np.int32, "int64": np.int64, "ts": np.int64, "bool": np.bool_}[kind]
        self.fill = False if kind == "bool" else (NAT if kind == "ts" else 0)
        super().__init__()

    def encode(self, values: pa.Array | list | np.ndarray) -> Encoded:
        if isinstance(values, np.ndarray):  # int64 values (ns for timestamps), none missing
            return values.astype(self.dtype, copy=False), None
        if not isinstance(values, pa.Array):
            return self._encode_list(list(values))
        if values.null_count == len(values):
            return np.full(len(values), self.fill, self.dtype), np.ones(len(values), bool)
        missing = values.is_null().to_numpy(zero_copy_only=False) if values.null_count else None
        if self.kind == "ts":
            values = values.cast(pa.int64())
        if values.null_count:
            values = pc.fill_null(values, self.fill)
        out = values.to_numpy(zero_copy_only=False)
        if self.kind == "int32":
            # out-of-range integers become missing rather than wrapping around
            big = (out > np.iinfo(np.int32).max) | (out < np.iinfo(np.int32).min)
            if big.any():
                missing = big if missing is None else (missing | big)
                out = np.where(big, 0, out)
        return out.astype(self.dtype, copy=False), missing

    def _encode_list(self, values: list) -> Encoded:
        # Python ints (ns for timestamps) and bools, None where missing
        is_none = np.array([v is None for v in values], bool)
        missing = is_none if is_none.any() else None
        if missing is not None:
            fill = self.fill
            values = [fill if v is None else v for v in values]
        if self.kind == "int32":
            try:
                out = np.array(values, np.int64)
            except OverflowError:  # an integer beyond int64: missing, as any beyond int32
                huge = np.array([not _in_int64(v) for v in values], bool)
                out = np.array([0 if h else v for v, h in zip(values, huge, strict=True)], np.int64)
                missing = huge if missing is None else (missing | huge)
            big = (out > np.iinfo(np.int32).max) | (out < np.iinfo(np.int32).min)
            if big.any():  # out of range: missing rather than wrapped around
                missing = big if missing is None else (missing | big)
                out[big] = 0
            return out.astype(np.int32), missing
        try:
            return np.array(values, self.dtype), missing
        except OverflowError:  # an integer beyond int64: keep what fits
            fits = [isinstance(v, (bool, int)) and _in_int64(v) for v in values]
            out = np.array([v if ok else 0 for v, ok in zip(values, fits, strict=True)], self.dtype)
            lost = ~np.array(fits, bool)
            return out, lost if missing is None else (missing | lost)

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> Any:
        missing = _rows(self.miss, start, stop, frozen)  # type: ignore[arg-type]
        if self.kind == "ts":
            values = self.buf[start:stop]
            if missing.any() and (values[missing] != NAT).any():  # NaT must be in the values
                values = values.copy()
                values[missing] = NAT
            else:
                values = _rows(self.buf, start, stop, frozen)
            return _datetimes(values)
        values = _rows(self.buf, start, stop, frozen)
        if self.kind == "bool":
            return pd.arrays.BooleanArray(values, missing)
        return pd.arrays.IntegerArray(values, missing)


class ObjectColumn(_NumpyColumn):
    """Python objects (lists, dicts), or free text in latest-state tables (``text``).

    The short strings inside lists and dicts are held once each: parsing makes a new string
    for every value of every event, and most repeat (the metrics' ``changes`` are a few dozen
    values such as "+0" in 80,000 dicts, knowledge tags a few dozen words): at the default
    limits they were 30 MB of copies, more than the dicts themselves (benchmarks/soak.py).
    """

    fill = None
    dtype = object

    def __init__(self, kind: str = "obj") -> None:
        self.kind = kind
        super().__init__()
        self._strings: dict[str, str] = {}  # the one copy of each short string seen

    def encode(self, values: pa.Array | list) -> Encoded:
        if isinstance(values, pa.Array):
            if values.null_count == len(values):
                return np.full(len(values), None, dtype=object), None
            values = values.to_pylist()
        if self.kind == "obj":
            values = [value if value is None else self._share(value) for value in values]
        # never np.array(values): a list of lists would become a 2-D array
        return np.fromiter(values, dtype=object, count=len(values)), None

    def _share(self, value: Any) -> Any:
        """``value``, with the short strings of its lists and dicts (one level deep) replaced by
        the copy seen first; values are only ever replaced by equal ones."""
        if len(self._strings) > _SHARED_STRINGS:  # bounded: a column of ever new strings
            self._strings = {}
        strings = self._strings
        if type(value) is dict:
            for key, item in value.items():
                if type(item) is str and len(item) <= _SHORT:
                    value[key] = strings.setdefault(item, item)
        elif type(value) is list:
            for i, item in enumerate(value):
                if type(item) is str and len(item) <= _SHORT:
                    value[i] = strings.setdefault(item, item)
        return value

    def _value_missing(self, values: np.ndarray) -> np.ndarray:
        return np.fromiter((v is None for v in values), bool, len(values))

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> Any:
        values = self.buf[start:stop]
        if self.kind == "text":  # through Arrow: several times faster than from objects
            return pd.array(pa.array(values, pa.large_string(), from_pandas=True), dtype=STR_DTYPE)
        return _rows(self.buf, start, stop, frozen)


class ArrowTextColumn(Column):
    """Free text in an append-only table: immutable Arrow chunks, handed out without a copy.

    Held as ``large_string``, the type pandas' ``str`` arrays hold: a read then casts nothing
    (from ``string``, pandas made new 8-byte offsets for every row of every read, 8 MB for
    raw's million frames, held by the cached frame beside the store's own 4-byte ones).

    The text of rows retention dropped goes as soon as its chunk is all or half dead
    (:meth:`release`), not at the table's next compaction: raw's frames are the bulk of a
    store's memory, and at a compaction every eighth of the rows the dead text held before it
    was up to an eighth of the table (45 MB at raw's million frames).
    """

    kind = "text"

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[pa.Array] = []
        self.released = 0  # leading rows whose chunks are gone: the chunks hold [released, n)

    def encode(self, values: pa.Array | pa.ChunkedArray | list) -> Encoded:
        if not isinstance(values, (pa.Array, pa.ChunkedArray)):
            values = pa.array(values, pa.large_string(), memory_pool=BULK_POOL)
        elif values.type != pa.large_string():
            values = values.cast(pa.large_string(), memory_pool=BULK_POOL)  # the text itself is not copied
        return values, None  # type: ignore[return-value]

    def append(self, encoded: Encoded) -> None:
        values = encoded[0]
        if len(values):  # a chunked array (a table read back from files) adds its chunks as they are
            self.chunks += values.chunks if isinstance(values, pa.ChunkedArray) else [values]  # type: ignore[list-item]
            self.n += len(values)
        if len(self.chunks) > _MAX_CHUNKS:  # bound the number of chunks (and so the cost of a read)
            self.chunks = _compact(self.chunks)

    def extend_empty(self, count: int) -> None:
        self.append((pa.nulls(count, pa.large_string()), None))  # type: ignore[arg-type]

    def to_pandas(self, start: int, stop: int, frozen: bool = False) -> Any:
        data = pa.chunked_array(self.chunks, pa.large_string()).slice(start - self.released, stop - start)
        return pd.array(data, dtype=STR_DTYPE)

    def release(self, start: int) -> None:
        """Drop the chunks of rows before ``start``, and copy what is still live of a chunk
        once at least half of it is dead (each row is copied at most once per halving: the
        copies of a chunk add up to less than the chunk)."""
        dead = start - self.released
        while self.chunks and dead >= len(self.chunks[0]):
            gone = len(self.chunks.pop(0))
            self.released += gone
            dead -= gone
        if self.chunks and dead > 0 and 2 * dead >= len(self.chunks[0]):
            self.chunks[0] = _copy(self.chunks[0].slice(dead))
            self.released += dead

    def keep(self, selector: slice | np.ndarray, room: int = 0) -> None:
        if isinstance(selector, slice):
            start, stop, _ = selector.indices(self.n)
            self.release(start)
            data = pa.chunked_array(self.chunks, pa.large_string())
            kept = data.slice(start - self.released, stop - start)
        else:  # a mask of the rows [0, n): those before ``released`` are gone already
            data = pa.chunked_array(self.chunks, pa.large_string())
            kept = data.filter(pa.array(selector[self.released :]))
        chunks = [c for c in kept.chunks if len(c)]
        if chunks and chunks[0].offset:  # the dropped rows' text would stay held by the first
            chunks[0] = _copy(chunks[0])
        self.chunks = chunks
        self.n = len(kept)
        self.released = 0

    def put(self, rows: np.ndarray, encoded: Encoded, take: np.ndarray) -> None:
        raise TypeError("Arrow text columns are append-only")

    def missing(self, rows: np.ndarray) -> np.ndarray:
        raise TypeError("Arrow text columns are append-only")

    def encoded_missing(self, encoded: Encoded) -> np.ndarray:
        return encoded[0].is_null().to_numpy(zero_copy_only=False)  # type: ignore[attr-defined]


def _copy(chunk: pa.Array) -> pa.Array:
    """A slice of a chunk in buffers of its own (a slice alone keeps the whole chunk's)."""
    return pa.concat_arrays([chunk], memory_pool=BULK_POOL)


_MAX_CHUNKS = 32
#: strings up to this long inside objects are held once (see ObjectColumn), at most this many
_SHORT = 64
_SHARED_STRINGS = 65536
#: dictionaries smaller than this are never rebuilt by retention (see CategoryColumn), nor
#: those with less than one value in this many unused
_DICTIONARY_KEPT = 4096
_DICTIONARY_SLACK = 8
#: the int objects of codes, shared by every dictionary (see _codes)
_CODES: list[int] = []
_CODES_LOCK = threading.Lock()


def _codes(start: int, stop: int) -> list[int]:
    """The codes ``start`` to ``stop`` as int objects shared by every dictionary. Python makes
    a new 32-byte object for each int above 256 it computes; a dictionary's index holds one per
    value, so that the 500,000 values of a store's dictionaries held 16 MB of equal ints."""
    if stop > len(_CODES):
        with _CODES_LOCK:
            if stop > len(_CODES):
                _CODES.extend(range(len(_CODES), max(stop, 2 * len(_CODES))))
    return _CODES[start:stop]
_BIG_CHUNK = 8192


def _compact(chunks: list[pa.Array]) -> list[pa.Array]:
    """Fewer chunks: the small chunks at the end (fewer than ``_BIG_CHUNK`` rows each) become
    one. Large chunks are never copied again: concatenating everything would copy a million
    frames' text (a stall of a tenth of a second) every few dozen small batches, and merging
    large chunks in a binary counter's way would still do it once per doubling."""
    start = len(chunks)
    while start > 0 and len(chunks[start - 1]) < _BIG_CHUNK:
        start -= 1
    if len(chunks) - start < 2:
        return chunks
    return [*chunks[:start], pa.concat_arrays(chunks[start:], memory_pool=BULK_POOL)]


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None on another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return cast("Callable[[int], int]", libc.malloc_trim)
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim() if sys.platform.startswith("linux") else None


def release_freed_memory() -> None:
    """Give the memory the C heap holds free back to the system (glibc; elsewhere nothing).

    Compaction frees a table's old buffers, often tens of MB, in the middle of the heap, where
    glibc keeps them for reuse instead of returning them: measured on 3.5M events of the
    reference workload, a store held about 180 MB of such free memory (benchmarks/soak.py).
    Called after a compaction (every eighth of a large table's rows), it returns them.
    """
    if _TRIM is not None:
        _TRIM(0)
    # pyarrow's default pool (mimalloc) keeps the pages of parsing's freed buffers for this
    # thread's next allocations: tens of MB after a large batch; returning them takes 1 ms
    pa.default_memory_pool().release_unused()


def make_column(kind: str, latest: bool) -> Column:
    """The column buffer for ``kind`` (append-only tables keep text in Arrow)."""
    if kind == "cat":
        return CategoryColumn()
    if kind in ("f64", "f32"):
        return FloatColumn(kind)
    if kind in ("int32", "int64", "ts", "bool"):
        return MaskedColumn(kind)
    if kind == "text" and not latest:
        return ArrowTextColumn()
    return ObjectColumn(kind)
