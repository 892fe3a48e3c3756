"""The big Arrow buffers (recordings read and parsed, the text the store keeps) come from
``arrow_pool.BULK_POOL``, not pyarrow's default pool (see arrow_pool.py for why)."""

from __future__ import annotations

import gc
from pathlib import Path

import pyarrow as pa
from store_samples import sample_frames

from aios_notebook.arrow_pool import BULK_POOL
from aios_notebook.recording import RecordingWriter
from aios_notebook.store import EventStore
from aios_notebook.store.columns import _compact


def test_compacted_text_is_allocated_from_the_bulk_pool() -> None:
    chunks = [pa.array([f"frame {k} {i} " * 20 for i in range(50)], pa.string()) for k in range(40)]
    before = BULK_POOL.bytes_allocated()
    compacted = _compact(chunks)
    assert len(compacted) == 1
    text_bytes = compacted[0].buffers()[2].size
    assert BULK_POOL.bytes_allocated() - before >= text_bytes  # the merged text lives in the bulk pool
    del compacted
    assert BULK_POOL.bytes_allocated() - before < text_bytes  # and goes back to it


def test_a_loaded_store_keeps_its_frames_text_in_the_bulk_pool(tmp_path: Path) -> None:
    frames = sample_frames(hours=6)
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, 1_767_571_200.0 + i * 0.01)
    gc.collect()
    before = BULK_POOL.bytes_allocated()
    store = EventStore.load(path)
    assert len(store.raw) == len(frames)
    kept = BULK_POOL.bytes_allocated() - before
    assert kept >= sum(map(len, frames))  # at least the raw table's text, read in columns
    store.close()
    del store
    gc.collect()
    assert BULK_POOL.bytes_allocated() - before < sum(map(len, frames))  # freed with the store
