"""Memory of a store left running: a live client's RSS over time, and RSS against the tables offline.

Two figures, in one run (``--live-only`` / ``--offline-only`` pick one):

- **live soak**: the reference server (``Simulator(speed=3600)`` by default, in a process of its
  own so that only the client is measured) and, in this process, an ``AIOSClient`` with its
  default ``EventStore`` (default retention), every table read every ``--read-every`` seconds,
  for ``--seconds`` (180 by default; ``--seconds 1800`` for a longer soak). Prints the process
  RSS, the frames received and the tables' rows every ``--report-every`` seconds, then the
  growth over the last third of the run (a plateau grows by next to nothing).
- **offline**: ``--events`` events of the reference workload (``server.workload.generate``,
  encoded as the server sends them, written once to a frames file by a child process so that the
  generator's memory is not counted) through ``EventStore.ingest_frame`` with default retention,
  then every table read: the process RSS (and its growth since the imports) against the tables'
  own memory (``DataFrame.memory_usage(deep=True)`` summed over the tables), as a ratio; and the
  peak RSS while ingesting (sampled every 16,384 frames): frames parsed as fast as the store
  can, the most memory an event rate adds to what the tables hold.

Aims (issue 20): RSS at most 1.3x what the tables hold, and the live client levelling off under
1 GiB. Figures are printed, never asserted.
Run: ``.venv/bin/python benchmarks/soak.py [--seconds S] [--speed X] [--events N]``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from aios_notebook import AIOSClient
from aios_notebook.store import EventStore

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1e6


def rss() -> int:
    """This process's resident set size in bytes (Linux ``/proc``)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def table_bytes(store: EventStore) -> dict[str, int]:
    """Each table read as a DataFrame, its deep memory (bytes)."""
    return {name: int(store.table(name).memory_usage(deep=True).sum()) for name in store.TABLE_NAMES}


# -- live ----------------------------------------------------------------------------------------
def _serve(speed: float, seed: int, pipe: Connection) -> None:
    """The reference server in a child process: sends its URL and token, runs until told to stop."""
    from aios_notebook.server import Simulator

    simulator = Simulator(seed=seed, speed=speed, heartbeat=30.0).start_in_thread()
    pipe.send((simulator.url, simulator.token))
    pipe.recv()  # anything: stop
    simulator.stop()


def live(seconds: float, speed: float, read_every: float, report_every: float, seed: int) -> None:
    print(f"live soak: AIOSClient on Simulator(speed={speed:g}) for {seconds:g} s, "
          f"every table read every {read_every:g} s, default retention")
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve, args=(speed, seed, theirs), daemon=True)
    server.start()
    try:
        url, token = ours.recv()
        client = AIOSClient(url, token, snapshots=False)
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        client.start()
        print(f"{'t (s)':>6} {'RSS MB':>8} {'frames':>10} {'raw':>9} {'jobs':>7} {'dag_steps':>9} "
              f"{'job_events':>10} {'tables MB':>9}")
        next_read = next_report = started
        try:
            while True:
                now = time.monotonic()
                if now - started >= seconds:
                    break
                if now >= next_read:
                    for name in client.store.TABLE_NAMES:
                        client.store.table(name)
                    next_read += read_every
                if now >= next_report:
                    store = client.store
                    counts = store.counts
                    held = sum(table_bytes(store).values())
                    samples.append((now - started, rss()))
                    print(f"{now - started:6.0f} {rss() / _MB:8.0f} {store.frames:10,} {counts['raw']:9,} "
                          f"{counts['jobs']:7,} {counts['dag_steps']:9,} {counts['job_events']:10,} {held / _MB:9.0f}",
                          flush=True)
                    next_report += report_every
                time.sleep(max(0.0, min(next_read, next_report) - time.monotonic()))
        finally:
            client.stop()
        peak = max(value for _, value in samples)
        last_third = [value for at, value in samples if at >= seconds * 2 / 3]
        growth = (last_third[-1] - last_third[0]) if len(last_third) > 1 else 0
        print(f"peak RSS {peak / _MB:,.0f} MB ({peak / 2**30:.2f} GiB; aim < 1 GiB: "
              f"{'met' if peak < 2**30 else 'NOT met'}); over the last third of the run RSS moved "
              f"{growth / _MB:+,.0f} MB")
    finally:
        ours.send("stop")
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()


# -- offline -------------------------------------------------------------------------------------
def write_frames(path: Path, events: int, seed: int) -> None:
    """The workload's first ``events`` events, one encoded frame a line (run in a child process)."""
    from aios_notebook.protocol.codec import encode
    from aios_notebook.server.workload import generate

    written = 0
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as out:
        for _, event, data in generate(seed=seed, scenario="steady", hours=events / 4000 + 100):
            written += 1
            out.write(encode(event, data, seq=written))
            out.write("\n")
            if written >= events:
                break
    partial.replace(path)


def offline(events: int, seed: int, frames_dir: Path) -> None:
    path = frames_dir / f"aios-soak-frames-{seed}-{events}.jsonl"
    if not path.exists():
        print(f"writing {events:,} frames of the reference workload to {path} (once; reused later)...", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--write-frames", str(path), "--events", str(events),
                        "--seed", str(seed)], check=True)
        print(f"  written in {time.perf_counter() - started:.0f} s", flush=True)
    gc.collect()
    baseline = rss()
    store = EventStore()
    started = time.perf_counter()
    count = peak = 0
    with path.open(encoding="utf-8") as frames:
        for line in frames:
            store.ingest_frame(line.rstrip("\n"))
            count += 1
            if not count % 16384:  # the frames in flight are the most an event rate can add
                peak = max(peak, rss())
    store.flush()
    elapsed = time.perf_counter() - started
    sizes = table_bytes(store)  # reads every table, as a notebook would
    gc.collect()
    after = rss()
    held = sum(sizes.values())
    counts = store.counts
    print(f"offline: {count:,} events of the reference workload through EventStore.ingest_frame "
          f"in {elapsed:.0f} s, default retention, every table read")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        if counts[name]:
            print(f"  {name:16s} {counts[name]:10,} rows {size / _MB:8.1f} MB")
    print(f"tables (memory_usage(deep=True)): {held / _MB:,.0f} MB")
    print(f"process RSS: {after / _MB:,.0f} MB (imports alone: {baseline / _MB:,.0f} MB, "
          f"growth {(after - baseline) / _MB:,.0f} MB)")
    print(f"peak RSS while ingesting (the stream as fast as it can go): {peak / _MB:,.0f} MB "
          f"({peak / 2**30:.2f} GiB; aim < 1 GiB: {'met' if peak < 2**30 else 'NOT met'})")
    print(f"RSS / tables: {after / held:.2f}; RSS growth / tables: {(after - baseline) / held:.2f} "
          f"(aim <= 1.3: {'met' if after / held <= 1.3 else 'NOT met'})")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the live soak (default 180)")
    parser.add_argument("--speed", type=float, default=3600.0, help="the server's speed (default 3600)")
    parser.add_argument("--read-every", type=float, default=2.0, help="seconds between reads of every table")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between printed lines")
    parser.add_argument("--events", type=int, default=3_500_000, help="events of the offline figure")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--frames-dir", type=Path, default=Path("/tmp"),
                        help="where the offline frames file is kept between runs")
    parser.add_argument("--live-only", action="store_true")
    parser.add_argument("--offline-only", action="store_true")
    parser.add_argument("--write-frames", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_frames is not None:
        write_frames(args.write_frames, args.events, args.seed)
        return
    for name in ("seconds", "speed", "read_every", "report_every", "events"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0")
    if not args.offline_only:
        live(args.seconds, args.speed, args.read_every, args.report_every, args.seed)
    if not args.live_only:
        offline(args.events, args.seed, args.frames_dir)


if __name__ == "__main__":
    main()
