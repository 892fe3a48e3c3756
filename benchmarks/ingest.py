"""Ingest rate of the kit (``AIOSClient`` -> ``EventStore``) against a bare ``websockets`` loop, in one run.

A feeder process sends realistic frames (the reference workload's event mix, encoded beforehand,
~330 bytes each) over a loopback WebSocket. By default it writes frames framed beforehand
straight to its socket (``--feeder raw``): it costs next to nothing, so the receiving process is
the bottleneck, which the CPU figures printed for each side show (a side near 100% of one CPU runs
at its own limit). In this process, alternating for ``--rounds`` rounds:

- the bare loop: ``websockets.asyncio.client.connect(url, compression=None, max_queue=None)`` and
  ``async for`` counting frames, the fastest a Python receiver can be;
- the kit, as an analyst runs it: ``AIOSClient(url, token)`` with its default ``EventStore``,
  started, timed until ``len(client.store.job_events)`` reaches the job events sent, then every
  table read once.

Two figures: the best kit run against the best bare run, and the median of each round's ratio (a
round's two runs are seconds apart, so the ratio cancels this shared machine's drift). Aim: the
kit at 0.7 of the bare loop (stretch 0.9). ``--feeder send`` uses a feeder that awaits ``ws.send``
per frame, as a Python server does: it is slower than both receivers, so both read the same rate
and the ratio says nothing about the kit (kept to show that; labelled feeder-bound).
Run: ``.venv/bin/python benchmarks/ingest.py [--frames N] [--rounds R] [--feeder raw|send] [--pin]``.
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

from store_frames import Feeder, pin, workload_frames

from aios_notebook import AIOSClient
from aios_notebook.store import EventStore

_TOKEN = "ingest-benchmark-token"  # the feeder takes any


async def _bare(url: str, count: int) -> float:
    """Seconds from the connection's opening to the last frame, doing nothing with the frames."""
    started = time.perf_counter()
    async with websockets.connect(url, max_size=None, compression=None, max_queue=None, close_timeout=1) as ws:
        received = 0
        async for _ in ws:
            received += 1
            if received == count:
                break
    return time.perf_counter() - started


def _kit(url: str, count: int, job_events: int) -> float:
    """Seconds from ``start()`` to every job event visible and every table read, through the client."""
    client = AIOSClient(url, _TOKEN, store=EventStore(), max_size=None, reconnect_delay=0.2)
    started = time.perf_counter()
    client.start()
    try:
        client.wait_for(lambda s: len(s.job_events) >= job_events, timeout=600, interval=0.01)
        for name in client.store.TABLE_NAMES:
            client.store.table(name)
        elapsed = time.perf_counter() - started
        raw = client.store.counts["raw"]
        if raw < count:
            raise RuntimeError(f"the kit kept {raw} frames of {count}")
    finally:
        client.stop()
        client.store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--feeder", choices=("raw", "send"), default="raw")
    parser.add_argument("--pin", action="store_true", help="the feeder on one CPU, this process on another")
    args = parser.parse_args()

    cpus = os.cpu_count() or 1
    feeder_cpu, client_cpu = (0, 1) if args.pin and cpus >= 2 else (None, None)
    job_events = sum('"event":"processing_job_' in f for f in workload_frames(args.frames))
    with Feeder("workload", args.frames, feeder_cpu) as feeder:
        where = pin(client_cpu)
        url = feeder.url_for(args.frames, args.feeder)
        bound = "" if args.feeder == "raw" else " (FEEDER-BOUND: this feeder is slower than both receivers)"
        print(f"{args.frames:,} frames per run ({job_events:,} job events), feeder '{args.feeder}'{bound}, "
              f"client {where}, load average {os.getloadavg()[0]:.1f} on {cpus} CPUs")
        bare, kit = [], []
        for round_ in range(args.rounds):
            cpu = time.process_time()
            elapsed = asyncio.run(_bare(url, args.frames))
            bare.append(args.frames / elapsed)
            bare_busy = (time.process_time() - cpu) / elapsed
            cpu = time.process_time()
            elapsed = _kit(url, args.frames, job_events)
            kit.append(args.frames / elapsed)
            kit_busy = (time.process_time() - cpu) / elapsed
            # CPU of this process over wall time: 100% is one core busy all along (the kit's store
            # worker may add a second one, since Arrow releases the GIL)
            print(f"  round {round_ + 1}: bare {bare[-1]:,.0f} frames/s (CPU {bare_busy:.0%}), "
                  f"kit {kit[-1]:,.0f} frames/s (CPU {kit_busy:.0%}), ratio {kit[-1] / bare[-1]:.2f}")
    best_bare, best_kit = max(bare), max(kit)
    ratio = best_kit / best_bare
    paired = statistics.median(k / b for k, b in zip(kit, bare, strict=True))
    verdict = "met" if paired >= 0.9 else "met (0.7)" if paired >= 0.7 else "NOT met"
    print(f"bare websockets loop: {best_bare:,.0f} frames/s (best of {args.rounds})")
    print(f"AIOSClient -> EventStore, all tables read at the end: {best_kit:,.0f} frames/s (best of {args.rounds})")
    print(f"ratio kit / bare, best against best: {ratio:.2f}")
    print(f"ratio kit / bare, median of the rounds' ratios: {paired:.2f} (aim >= 0.7, stretch 0.9: {verdict})")
    bare_us, kit_us = 1e6 / best_bare, 1e6 / best_kit
    print(f"time per frame: bare loop {bare_us:.2f} us, the kit {kit_us:.2f} us: the kit adds {kit_us - bare_us:.2f} us "
          f"(0.7 of the bare loop leaves it {bare_us / 0.7 - bare_us:.2f} us)")
    print(json.dumps({"bare": round(best_bare), "kit": round(best_kit), "ratio_best": round(ratio, 3),
                      "ratio_paired_median": round(paired, 3)}))


if __name__ == "__main__":
    main()
