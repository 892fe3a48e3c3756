"""Tables <-> Parquet files: one ``<table>.parquet`` per table in a folder.

Dtypes round-trip through Arrow and pandas' own metadata (categoricals, ``datetime64[ns,
UTC]``, nullable ``Int64`` / ``boolean``, ``float32``, Arrow strings). Object columns (lists
such as ``tags`` and dicts such as ``metadata``, ``changes``, ``details``, ``evidence``) are
written as JSON text, because their shapes vary from row to row; their names are listed in the
file's ``aios_notebook`` metadata, and :func:`read_tables` turns them back into Python objects.
That metadata also carries the store's ``now`` and retention counters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..exceptions import RecordingError
from .schema import TABLES, TableSpec
from .tables import Batch

__all__ = ["arrow_frame", "frame_arrow", "frame_batch", "json_columns", "read_tables", "write_tables"]

_META_KEY = b"aios_notebook"


def _json_default(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _to_json(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return json.dumps(value, default=_json_default, separators=(",", ":"))


def json_columns(name: str) -> list[str]:
    """The columns of table ``name`` held as JSON text in files (lists and dicts)."""
    return [c.name for c in TABLES[name].columns if c.kind == "obj"]


def frame_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """Table ``name``'s DataFrame as Arrow, as written to files: the store's dtypes kept by
    pandas' metadata (categoricals as dictionary columns), object columns as JSON text."""
    out = frame.copy(deep=False)
    for column in json_columns(name):
        if column in out.columns:
            out[column] = pd.array([_to_json(v) for v in out[column].tolist()], dtype="str")
    return pa.Table.from_pandas(out, preserve_index=False)


def arrow_frame(name: str, table: pa.Table) -> pd.DataFrame:
    """Arrow read from a file back to table ``name``'s DataFrame (JSON text -> objects)."""
    frame = table.to_pandas()
    for column in frame.columns:
        dtype = frame[column].dtype
        # a column with no value read back has object categories; the store's are text
        if isinstance(dtype, pd.CategoricalDtype) and not len(dtype.categories) and dtype.categories.dtype == object:
            frame[column] = frame[column].cat.set_categories(pd.Index([], dtype="str"))
    for column in json_columns(name):
        if column in frame.columns:
            frame[column] = pd.Series(
                [None if v is None or (isinstance(v, float) and math.isnan(v)) else json.loads(v)
                 for v in frame[column].tolist()],
                index=frame.index, dtype=object,
            )
    return frame


def write_tables(folder: str | Path, frames: Mapping[str, pd.DataFrame], store_meta: Mapping[str, Any]) -> list[Path]:
    """Write each frame to ``folder/<name>.parquet``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in frames.items():
        table = frame_arrow(name, frame)
        meta = dict(table.schema.metadata or {})
        meta[_META_KEY] = json.dumps(
            {"table": name, "json_columns": json_columns(name), "store": dict(store_meta)}, default=_json_default
        ).encode()
        path = folder / f"{name}.parquet"
        pq.write_table(table.replace_schema_metadata(meta), path)
        paths.append(path)
    return paths


def read_tables(folder: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Read the tables written by :func:`write_tables`; returns (frames, store metadata).

    Raises:
        RecordingError: the folder holds no tables, or a file is not one of ours.
    """
    folder = Path(folder)
    frames: dict[str, pd.DataFrame] = {}
    store_meta: dict[str, Any] = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.exists():
            continue
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise RecordingError(f"{path}: not a readable Parquet file ({exc})") from exc
        raw_meta = (table.schema.metadata or {}).get(_META_KEY)
        if raw_meta is None:
            raise RecordingError(f"{path}: not written by EventStore.to_parquet (no aios_notebook metadata)")
        meta = json.loads(raw_meta)
        frames[name] = arrow_frame(name, table)
        store_meta = meta.get("store", store_meta)
    if not frames:
        raise RecordingError(f"{folder}: no table files (<table>.parquet) found")
    return frames, store_meta


def frame_batch(spec: TableSpec, frame: pd.DataFrame) -> Batch:
    """A DataFrame of ``spec``'s columns as a :class:`Batch` (loading tables back)."""
    columns: dict[str, Any] = {}
    for column in spec.columns:
        if column.name not in frame.columns:
            continue
        series = frame[column.name]
        if column.kind == "obj":
            columns[column.name] = [None if v is None or v is pd.NA else v for v in series.tolist()]
            continue
        array = pa.Array.from_pandas(series)
        if isinstance(array, pa.ChunkedArray) and column.kind != "text":
            array = array.combine_chunks()  # free text keeps its chunks: joining them copies it all
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        columns[column.name] = array
    return Batch(np.arange(len(frame), dtype=np.int64), columns)
