"""Sent -> visible in a table read, through ``AIOSClient``, at 10,000 events per second.

A feeder process sends the reference workload's event mix paced at ``--rate`` frames per second
over a loopback WebSocket, writing the moment it sends each frame into the frame's ``timestamp``
(microseconds). Here an ``AIOSClient`` receives them into its default ``EventStore`` (the path an
analyst runs), and the main thread reads ``client.store.job_events`` every 5 ms, as a notebook
polling for news would; for each new row (a job event: about a fifth of the frames) it takes the
time from the feeder's send (its ``timestamp``) to the moment the read returned. Every read parses
all frames waiting, whatever their event, so the figure covers the whole stream. Prints p50, p99
and the worst, after a warm-up second. Aims: p99 at most 20 ms, p50 at most 8 ms.
Run: ``.venv/bin/python benchmarks/latency.py [--rate N] [--seconds S] [--pin]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import Feeder, pin

from aios_notebook import AIOSClient
from aios_notebook.store import EventStore

POLL = 0.005  # seconds between reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pin", action="store_true", help="the feeder on one CPU, this process on another")
    args = parser.parse_args()

    count = int(args.rate * (args.seconds + 1))
    cpus = os.cpu_count() or 1
    feeder_cpu, client_cpu = (0, 1) if args.pin and cpus >= 2 else (None, None)
    with Feeder("workload", count, feeder_cpu) as feeder:
        where = pin(client_cpu)
        print(f"{count:,} frames at {args.rate:,}/s through AIOSClient, client {where}, "
              f"load average {os.getloadavg()[0]:.1f} on {cpus} CPUs")
        client = AIOSClient(feeder.url_for(count, "send", rate=args.rate, stamp=True), "latency-benchmark-token",
                            store=EventStore(), max_size=None)
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        client.start()
        store = client.store
        latencies: list[np.ndarray] = []
        seen = 0
        reads = 0
        durations = []
        deadline = time.monotonic() + args.seconds * 3 + 30
        try:
            while time.monotonic() < deadline:
                asked = time.time_ns()
                table = store.job_events
                returned = time.time_ns()
                durations.append(returned - asked)
                reads += 1
                if len(table) > seen:
                    latencies.append(returned - table["timestamp"].array.asi8[seen:])
                    seen = len(table)
                if client.stats.frames_received >= count and store.counts["raw"] >= count:
                    break
                time.sleep(POLL)
            busy = (time.process_time() - cpu_started) / (time.perf_counter() - wall_started)
        finally:
            client.stop()
            store.close()
    values = np.concatenate(latencies)[args.rate // 5 :] / 1e6  # ms, after about a warm-up second
    p50, p99 = np.percentile(values, [50, 99])
    took = np.array(durations) / 1e6
    print(f"{len(values):,} job events measured over {reads:,} reads; a read took p50 {np.median(took):.1f} ms, "
          f"p99 {np.percentile(took, 99):.1f} ms (parsing the frames waiting included)")
    print(f"the client process kept {busy:.0%} of one CPU busy (receiving, parsing, reading)")
    print(f"sent -> visible in a read: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {values.max():.1f} ms")
    print(f"p99 / aim (20 ms): {p99 / 20:.2f} ({'met' if p99 <= 20 else 'NOT met'}); "
          f"p50 / aim (8 ms): {p50 / 8:.2f} ({'met' if p50 <= 8 else 'NOT met'})")


if __name__ == "__main__":
    main()
