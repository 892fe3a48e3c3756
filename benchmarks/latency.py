"""Frame received -> visible in a table read, at 10,000 events per second.

A feeder process sends the reference workload's event mix paced at ``--rate`` frames per second
over a loopback WebSocket. Here an I/O thread receives them (``websockets`` asyncio client) and
hands each to ``store.ingest_frame``, which stamps ``received_at``; the main thread reads the
``job_events`` table every 5 ms, as a notebook polling for news would, and for each new row (a
job event: about a fifth of the frames) takes the time from its ``received_at`` to the moment
the read returned. Every read parses all frames waiting, whatever their event, so the figure
covers the whole stream's parsing. Prints p50, p99 and the worst, after a warm-up second.
Aim: p99 at most 20 ms.
Run: ``.venv/bin/python benchmarks/latency.py [--rate N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import Feeder, pin

from aios_notebook.store import EventStore

POLL = 0.005  # seconds between reads


def _receive(url: str, count: int, rate: int, store: EventStore, done: threading.Event) -> None:
    async def run() -> None:
        async with websockets.connect(url, max_size=None, compression=None, close_timeout=1) as ws:
            await ws.send(json.dumps({"count": count, "rate": rate}))
            received = 0
            async for frame in ws:
                store.ingest_frame(frame)
                received += 1
                if received == count:
                    break

    try:
        asyncio.run(run())
    finally:
        done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()

    count = int(args.rate * (args.seconds + 1))
    cpus = os.cpu_count() or 1
    feeder_cpu, client_cpu = (None, None) if args.no_pin or cpus < 2 else (0, 1)
    with Feeder("workload", count, feeder_cpu) as feeder:
        where = pin(client_cpu)
        print(f"{count:,} frames at {args.rate:,}/s, client {where}, "
              f"load average {os.getloadavg()[0]:.1f} on {cpus} CPUs")
        store = EventStore()
        done = threading.Event()
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        thread = threading.Thread(target=_receive, args=(feeder.url, count, args.rate, store, done), daemon=True)
        thread.start()
        latencies: list[np.ndarray] = []
        seen = 0
        reads = 0
        durations = []
        while True:
            asked = time.time_ns()
            table = store.job_events
            returned = time.time_ns()
            durations.append(returned - asked)
            reads += 1
            if len(table) > seen:
                latencies.append(returned - table["received_at"].array.asi8[seen:])
                seen = len(table)
            if done.is_set() and store.counts["raw"] >= count:
                break
            time.sleep(POLL)
        thread.join(10)
        busy = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
        store.close()
    values = np.concatenate(latencies)[args.rate // 5 :] / 1e6  # ms, after about a warm-up second
    p50, p99 = np.percentile(values, [50, 99])
    took = np.array(durations) / 1e6
    print(f"{len(values):,} job events measured over {reads:,} reads; a read took p50 {np.median(took):.1f} ms, "
          f"p99 {np.percentile(took, 99):.1f} ms (parsing the frames waiting included)")
    print(f"the client process kept {busy:.0%} of its CPU busy (receiving, parsing, reading)")
    print(f"frame received -> visible in a read: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {values.max():.1f} ms")
    print(f"p99 / aim (20 ms): {p99 / 20:.2f} ({'met' if p99 <= 20 else 'NOT met'})")


if __name__ == "__main__":
    main()
