"""The dispatcher: which engines parse a batch, chosen by its size, the reference engine last."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .arrow_engine import ArrowEngine
from .batch import Engine, Frames, Parsed
from .msgspec_engine import MsgspecEngine
from .reference import ReferenceEngine

__all__ = ["ENGINES", "SMALL_BATCH", "engines_for", "parse_frames"]

#: batches smaller than this skip Arrow: its reads cost milliseconds per call whatever their
#: size, which a trickle of frames (a live stream read often) cannot repay
SMALL_BATCH = 2000
#: every engine by name; "reference" takes any frame and words its problems
ENGINES: dict[str, Engine] = {"arrow": ArrowEngine(), "msgspec": MsgspecEngine(), "reference": ReferenceEngine()}


def engines_for(count: int, small: int) -> tuple[Engine, ...]:
    """The batched engines a batch of ``count`` frames goes through, in order, before the
    reference engine takes what they leave (tests set one engine here to hold each to it)."""
    if count >= small:
        return ENGINES["arrow"], ENGINES["msgspec"]
    return (ENGINES["msgspec"],)


def parse_frames(texts: list[Any] | pa.Array, received: np.ndarray, fast: bool = True, small: int = SMALL_BATCH) -> Parsed:
    """Parse one batch of frames (str text frames, bytes, or a dialect's ``Translated``; or an
    Arrow string array) received at ``received`` (ns) into table batches.

    ``fast=False`` gives every frame to the reference engine (the same tables: for comparison).
    """
    frames = Frames(texts, received)
    left = np.ones(frames.count, bool)
    rows = np.arange(frames.count, dtype=np.int64)
    for engine in engines_for(frames.count, small) if fast else ():
        if not rows.size:
            break
        handled = engine.parse(frames, rows)
        if handled.size:
            frames.parsed.fast += len(handled)
            left[handled] = False
            rows = np.flatnonzero(left)
    if rows.size:
        ENGINES["reference"].parse(frames, rows)
    return frames.finish()
