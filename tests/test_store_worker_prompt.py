"""The store's background thread parses frames within milliseconds while parsing takes little of
its time (a live stream), and keeps to large batches once it takes much (a replay's rates)."""

from __future__ import annotations

import time

from aios_notebook.protocol.codec import encode
from aios_notebook.store import EventStore

WAIT = 10.0  # seconds a test waits for the background thread at most


def _frame(seq: int) -> str:
    return encode("agent_status_update", {"agent_id": f"a{seq}", "name": "A", "status": "idle",
                                          "timestamp": "2026-01-05T00:00:00Z"}, seq)


def _parsed_within(store: EventStore, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if store._pending_count() == 0:  # parsed by the thread: nothing read the store
            return True
        time.sleep(0.002)
    return False


def test_a_trickle_is_parsed_at_once_not_after_max_delay() -> None:
    store = EventStore(max_delay=60.0, notify_interval=60.0)
    try:
        for seq in range(1, 6):
            store.ingest_frame(_frame(seq))
            assert _parsed_within(store, WAIT), f"frame {seq} still waits"
        assert store.counts["agents"] == 5
        assert store._worker is not None and store._worker.prompt
    finally:
        store.close()


def test_frames_wait_for_a_batch_when_parsing_is_not_cheap() -> None:
    store = EventStore(max_delay=60.0, notify_interval=60.0)
    assert store._worker is not None
    store._worker.prompt_share = 0.0  # as if parsing had taken all of the last second
    try:
        store.ingest_frame(_frame(1))
        assert not _parsed_within(store, 0.5)
        assert store.counts["agents"] == 1  # a read parses what waits, as always
    finally:
        store.close()
