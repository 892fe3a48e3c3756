"""Frames -> typed table batches, by three engines behind one protocol (:class:`Engine`).

Each engine takes the frames of a batch it is given (``parse(frames, rows) -> handled``), adds
the table batches of those it can vouch for and returns their positions; the dispatcher
(:func:`parse_frames`) chooses the engines per batch by its size and gives what they leave to
the next, the reference engine last:

- :mod:`.arrow_engine`: Arrow's JSON reader, one call per event, for large batches;
- :mod:`.msgspec_engine`: msgspec per frame and checks column by column, for small ones (and the
  rare events of large ones);
- :mod:`.reference`: one frame at a time, any frame; the engine that words each problem in the
  errors table.

Engines only decode: what each column holds, which values are wrong and the derived columns are
declared once in :mod:`..schema`, and :mod:`.plans` says per event what to read and check. The
tables are the same whichever engine a frame takes (the tests run every comparison over each).
"""

from __future__ import annotations

from .batch import Engine, Frames, Parsed, arrow_texts, owned_columns
from .dispatch import ENGINES, SMALL_BATCH, engines_for, parse_frames

__all__ = ["ENGINES", "SMALL_BATCH", "Engine", "Frames", "Parsed", "arrow_texts", "engines_for", "owned_columns",
           "parse_frames"]
