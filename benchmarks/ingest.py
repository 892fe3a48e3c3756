"""Ingest rate of the EventStore against a bare ``websockets`` receive loop, in one run.

A feeder process sends realistic frames (the reference workload's event mix, encoded
beforehand, ~330 bytes each) over a loopback WebSocket as fast as the socket takes them. In
this process a ``websockets`` asyncio client either only receives them (the bare loop), or
hands each to ``store.ingest_frame`` and, after the last one, reads every table once (the
store). Both count from the first frame to the end, against the same feeder, alternating, for
``--rounds`` rounds of one run each. Two figures: the best store run against the best bare
run, and the median of each round's ratio (a round's two runs are seconds apart, so the
ratio cancels this shared machine's drift in speed, which moves both sides by 15% or more
over a minute). The OS places the processes, as on an analyst's machine: the store's worker
thread parses on whichever core is free, with Arrow releasing the GIL. ``--pin`` pins the
feeder to one CPU and this process (receiving and parsing) to another.

Feeders (``--feeder``): ``send`` awaits ``ws.send`` per frame, as a Python server does (the
default); ``raw`` writes frames framed beforehand to the socket, a feeder that costs next to
nothing, so the receiving side is the bottleneck. Aim: the store at 0.9 of the bare loop.
Run: ``.venv/bin/python benchmarks/ingest.py [--frames N] [--feeder send|raw]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from store_frames import Feeder, pin

from aios_notebook.store import EventStore


async def _receive(url: str, count: int, mode: str, store: EventStore | None) -> float:
    """Seconds from the first frame to the last (and, with a store, to every table read)."""
    async with websockets.connect(url, max_size=None, compression=None, max_queue=None, close_timeout=1) as ws:
        await ws.send(json.dumps({"count": count, "mode": mode}))
        received = 0
        ingest = store.ingest_frame if store is not None else None
        first = await ws.recv()
        started = time.perf_counter()
        if ingest is not None:
            ingest(first)
        received = 1
        async for frame in ws:
            if ingest is not None:
                ingest(frame)
            received += 1
            if received == count:
                break
        if store is not None:
            for name in store.TABLE_NAMES:
                store.table(name)
            assert store.counts["raw"] == count, store.counts
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--feeder", choices=("send", "raw"), default="send")
    parser.add_argument("--pin", action="store_true", help="the feeder on one CPU, this process on another")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    feeder_cpu, client_cpu = (0, 1) if args.pin and cpus >= 2 else (None, None)
    with Feeder("workload", args.frames, feeder_cpu) as feeder:
        where = pin(client_cpu)
        print(f"{args.frames:,} frames per run, feeder '{args.feeder}', client {where}, "
              f"load average {os.getloadavg()[0]:.1f} on {cpus} CPUs")
        bare, stored = [], []
        for round_ in range(args.rounds):
            cpu = time.process_time()
            elapsed = asyncio.run(_receive(feeder.url, args.frames, args.feeder, None))
            bare.append(args.frames / elapsed)
            bare_busy = (time.process_time() - cpu) / elapsed
            store = EventStore()
            cpu = time.process_time()
            elapsed = asyncio.run(_receive(feeder.url, args.frames, args.feeder, store))
            stored.append(args.frames / elapsed)
            store_busy = (time.process_time() - cpu) / elapsed
            store.close()
            # how busy this process was: a bare loop with CPU to spare is waiting for the feeder
            print(f"  round {round_ + 1}: bare {bare[-1]:,.0f} frames/s (CPU {bare_busy:.0%}), "
                  f"store {stored[-1]:,.0f} frames/s (CPU {store_busy:.0%}), ratio {stored[-1] / bare[-1]:.2f}")
    best_bare, best_store = max(bare), max(stored)
    ratio = best_store / best_bare
    paired = statistics.median(s / b for s, b in zip(stored, bare, strict=True))
    print(f"bare websockets loop: {best_bare:,.0f} frames/s (best of {args.rounds})")
    print(f"into the store, all tables read at the end: {best_store:,.0f} frames/s (best of {args.rounds})")
    print(f"ratio store / bare, best against best: {ratio:.2f} (aim >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")
    print(f"ratio store / bare, median of the rounds' ratios: {paired:.2f} "
          f"(aim >= 0.9: {'met' if paired >= 0.9 else 'NOT met'})")
    # with this process's CPU busy all along, the gap in time per frame is what the store costs
    bare_us, store_us = 1e6 / best_bare, 1e6 / best_store
    print(f"time per frame: bare loop {bare_us:.1f} us, with the store {store_us:.1f} us: the store adds "
          f"{store_us - bare_us:.1f} us (0.9 of the bare loop leaves it {bare_us / 0.9 - bare_us:.1f} us)")


if __name__ == "__main__":
    main()
