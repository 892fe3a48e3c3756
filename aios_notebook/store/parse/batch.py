"""What every parse engine works on: one batch of frames, the table batches made of it so far,
and the :class:`Engine` protocol itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...arrow_pool import BULK_POOL
from ..schema import TABLES, derive, sent_changes, storable
from ..tables import Batch

__all__ = ["Engine", "Frames", "Parsed", "arrow_texts", "owned_columns"]


@dataclass
class Parsed:
    """The outcome of parsing one batch of frames.

    Attributes:
        batches: table -> batches of rows (merged in arrival order by the store).
        raw: the raw table's batch (one row per frame).
        now: the latest event time seen in the batch (ns), or None.
        events: frames per event name (None for frames without one).
        fast: how many frames a batched engine (Arrow, msgspec) parsed.
        names: each frame's event name (an Arrow string array or a list; None where it has none).
        seqs: each frame's top-level seq (-1 where it has none).
    """

    batches: dict[str, list[Batch]] = field(default_factory=dict)
    raw: Batch | None = None
    now: int | None = None
    events: Counter = field(default_factory=Counter)
    fast: int = 0
    names: Any = None
    seqs: np.ndarray | None = None


class Engine(Protocol):
    """One way of turning frames into table batches."""

    def parse(self, frames: Frames, rows: np.ndarray) -> np.ndarray:
        """Parse the frames at positions ``rows`` that this engine can vouch for, add their
        table batches to ``frames`` (:meth:`Frames.add`, :meth:`Frames.took`), and return the
        positions handled; the others go to the next engine."""
        ...


def arrow_texts(texts: Sequence[Any]) -> pa.Array | None:
    """Text frames as one Arrow string array; None when a frame is binary (Arrow would take its
    bytes as text) or holds a lone surrogate (not encodable): the reference engine describes those."""
    if set(map(type, texts)) - {str}:
        return None
    try:
        return pa.array(texts, pa.string(), memory_pool=BULK_POOL)
    except (pa.ArrowException, TypeError, ValueError):
        return None


def owned_columns(items: list[tuple[int, dict]], columns: dict[str, Any]) -> dict[str, np.ndarray]:
    """Which rows carry each column (a key present in the row's dict), where not all do."""
    owned = {}
    for name in columns:
        carries = np.array([name in row for _, row in items], bool)
        if not carries.all():
            owned[name] = carries
    return owned


class Frames:
    """One batch of frames being parsed, and what the engines made of it so far.

    Attributes:
        arrow: the frames as one Arrow string array (null where a frame is not storable text).
        received: each frame's receive time (ns).
        names: each frame's event name as the Arrow engine's regex read it, once it ran.
    """

    def __init__(self, texts: list[Any] | pa.Array, received: np.ndarray) -> None:
        self.count = len(texts)
        self.received = received
        self._all_text = True  # else the per-frame engines give the raw text of frames that are not
        if isinstance(texts, pa.Array):  # already Arrow strings (a recording's frames)
            self.arrow = texts if texts.type == pa.string() else texts.cast(pa.string())
            self._texts: list[Any] | None = None
        else:
            arrow = arrow_texts(texts)
            if arrow is None:  # a binary frame, or a lone surrogate
                self._all_text = False
                arrow = pa.array([t if isinstance(t, str) and storable(t) else None for t in texts], pa.string())
            self.arrow, self._texts = arrow, texts
        self.names: pa.Array | None = None
        self.parsed = Parsed()
        self._seqs = np.full(self.count, -1, np.int64)
        self._events: dict[int, str | None] = {}  # names the per-frame engines read
        self._raw_texts: dict[int, str] = {}  # the text kept for a frame that is not text

    def text(self, position: int) -> Any:
        """The frame at ``position`` as sent (str, bytes, or a protocol dialect's ``Translated``);
        made from the Arrow array only when read (the per-frame engines read few frames)."""
        return self.arrow[position].as_py() if self._texts is None else self._texts[position]

    def add(self, table: str, positions: np.ndarray, columns: dict[str, Any],
            counted: np.ndarray | None = None, owned: dict[str, np.ndarray] | None = None) -> None:
        """Add decoded rows of ``table`` (columns of Arrow arrays or lists): the schema's derived
        columns are computed here, once for every engine."""
        derive(table, columns)
        kinds = TABLES[table].kinds
        for name, values in columns.items():
            if isinstance(values, pa.Array) and kinds.get(name) == "obj":
                columns[name] = values = values.to_pylist()
            if name == "changes":  # a key sent as null is as absent (Arrow's structs cannot tell)
                columns[name] = list(map(sent_changes, values))
        self.parsed.batches.setdefault(table, []).append(Batch(positions, columns, counted, owned or {}))

    def took(self, positions: list[int] | np.ndarray, seqs: Any, events: Sequence[str | None] | None = None,
             texts: Sequence[str] | None = None) -> None:
        """Record the frames at ``positions``: their seqs (None or -1: none), unless the Arrow
        engine's regex read them their event names, and the raw table's text of frames that
        are not text (bytes, a lone surrogate, a translation)."""
        self._seqs[positions] = seqs if isinstance(seqs, np.ndarray) else [-1 if s is None else s for s in seqs]
        if events is not None:
            self._events.update(zip(positions, events, strict=True))
        if texts is not None and not self._all_text:
            self._raw_texts.update(zip(positions, texts, strict=True))

    def saw(self, ns: int | None) -> None:
        """An event time (ns) seen in the batch: the latest becomes the store's ``now``."""
        if ns is not None and (self.parsed.now is None or ns > self.parsed.now):
            self.parsed.now = ns

    def finish(self) -> Parsed:
        """The batch's :class:`Parsed`, with its raw rows, once every frame was handled."""
        parsed = self.parsed
        if self.names is None:  # every frame went a per-frame way
            event_column: Any = [self._events.get(position) for position in range(self.count)]
            parsed.events.update(event_column)
        else:
            event_column = _with_overrides(self.names, self._events)
            for item in pc.value_counts(event_column).to_pylist():
                parsed.events[item["values"]] += item["counts"]
        parsed.names, parsed.seqs = event_column, self._seqs
        parsed.raw = Batch(
            np.arange(self.count, dtype=np.int64),
            {"received_at": self.received, "seq": pa.array(self._seqs, pa.int64(), mask=self._seqs < 0),
             "event": event_column, "text": _with_overrides(self.arrow, self._raw_texts)},
        )
        return parsed


def _with_overrides(strings: pa.Array, overrides: dict[int, Any]) -> pa.Array:
    """``strings`` with those at some positions replaced (None: null)."""
    if not overrides:
        return strings
    positions = np.fromiter(overrides, np.int64, len(overrides))
    order = np.argsort(positions, kind="stable")
    values = list(overrides.values())
    mask = np.zeros(len(strings), bool)
    mask[positions] = True
    replacement = pa.array([values[i] for i in order.tolist()], pa.string())
    return pc.replace_with_mask(strings, pa.array(mask), replacement)
