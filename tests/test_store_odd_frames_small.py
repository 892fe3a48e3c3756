"""Odd frames among well-formed ones in small batches (msgspec's path): the same tables as
decoding every frame one by one, and every odd frame reported, never an exception."""

from __future__ import annotations

import pandas as pd
import pytest
from store_samples import ODD_FRAMES, sample_frames

from aios_notebook.store import TABLES, EventStore, bulk


def _ingest_one_by_one(frames: list[str | bytes], batch_size: int) -> tuple[EventStore, EventStore]:
    """The frames through ``ingest_frame`` into a store and into one decoding frame by frame."""
    fast = EventStore(background=False, batch_size=batch_size)
    slow = EventStore(background=False, batch_size=batch_size, fast_path=False)  # the same batches
    for frame in frames:
        for store in (fast, slow):
            store.ingest_frame(frame, received_at=1_700_000_000.0)
    return fast, slow


def _assert_same_tables(fast: EventStore, slow: EventStore, frames: list[str | bytes]) -> None:
    assert fast.frames == slow.frames == len(frames)
    assert bulk.fast_frames(fast) > 0.8 * len(frames)
    for name in TABLES:
        pd.testing.assert_frame_equal(fast.table(name), slow.table(name), obj=name)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.usefixtures("store_engine")
def test_odd_frames_in_small_batches_match_frame_by_frame(batch_size):
    frames: list[str | bytes] = list(sample_frames(0.2, seed=3))
    step = max(1, len(frames) // len(ODD_FRAMES))
    for index, odd in enumerate(ODD_FRAMES):
        frames.insert(index * step + index, odd)
    small, slow = _ingest_one_by_one(frames, batch_size)
    _assert_same_tables(small, slow, frames)
    assert len(small.errors) >= 10  # the odd frames are described, not dropped in silence


@pytest.mark.parametrize("spacing", ["close", "spread"])
@pytest.mark.usefixtures("store_engine")
def test_odd_frames_in_one_large_batch_match_frame_by_frame(spacing):
    """The Arrow path (a batch of thousands): groups Arrow rejects go the per-frame ways, and
    rows of several ways merge; an integer beyond int64 there once raised OverflowError.
    Spread out, most odd frames sit among frames Arrow reads, so the checks of what Arrow
    accepts (a negative seq, a number beyond its column) are what sends them the per-frame way;
    close together, they share the pieces Arrow rejects."""
    frames: list[str | bytes] = list(sample_frames(1.0, seed=3))
    assert len(frames) > 2000
    step = 7 if spacing == "close" else len(frames) // len(ODD_FRAMES)
    for index, odd in enumerate(ODD_FRAMES):
        frames.insert(100 + step * index, odd)
    times = [1_700_000_000_000_000_000] * len(frames)
    large = EventStore(background=False)
    slow = EventStore(background=False, fast_path=False)
    for store in (large, slow):
        bulk.ingest_frames(store, frames, times)
    _assert_same_tables(large, slow, frames)


def test_a_group_beyond_what_arrow_reads_at_once_is_read_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """One event's frames beyond what the Arrow engine reads in one call (64 MB; here 40 kB, a
    few hundred frames) are halved until each piece fits: the same tables, still parsed by Arrow."""
    from aios_notebook.store.parse import arrow_engine

    monkeypatch.setattr(arrow_engine, "_MAX_BLOCK", 40_000)
    frames: list[str | bytes] = list(sample_frames(1.0, seed=3))
    assert sum(map(len, frames)) > 20 * 40_000  # the frequent events' groups are many pieces
    times = [1_700_000_000_000_000_000] * len(frames)
    large = EventStore(background=False)
    slow = EventStore(background=False, fast_path=False)
    for store in (large, slow):
        bulk.ingest_frames(store, frames, times)
    _assert_same_tables(large, slow, frames)


@pytest.mark.parametrize("batch_size", [1500, 5000])
@pytest.mark.usefixtures("store_engine")
def test_odd_frames_among_sealed_chunks_match_frame_by_frame(batch_size):
    """Batches larger than EventStore._SEAL: frames waiting become Arrow arrays _SEAL at a time
    in ingest_frame; a chunk holding a binary or unencodable frame stays a list. Either way the
    tables are those of decoding every frame one by one."""
    frames: list[str | bytes] = list(sample_frames(4.0, seed=3))
    assert len(frames) > 2 * batch_size > 2 * EventStore._SEAL
    for index, odd in enumerate(ODD_FRAMES):  # all within one chunk of _SEAL frames
        frames.insert(EventStore._SEAL + 3 * index, odd)
    sealed, slow = _ingest_one_by_one(frames, batch_size)
    _assert_same_tables(sealed, slow, frames)
    assert len(sealed.errors) >= 10
