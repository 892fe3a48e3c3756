"""Reading ``jobs`` and ``job_events`` from a store that holds a million events.

1. ingest 1,000,000 realistic job status frames and read both tables once (the cold build);
2. a batch of 10,000 more frames arrives: time the first read of ``jobs`` + ``job_events``
   after it (parsing the waiting batch included), the aim is under 100 ms;
3. read again with nothing new: the aim is under 1 ms.

Each timed read is repeated a few times (new batches for step 2) and the median is printed.
Run: ``.venv/bin/python benchmarks/read.py [--events N] [--batch N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import status_frames

from aios_notebook.store import EventStore

REPEATS = 5


def _read(store: EventStore) -> float:
    started = time.perf_counter()
    jobs, events = store.jobs, store.job_events
    elapsed = time.perf_counter() - started
    assert len(jobs) and len(events)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()

    frames = status_frames(args.events + REPEATS * args.batch)  # the batches arrive twice: see below
    base, extra = frames[: args.events], frames[args.events :]
    # background=False: nothing parses behind the timer's back, every read does its own work
    store = EventStore(retention={"raw": 10_000, "job_events": None}, background=False)
    for frame in base:
        store.ingest_frame(frame)
    store.flush()
    cold = _read(store)
    print(f"{len(store.job_events):,} job events, {len(store.jobs):,} jobs, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"cold build of both tables (everything parsed before): {cold * 1e3:.1f} ms")

    after_batch, unchanged, parse_part = [], [], []
    for round_ in range(REPEATS):
        batch = extra[round_ * args.batch : (round_ + 1) * args.batch]
        for frame in batch:
            store.ingest_frame(frame)
        after_batch.append(_read(store))
        unchanged.append(min(_read(store) for _ in range(20)))
        # the same again, timing the parse apart from the build
        for frame in batch:
            store.ingest_frame(frame)
        started = time.perf_counter()
        store.flush()
        parse_part.append(time.perf_counter() - started)
        _read(store)
    first = statistics.median(after_batch)
    again = statistics.median(unchanged)
    print(f"first read after a batch of {args.batch:,} frames (parse included): "
          f"{first * 1e3:.1f} ms (runs: {', '.join(f'{t * 1e3:.0f}' for t in after_batch)}); "
          f"aim < 100 ms: {'met' if first < 0.1 else 'NOT met'}, ratio to aim {first / 0.1:.2f}")
    parse = statistics.median(parse_part)
    print(f"  of which parsing the batch: about {parse * 1e3:.0f} ms (median of separate runs), "
          f"building the two DataFrames: about {max(0.0, first - parse) * 1e3:.0f} ms")
    print(f"unchanged re-read: {again * 1e3:.3f} ms; aim < 1 ms: {'met' if again < 0.001 else 'NOT met'}, "
          f"ratio to aim {again / 0.001:.2f}")


if __name__ == "__main__":
    main()
