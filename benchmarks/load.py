"""Loading recordings: ``EventStore.load`` from JSONL (and .gz), against its parts, in one run.

The reference workload's events (offline ``generate``, each with a seq, as the server sends
them) are written as a recording, then read back:

- ``json.loads`` of every frame: what parsing each frame once costs on this machine (a yardstick);
- the reader alone (``RecordingReader``: lines -> Arrow columns of frames and receive times);
- the store alone (``store.bulk.ingest_frames`` of the same frames as Arrow arrays, in the
  batches the loader hands it);
- ``EventStore.load`` end to end (reader + store + the check that the bulk path is exact, which
  reads the event names and seqs the store parsed), from JSONL and from gzip; from JSONL also the
  process's CPU per round (every thread: the wall time follows what else the machine runs);
- the exact path (every frame through the protocol session, as for recordings with reconnects).

Each is the best of ``--rounds`` runs, the median beside it. The target is 300,000 frames/s from JSONL.
Run: ``.venv/bin/python benchmarks/load.py [--hours H] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa

from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingReader, RecordingWriter
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore, bulk
from aios_notebook.store.load import load_into

TARGET = 300_000


def _timed(rounds: int, run: Callable[[], object]) -> list[float]:
    """Seconds of each of ``rounds`` runs, in the order run (the best counts; the spread shows
    how noisy the machine was)."""
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        took.append(time.perf_counter() - started)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=48.0, help="simulated hours recorded (default 48)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each measurement; the best counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aios-load-bench-") as folder:
        frames: list[str] = []
        times: list[float] = []
        for seq, (moment, event, data) in enumerate(generate(hours=args.hours), start=1):
            frames.append(encode(event, data, seq))
            times.append(moment)
        plain, packed = Path(folder) / "rec.jsonl", Path(folder) / "rec.jsonl.gz"
        for path in (plain, packed):
            with RecordingWriter(path, flush_interval=None) as writer:
                for frame, moment in zip(frames, times, strict=True):
                    writer.write(frame, moment)
        count = len(frames)
        size = plain.stat().st_size
        print(f"recording: {count:,} frames, {size / 1e6:.1f} MB JSONL, {packed.stat().st_size / 1e6:.1f} MB gzip "
              f"({args.hours:g} simulated hours)")

        received = np.array([int(t * 1e9) for t in times], np.int64)
        results: dict[str, list[float]] = {}
        results["json.loads of every frame"] = _timed(args.rounds, lambda: [json.loads(f) for f in frames])
        results["reader alone (JSONL)"] = _timed(args.rounds, lambda: sum(len(b) for b in RecordingReader(plain).batches()))

        array = pa.array(frames, pa.string())

        def store_alone() -> None:
            store = EventStore(background=False)
            for start in range(0, count, 65_536):
                bulk.ingest_frames(store, array[start:start + 65_536], received[start:start + 65_536])
            store.close()

        results["store alone (ingest_frames)"] = _timed(args.rounds, store_alone)
        loaded: list[int] = []
        cpu: list[float] = []  # the process's CPU seconds per load, every thread (Arrow's pool too)

        def load_plain() -> None:
            before = os.times()
            store = EventStore.load(plain)
            loaded.append(store.frames)
            store.close()  # each round's store goes: rounds do not pile up memory for the next
            after = os.times()  # the span _timed measures
            cpu.append(after.user + after.system - before.user - before.system)

        results["EventStore.load (JSONL)"] = _timed(args.rounds, load_plain)
        results["EventStore.load (gzip)"] = _timed(args.rounds, lambda: EventStore.load(packed).close())
        results["exact path (session per frame)"] = _timed(
            1, lambda: load_into(EventStore(background=False), plain).close())
        assert loaded[-1] == count

        # the receive times as the loader converts them: a sanity check that they are not the cost
        texts = [f.received_at for f in RecordingReader(plain)]
        results["receive times -> ns (Arrow)"] = _timed(
            args.rounds, lambda: pa.array(texts, pa.string()).cast(pa.timestamp("ns", tz="UTC")))

    width = max(map(len, results))
    print(f"best of {args.rounds} runs (median beside it: the machine's noise), load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'':{width}}  {'frames/s':>12}  {'x json.loads':>12}  {'x target':>9}  {'median':>10}")
    yardstick = count / min(results["json.loads of every frame"])
    for name, took in results.items():
        rate = count / min(took)
        print(f"{name:{width}}  {rate:>12,.0f}  {rate / yardstick:>12.2f}  {rate / TARGET:>9.2f}  "
              f"{count / statistics.median(took):>10,.0f}")
    load_s = min(results["EventStore.load (JSONL)"])
    print(f"of EventStore.load (JSONL): reader {min(results['reader alone (JSONL)']) / load_s:.0%}, "
          f"store {min(results['store alone (ingest_frames)']) / load_s:.0%}")
    # on a shared machine the wall time follows the other processes; the CPU a load takes does less
    walls = results["EventStore.load (JSONL)"]
    print("EventStore.load (JSONL), CPU of the process per round: "
          + ", ".join(f"{c:.2f} s ({c / w:.1f} cores)" for c, w in zip(cpu, walls, strict=True))
          + f"; {count / min(cpu):,.0f} frames per CPU second at best")


if __name__ == "__main__":
    main()
