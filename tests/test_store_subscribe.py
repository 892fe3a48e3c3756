"""Change batches: coalesced, filtered by table, robust to failing subscribers; threads."""

from __future__ import annotations

import threading
import time

import pytest
from store_samples import sample_frames

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import encode
from aios_notebook.store import ChangeBatch, EventStore

WAIT = 10.0  # seconds a test waits for the background thread at most


def _wait_for(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def test_flush_delivers_one_batch_per_subscriber():
    store = EventStore(background=False)
    seen: list[ChangeBatch] = []
    jobs_only: list[ChangeBatch] = []
    store.subscribe(seen.append)
    store.subscribe(jobs_only.append, tables=["jobs"])
    frames = sample_frames(1.0)
    for frame in frames:
        store.ingest_frame(frame)
    change = store.flush()
    assert len(seen) == 1 and len(jobs_only) == 1
    batch = seen[0]
    assert batch.version == store.version and change.version == batch.version
    assert batch.tables["raw"] == len(frames) and "job_events" in batch and "agents" in batch
    assert batch.rows == sum(batch.tables.values())
    assert dict(jobs_only[0].tables) == {"jobs": jobs_only[0].tables["jobs"]}
    assert store.flush() is None and len(seen) == 1  # nothing new: no call


def test_the_background_thread_coalesces_a_fast_stream():
    store = EventStore(notify_interval=0.05)
    batches: list[ChangeBatch] = []
    subscription = store.subscribe(batches.append, tables="job_events")
    frames = sample_frames(2.0)
    sent = sum('"event":"processing_job_' in f for f in frames)
    for frame in frames:
        store.ingest_frame(frame)
    assert _wait_for(lambda: sum(b.tables["job_events"] for b in batches) == sent)
    # tens of thousands of events, a handful of calls
    assert 1 <= len(batches) < 50
    assert [b.version for b in batches] == sorted(b.version for b in batches)
    subscription.close()
    calls = len(batches)
    store.ingest_frame(frames[0])
    store.flush()
    assert len(batches) == calls  # closed: nothing more
    store.close()


def test_a_subscriber_may_read_the_store_it_is_told_about():
    store = EventStore(background=False)
    seen: list[int] = []
    store.subscribe(lambda batch: seen.append(len(store.jobs)), tables=["jobs"])
    store.ingest(sample_frames(0.5))
    assert seen and seen[-1] == len(store.jobs) > 0


@pytest.mark.parametrize("batch_size", [300, 4096])  # 4096: frames are sealed (_SEAL) by all three threads
def test_several_threads_may_ingest_at_once(batch_size):
    frames = sample_frames(3.0)
    assert len(frames) > 4 * EventStore._SEAL
    store = EventStore(batch_size=batch_size)
    threads = [threading.Thread(target=lambda part=frames[i::3]: [store.ingest_frame(f) for f in part])
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    raw = store.raw
    assert sorted(raw["seq"].tolist()) == list(range(1, len(frames) + 1))
    assert len(store.job_events) == sum('"event":"processing_job_' in f for f in frames)
    store.close()


def test_a_failing_subscriber_is_reported_and_stops_nothing():
    store = EventStore(background=False)
    good: list[ChangeBatch] = []

    def broken(batch: ChangeBatch) -> None:
        raise RuntimeError("view exploded")

    store.subscribe(broken, tables=["raw"])
    store.subscribe(good.append, tables=["raw"])
    store.ingest([encode("ping", {"timestamp": "2026-01-05T00:00:00Z"})])
    store.ingest([encode("ping", {"timestamp": "2026-01-05T00:00:01Z"})])
    assert len(good) == 2 and len(store.raw) == 2
    errors = store.errors
    assert errors["kind"].astype(str).tolist() == ["rule_error"]  # the 1st failure, not every one
    assert "broken" in errors["message"].iloc[0] and "view exploded" in errors["message"].iloc[0]


def test_subscribe_checks_its_arguments():
    store = EventStore(background=False)
    with pytest.raises(ConfigurationError, match="unknown tables"):
        store.subscribe(print, tables=["jobz"])
    with pytest.raises(ConfigurationError, match="callable"):
        store.subscribe("not callable")  # type: ignore[arg-type]
    with store.subscribe(print) as subscription:
        assert "print" in repr(subscription)
    assert subscription.closed


def test_reads_while_another_thread_ingests_are_consistent():
    frames = sample_frames(2.0)
    store = EventStore(batch_size=512)
    done = threading.Event()
    problems: list[str] = []

    def feed() -> None:
        try:
            for frame in frames:
                store.ingest_frame(frame)
        finally:
            done.set()

    thread = threading.Thread(target=feed)
    thread.start()
    last = -1
    reads = 0
    while not done.is_set() or reads < 3:
        raw = store.raw
        jobs = store.jobs
        reads += 1
        if len(raw) < last:
            problems.append(f"raw shrank from {last} to {len(raw)}")
        last = len(raw)
        if raw["seq"].is_monotonic_increasing is False:
            problems.append("raw out of order")
        if jobs["job_id"].duplicated().any():
            problems.append("a job twice in jobs")
    thread.join(timeout=WAIT)
    assert not problems, problems[:3]
    assert reads >= 3
    assert len(store.raw) == len(frames)
    store.close()


def test_the_background_thread_ends_when_idle_and_restarts():
    store = EventStore(max_delay=0.01)
    store._worker.idle_exit = 0.05  # type: ignore[union-attr]
    store.ingest_frame(encode("ping", {"timestamp": "2026-01-05T00:00:00Z"}))
    assert _wait_for(lambda: not store._worker.running)  # type: ignore[union-attr]
    assert not store._pending_count()  # parsed by the thread before it ended, not by the read below
    assert store.counts["raw"] == 1
    store.ingest_frame(encode("ping", {"timestamp": "2026-01-05T00:00:01Z"}))
    assert store._worker.running  # type: ignore[union-attr]
    assert len(store.raw) == 2
    store.close()
    assert not store._worker.running  # type: ignore[union-attr]


def test_frames_waiting_are_bounded_when_the_worker_cannot_keep_up():
    """A worker that never gets to parse: ``ingest_frame`` parses itself once
    _INLINE_BATCHES batches wait, so the frames held stay bounded, and none is lost."""
    store = EventStore(batch_size=16)
    store.ingest_frame(encode("heartbeat", {"timestamp": "2026-01-05T00:00:00Z"}, 1))  # starts the worker
    store._worker._flush = lambda: None  # stands for a worker that never keeps up
    store.flush()
    frames = sample_frames(1.0)
    bound = EventStore._INLINE_BATCHES * 16
    assert len(frames) > 3 * bound
    most = 0
    for frame in frames:
        store.ingest_frame(frame)
        most = max(most, store._pending_count())
    assert most == bound - 1  # parsed at the bound itself, in ingest_frame
    assert store._version > 1  # tables changed without any read
    assert store.frames == len(frames) + 1
    store.close()
