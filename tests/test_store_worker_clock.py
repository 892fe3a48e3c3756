"""The store's background thread keeps time on the store's clock (issue 20: one Clock everywhere).

On a ManualClock nothing the worker schedules by time (parsing frames that waited ``max_delay``,
delivering every ``notify_interval``) happens until the clock is advanced, whatever the wall
clock does; then it happens without a read or a flush.
"""

from __future__ import annotations

import threading

from aios_notebook.protocol.codec import encode
from aios_notebook.store import ChangeBatch, EventStore
from aios_notebook.testing import ManualClock

WAIT = 10.0  # seconds a test waits for the background thread at most


def test_the_worker_waits_for_the_stores_clock_not_the_wall_clock() -> None:
    clock = ManualClock()
    store = EventStore(clock=clock, notify_interval=0.05, max_delay=0.05)
    delivered = threading.Event()
    batches: list[ChangeBatch] = []

    def seen(batch: ChangeBatch) -> None:
        batches.append(batch)
        delivered.set()

    try:
        store.subscribe(seen)
        store.ingest_frame(encode("agent_status_update", {"agent_id": "a1", "name": "A", "status": "idle"}, 1))
        # ten times max_delay and notify_interval on the wall clock: a worker on the wall clock
        # would have parsed and delivered by now; on the store's clock no time has passed
        assert not delivered.wait(0.5)
        assert batches == []
        clock.advance(0.1)  # past both: the worker's next tick parses and delivers, unasked
        assert delivered.wait(WAIT)
        assert batches[0].tables["raw"] == 1 and batches[0].tables["agents"] == 1
    finally:
        store.close()
