"""Odd frames among well-formed ones in small batches (msgspec's path): the same tables as
decoding every frame one by one, and every odd frame reported, never an exception."""

from __future__ import annotations

import pandas as pd
import pytest
from store_samples import sample_frames

from aios_notebook.store import TABLES, EventStore

_JOB = '"job_id":"job-9","run_id":"r","type":"pdf","status":"processing","progress":0.5,"timestamp":"2026-01-01T00:00:00Z"'
ODD_FRAMES = [
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":NaN},"seq":900001}',  # NaN
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":1e400},"seq":900002}',  # inf
    '{"event":"processing_job_status","data":{' + _JOB + ',"filename":"\\ud800"},"seq":900003}',  # lone surrogate
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":true}',  # a bool seq
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":1.0}',  # a float seq
    '{"event":"processing_job_status","data":{' + _JOB + '},"seq":900006,"extra":1}',  # a 4th key
    '{"event":"processing_job_status","data":[1,2],"seq":900007}',  # data not an object
    '{"event":"processing_job_status","data":null,"seq":900008}',
    '{"event":"processing_job_status","data":{' + _JOB + ',"job_id":"job-10"},"seq":900009}',  # a duplicate key
    '{"event":"processing_job_status","data":{' + _JOB + ',"progress":"half"},"seq":900010}',  # wrong type
    '{"event":"processing_job_status","data":{"run_id":"r","status":"x"},"seq":900011}',  # required missing
    '{"event":"processing_job_status","data":{' + _JOB + ',"deep":' + "[" * 5000 + "]" * 5000 + '},"seq":900012}',
    '{"event":"processing_job_status","data":{' + _JOB + ',"retry_count":123456789012345678901234567890},"seq":900013}',
    '{"event":42,"data":{},"seq":900014}',
    '{"event":"no_such_event","data":{"a":1},"seq":900015}',
    '{"data":{' + _JOB + '},"seq":900016}',
    '{"event":"processing_job_status","data":{' + _JOB + '}',  # truncated
    '{"event":"processing_job_status","data":{' + _JOB + ',"filename":"\ud800"},"seq":900018}',  # raw surrogate
    b'{"event":"processing_job_status","data":{"job_id":"job-11","status":"queued"},"seq":900019}',  # binary
    '{"event":"processing_job_status","data":{' + _JOB + ',"retry_count":2.0},"seq":900020}',  # integral float
]


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
    assert fast.fast_frames > 0.8 * len(frames)
    for name in TABLES:
        pd.testing.assert_frame_equal(fast.table(name), slow.table(name), obj=name)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_odd_frames_in_small_batches_match_frame_by_frame(batch_size):
    frames: list[str | bytes] = list(sample_frames(0.2, seed=3))
    step = max(1, len(frames) // len(ODD_FRAMES))
    for index, odd in enumerate(ODD_FRAMES):
        frames.insert(index * step + index, odd)
    small, slow = _ingest_one_by_one(frames, batch_size)
    _assert_same_tables(small, slow, frames)
    assert len(small.errors) >= 10  # the odd frames are described, not dropped in silence


def test_odd_frames_in_one_large_batch_match_frame_by_frame():
    """The Arrow path (a batch of thousands): groups Arrow rejects go the per-frame ways, and
    rows of several ways merge; an integer beyond int64 there once raised OverflowError."""
    frames: list[str | bytes] = list(sample_frames(1.0, seed=3))
    assert len(frames) > 2000
    for index, odd in enumerate(ODD_FRAMES):
        frames.insert(100 + 7 * index, odd)
    times = [1_700_000_000_000_000_000] * len(frames)
    large = EventStore(background=False)
    slow = EventStore(background=False, fast_path=False)
    for store in (large, slow):
        store.ingest_frames(frames, times)
    _assert_same_tables(large, slow, frames)


@pytest.mark.parametrize("batch_size", [1500, 5000])
def test_odd_frames_among_sealed_chunks_match_frame_by_frame(batch_size):
    """Batches larger than EventStore.SEAL: frames waiting become Arrow arrays SEAL at a time
    in ingest_frame; a chunk holding a binary or unencodable frame stays a list. Either way the
    tables are those of decoding every frame one by one."""
    frames: list[str | bytes] = list(sample_frames(4.0, seed=3))
    assert len(frames) > 2 * batch_size > 2 * EventStore.SEAL
    for index, odd in enumerate(ODD_FRAMES):  # all within one chunk of SEAL frames
        frames.insert(EventStore.SEAL + 3 * index, odd)
    sealed, slow = _ingest_one_by_one(frames, batch_size)
    _assert_same_tables(sealed, slow, frames)
    assert len(sealed.errors) >= 10
