"""History at scale: the stream's Parquet archive, read out of core (DuckDB), scaled out (Dask).

``Archive(path)`` reads an archive written by ``aios-notebook archive``, ``client.archive(path)``
or ``store.to_archive(path)`` (the writer is :mod:`aios_notebook.store.archive`);
:func:`convert` turns JSONL recordings into one. ``backtest(rules, Archive(path),
engine="dask")`` (:mod:`aios_notebook.rules`) runs rules over it on Dask workers.
"""

from __future__ import annotations

from ..store.archive import ArchiveError
from .archive import Archive
from .convert import convert

__all__ = ["Archive", "ArchiveError", "convert"]
