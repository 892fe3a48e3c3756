"""Memory of ``job_events`` for a million job status events, against their raw JSON bytes.

Ingests 1,000,000 realistic processing_job_status frames (the reference workload's, replicated
with fresh job ids: about ten events per job) and prints the deep memory usage of the
``job_events`` DataFrame (``memory_usage(deep=True)``), the frames' UTF-8 bytes, and the ratio.
Aim: at most 0.25. Run: ``.venv/bin/python benchmarks/memory.py [--events N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import status_frames

from aios_notebook.store import EventStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()

    started = time.perf_counter()
    frames = status_frames(args.events)
    raw_bytes = sum(len(f.encode()) for f in frames)
    print(f"{len(frames):,} frames built in {time.perf_counter() - started:.1f} s, "
          f"{raw_bytes / 1e6:,.1f} MB of JSON ({raw_bytes / len(frames):.0f} bytes a frame)")

    # the raw table is not what is measured here: keep it small so the run fits in memory
    store = EventStore(retention={"raw": 10_000, "job_events": None})
    started = time.perf_counter()
    for frame in frames:
        store.ingest_frame(frame)
    events = store.job_events
    elapsed = time.perf_counter() - started
    store.close()
    assert len(events) == len(frames), (len(events), len(frames))

    usage = events.memory_usage(deep=True)
    total = int(usage.sum())
    print(f"ingested and read in {elapsed:.1f} s ({len(frames) / elapsed:,.0f} frames/s)")
    print("job_events deep memory by column (bytes per row):")
    for column, size in usage.items():
        if column != "Index":
            print(f"  {column:14s} {events[column].dtype!s:22s} {size / len(events):6.1f}")
    print(f"job_events: {total / 1e6:,.1f} MB = {total / len(events):.1f} bytes a row")
    ratio = total / raw_bytes
    print(f"ratio to raw JSON: {ratio:.3f} (aim <= 0.25: {'met' if ratio <= 0.25 else 'NOT met'})")


if __name__ == "__main__":
    main()
