"""Whether the latest-state tables' list path pays: a trickle of frames, flushed every few frames.

A live client whose notebook reads every few milliseconds makes the store parse and apply small
batches. Latest-state tables then work a small batch of Python lists out event by event
(``LatestTable._update_lists``, with small batches waiting and applied together); the vectorised
``LatestTable.update`` gives the same tables (tests/test_store_small_flush.py). This prints the
time to ingest ``--frames`` frames of the reference workload with a ``flush()`` every
``--every`` frames, both ways (the vectorised one by ``SMALL = 0``, ``PENDING_ROWS = 1``, as the
test does), medians of ``--rounds`` alternating rounds, and the ratio.
Run: ``.venv/bin/python benchmarks/latest_paths.py [--frames N] [--every 5,50] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import workload_frames

from aios_notebook.store import EventStore
from aios_notebook.store.tables import LatestTable


def run(frames: list[str], every: int, vectorised: bool) -> float:
    store = EventStore(background=False)
    if vectorised:
        for table in store._tables.values():
            if isinstance(table, LatestTable):
                table.SMALL = 0
                table.PENDING_ROWS = 1
    started = time.perf_counter()
    for start in range(0, len(frames), every):
        for frame in frames[start : start + every]:
            store.ingest_frame(frame)
        store.flush()
    for name in ("jobs", "agents", "dag_runs", "dag_steps", "knowledge"):
        store.table(name)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--every", default="5,50", help="frames between flushes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        everies = [int(part) for part in args.every.split(",")]
    except ValueError:
        parser.error(f"--every: expected whole numbers separated by commas, got {args.every!r}")
    if args.frames < 1 or args.rounds < 1 or any(every < 1 for every in everies):
        parser.error("--frames, --rounds and --every must be >= 1")
    frames = workload_frames(args.frames)
    for every in everies:
        lists, vectorised = [], []
        for _ in range(args.rounds):
            lists.append(run(frames, every, False))
            vectorised.append(run(frames, every, True))
        a, b = statistics.median(lists), statistics.median(vectorised)
        print(f"flush every {every:4d} frames: list path {a:6.2f} s, vectorised {b:6.2f} s "
              f"(vectorised / list: {b / a:.2f})")


if __name__ == "__main__":
    main()
