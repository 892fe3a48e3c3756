"""Shared by the history tests: the reference workload's events as frames with a seq each (as
the server sends them), a store holding them, recordings of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingWriter
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore, bulk

UNLIMITED = {name: None for name in EventStore.TABLE_NAMES}


def workload(hours: float, scenario: str = "steady", seed: int = 7, limit: int | None = None,
             first_seq: int = 1, start: str | None = None) -> tuple[list[str], np.ndarray]:
    """Frames and their event times (int64 ns), received at their event time."""
    frames: list[str] = []
    times: list[int] = []
    for seq, (moment, event, data) in enumerate(generate(seed=seed, scenario=scenario, hours=hours, start=start), first_seq):
        frames.append(encode(event, data, seq))
        times.append(round(moment * 1e9))
        if limit is not None and len(frames) >= limit:
            break
    return frames, np.array(times, np.int64)


def store_of(frames: list[str], times: np.ndarray) -> EventStore:
    """A store fed these frames at once (no retention: the tables hold every row)."""
    store = EventStore(retention=UNLIMITED, background=False)
    if frames:
        bulk.ingest_frames(store, frames, times)
    return store


def record(path: Path, frames: list[str], times: np.ndarray) -> Path:
    """A JSONL recording of the frames, each received at its time."""
    with RecordingWriter(path, flush_interval=None) as writer:
        for frame, moment in zip(frames, times, strict=True):
            writer.write(frame, moment / 1e9)
    return path
