"""The store's bulk entry points: frames in large batches, parsing apart from applying.

Who calls them: loading a recording (:mod:`.load`: one thread parses the next batch while the
caller's applies this one, after checking the event names and seqs parsed), the backtest
(``rules/backtest.py`` feeds its stores a run of frames at once), conversion and the archive
(:mod:`.archive` and ``history/archive.py`` turn archived frames back into tables). An analyst
feeds a store with ``EventStore.ingest_frame`` / ``ingest`` and never needs these: they live
here so that ``EventStore``'s own names are the analyst's (issue 20).

Each takes the store as its first argument; the store's lock and parsing stay its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .parse import Parsed

if TYPE_CHECKING:  # pragma: no cover
    from .store import EventStore

__all__ = ["fast_frames", "ingest_frames", "ingest_parsed", "parse_frames"]


def ingest_frames(store: EventStore, texts: list[str | bytes] | pa.Array, received_ns: Any, *,
                  check: Callable[[Any, np.ndarray], Any] | None = None) -> int:
    """Bulk ingest: frames with their receive times (int64 ns since the epoch, one each).

    ``texts`` may also be an Arrow string array (no Python string is made per frame then).
    ``check`` (for loaders) sees each frame's event name and seq (-1: none) once the batch
    is parsed, before anything is applied: an exception from it leaves the store unchanged.

    The path of ``EventStore.load``: the parsing of ``ingest_frame``, in one large batch
    (frames already waiting go first). Returns how many frames were taken.
    """
    return ingest_parsed(store, parse_frames(store, texts, received_ns), check=check)


def parse_frames(store: EventStore, texts: list[str | bytes] | pa.Array, received_ns: Any) -> Parsed:
    """The first half of :func:`ingest_frames`: parse, touching nothing of the store, so a
    loader can parse the next batch on another thread while :func:`ingest_parsed` applies this one."""
    return store._parse_frames(texts, received_ns)


def ingest_parsed(store: EventStore, parsed: Parsed, *,
                  check: Callable[[Any, np.ndarray], Any] | None = None) -> int:
    """The second half of :func:`ingest_frames`: apply what :func:`parse_frames` made (after the
    frames already waiting); returns how many frames it held."""
    return store._ingest_parsed(parsed, check=check)


def fast_frames(store: EventStore) -> int:
    """Frames the store parsed in groups (Arrow, or msgspec with checks per field over a group);
    the rest, frames with problems and error events, were decoded one by one. Tests and
    benchmarks read it to see which engines took a load."""
    return store._fast_frames
