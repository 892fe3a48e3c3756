"""History at scale: a Parquet archive of 10^7 events (10^8 with ``--big``), converted, queried
and backtested, against the in-memory ways, in one run.

1. Recordings: the reference workload (offline ``generate``, steady, a seq each as the server
   sends them) written as gzip JSONL parts of up to 1,000,000 events, generated in parallel
   processes (each part a later stretch of simulated time with its own seed and ids).
2. Conversion: ``history.convert`` of every part on every core, events/s, against
   ``EventStore.load`` of one part (events/s, one process).
3. Query: success rate per job type per hour over the whole range, DuckDB over the archive
   (in a child process: its peak memory is measured alone) against pandas over an in-memory
   store of the same events (loading it timed apart; skipped with ``--big``: it does not fit).
4. Backtest of the nine built-ins: Dask on 1 and 2 worker processes against the in-memory
   backtest (firings compared; the in-memory side skipped with ``--big``).
5. Archive bytes per event against gzip JSONL.
6. The weekly report over the archive (``aios-notebook report``, as a user runs it) for its last
   30 days and for the whole history: seconds, peak memory of its processes, its KPIs. The last 30
   days twice: the first run derives the latest-state tables from the archive's start and writes
   checkpoints of them (``_checkpoints``, removed before it), the second starts from those.

Run: ``.venv/bin/python benchmarks/history.py [--events N] [--big] [--keep DIR]``. Figures are
ratios measured in this one run; the machine is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import pandas as pd

PART_EVENTS = 1_000_000
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_weekly_report.ipynb"
EVENTS_PER_HOUR = 5_000  # the steady workload, about
QUERY = (
    "SELECT type, date_trunc('hour', timestamp) AS hour, "
    "avg(CASE WHEN event = 'processing_job_completed' THEN 1.0 ELSE 0.0 END) AS success_rate, count(*) AS jobs "
    "FROM job_events WHERE event IN ('processing_job_completed', 'processing_job_failed') "
    "GROUP BY ALL ORDER BY type, hour"
)


def _write_part(index: int, events: int, folder: str) -> tuple[str, int]:
    """One recording part: ``events`` events of its own stretch of simulated time, with job and
    knowledge-item ids of its own (parts numbered alike would be one job across the history)."""
    from aios_notebook.protocol.codec import encode
    from aios_notebook.recording import RecordingWriter
    from aios_notebook.server.workload import DEFAULT_START, generate

    hours = PART_EVENTS / EVENTS_PER_HOUR * 1.2
    start = pd.Timestamp(DEFAULT_START, unit="s", tz="UTC") + pd.Timedelta(hours=hours * index)
    path = Path(folder) / f"part{index:04d}.jsonl.gz"
    count = 0
    with RecordingWriter(path, flush_interval=None) as writer:
        for moment, event, data in generate(seed=7 + index, scenario="steady", hours=hours, start=start.isoformat(),
                                          first_id=index * 10 * PART_EVENTS):
            count += 1
            writer.write(encode(event, data, index * PART_EVENTS + count), moment)
            if count >= events:
                break
    return str(path), count


def _machine() -> str:
    model = "?"
    with contextlib.suppress(OSError, StopIteration):
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Python {platform.python_version()}, "
            f"load average {os.getloadavg()[0]:.1f}")


def _peak_rss_gib() -> float:
    """This process's own peak RSS (VmHWM: its memory map's high-water mark, new at exec).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries that over fork and exec, so a child started
    by this script (holding a loaded store) reported the parent's size as its own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB -> GiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # not Linux: the best there is


def _query_child(archive: str) -> None:
    """In a child process: the DuckDB query; its time, result size and peak memory on stdout."""
    from aios_notebook.history import Archive

    began = time.perf_counter()
    result = Archive(archive).sql(QUERY)  # cold: a fresh process, DuckDB not yet imported
    cold = time.perf_counter() - began
    archive_now = Archive(archive)
    warm = min(_timed(lambda: archive_now.sql(QUERY)) for _ in range(3))  # as a notebook's next query
    peak = _peak_rss_gib()
    print(f"{cold:.3f} {warm:.3f} {len(result)} {int(result['jobs'].sum())} {peak:.3f}")


class _TreeMemory:
    """The peak of a process's and its descendants' memory together (this process by default:
    Dask's workers are its children), sampled every ``every`` seconds on a thread while in the
    ``with``; in GiB."""

    def __init__(self, pid: int | None = None, every: float = 0.5) -> None:
        import threading

        self.peak = 0
        self._pid, self._every = pid, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        root = psutil.Process(self._pid)
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
            self._stop.wait(self._every)

    def __enter__(self) -> _TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> float:
        return self.peak / 2**30


def _timed(call: Callable[[], object]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _report(archive_dir: Path, period: str, output: Path) -> tuple[float, float, dict[str, str]]:
    """The weekly report over ``period`` of the archive, through the CLI as a user runs it: its
    seconds, the peak of its processes' memory together (the kernel's included; sampled every
    0.2 s) in GiB, and the report's KPI tiles."""
    import re

    command = [sys.executable, "-m", "aios_notebook", "report", str(NOTEBOOK), "-o", str(output),
               "-p", f"source={archive_dir}", "-p", f"period={period}", "--no-progress"]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with _TreeMemory(process.pid, every=0.2) as memory:
        _, errors = process.communicate()  # reading stderr as it comes: a full pipe would stall it
    seconds = time.perf_counter() - began
    if process.returncode:
        raise SystemExit(f"the report failed: {errors}")
    html = output.read_text()
    tiles = dict(re.findall(r'color:#666">([^<]+)</div><div style="font-size:1.5em;font-weight:600">([^<]+)<', html))
    return seconds, memory.gib, tiles


def _size(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events (default 10^7)")
    parser.add_argument("--big", action="store_true", help="10^8 events; the in-memory sides are skipped")
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep (and reuse) recordings and archive here")
    parser.add_argument("--query-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query_child:
        _query_child(args.query_child)
        return
    events = 100_000_000 if args.big else args.events
    print(f"machine: {_machine()}")
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="aios-history-bench-"))
    recordings, archive_dir = folder / "recordings", folder / "archive"
    recordings.mkdir(parents=True, exist_ok=True)

    # 1. recordings, generated in parallel processes
    parts = [(i, min(PART_EVENTS, events - i * PART_EVENTS)) for i in range(-(-events // PART_EVENTS))]
    existing = sorted(recordings.glob("part*.jsonl.gz"))
    began = time.perf_counter()
    if len(existing) != len(parts):
        for path in existing:
            path.unlink()
        with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
            written = list(pool.map(_write_part, [i for i, _ in parts], [n for _, n in parts],
                                    [str(recordings)] * len(parts)))
        total = sum(n for _, n in written)
        print(f"\nrecordings: {total:,} events in {len(parts)} gzip JSONL parts, generated in "
              f"{time.perf_counter() - began:.0f} s by {os.cpu_count()} processes")
    else:
        total = events
        print(f"\nrecordings: reusing {len(existing)} parts in {recordings}")
    jsonl_bytes = _size(recordings, "*.jsonl.gz")

    from aios_notebook.history import Archive, convert
    from aios_notebook.rules import backtest, library
    from aios_notebook.store import EventStore

    # 2. conversion, against EventStore.load of one part
    if archive_dir.exists():
        shutil.rmtree(archive_dir)
    result = convert(str(recordings / "*.jsonl.gz"), archive_dir, progress=False)
    convert_rate = result.events / result.seconds
    first = sorted(recordings.glob("*.jsonl.gz"))[0]
    began = time.perf_counter()
    one = EventStore.load(first, retention={"raw": 0}, background=False)
    load_rate = one.frames / (time.perf_counter() - began)
    del one
    print(f"\n{'conversion':<58} {'events/s':>12}")
    print(f"{'history.convert, every part, ' + str(os.cpu_count()) + ' processes':<58} {convert_rate:>12,.0f}")
    print(f"{'EventStore.load of one part, one process':<58} {load_rate:>12,.0f}")
    print(f"ratio {convert_rate / load_rate:.2f} (aim: >= 600,000 events/s on 2 cores: "
          f"{'met' if convert_rate >= 600_000 else 'not met'})")

    # 5. sizes
    archive_bytes = _size(archive_dir, "*.parquet")
    print(f"\nsize per event: archive {archive_bytes / total:.1f} B, gzip JSONL {jsonl_bytes / total:.1f} B "
          f"(ratio {archive_bytes / jsonl_bytes:.2f}); without the raw frames {(_size(archive_dir, '*.parquet') - _size(archive_dir / 'raw', '*.parquet')) / total:.1f} B")

    # 3. the query: DuckDB in a child process (its peak memory alone) against pandas in memory
    child = subprocess.run([sys.executable, __file__, "--query-child", str(archive_dir)], capture_output=True,
                           text=True, check=True)
    cold_text, duck_seconds, groups, outcomes, peak_text = child.stdout.split()
    peak = float(peak_text)
    print(f"\nquery: success rate per job type per hour over the whole range ({int(groups):,} groups, "
          f"{int(outcomes):,} outcomes)")
    print(f"  DuckDB over the archive: {float(duck_seconds):.2f} s (best of 3 in a process that has queried; "
          f"the first, importing DuckDB, {float(cold_text):.2f} s), peak memory of its process {peak:.2f} GiB")
    archive = Archive(archive_dir)
    store = None
    if not args.big:
        began = time.perf_counter()
        store = EventStore.load(str(recordings / "*.jsonl.gz"), retention={name: None for name in EventStore.TABLE_NAMES
                                                                         if name != "raw"} | {"raw": 0},
                                background=False)
        loading = time.perf_counter() - began
        def in_pandas() -> pd.DataFrame:  # store: a cell, which the `del store` below empties
            done = store.job_events
            done = done[done["event"].isin(["processing_job_completed", "processing_job_failed"])]
            return (done.assign(hour=done["timestamp"].dt.floor("h"),
                                ok=(done["event"] == "processing_job_completed").astype(float))
                    .groupby(["type", "hour"], observed=True)["ok"].agg(["mean", "size"]))

        rates = in_pandas()
        pandas_seconds = min(_timed(in_pandas) for _ in range(3))
        print(f"  pandas over an in-memory store: {pandas_seconds:.2f} s (best of 3; after {loading:.0f} s loading it); "
              f"DuckDB/pandas time {float(duck_seconds) / pandas_seconds:.2f}, same groups: {len(rates) == int(groups)}")
    else:
        print("  pandas over an in-memory store: skipped (10^8 events do not fit in this machine's memory)")

    # 4. backtests
    rules = library.builtins()
    print(f"\nbacktest of the nine built-ins over {total:,} events")
    memory_firings = None
    if store is not None:
        began = time.perf_counter()
        with _TreeMemory() as memory:
            memory_firings = backtest(rules, store)
        seconds = time.perf_counter() - began
        print(f"  {'in memory (loaded store)':<28} {seconds:>8.1f} s {total / seconds:>12,.0f} events/s "
              f"{len(memory_firings):>6} firings, peak memory {memory.gib:.1f} GiB (the loaded store's included)")
        del store
    for workers in (1, 2):
        began = time.perf_counter()
        with _TreeMemory() as memory:
            firings = backtest(rules, archive, engine="dask", workers=workers)
        seconds = time.perf_counter() - began
        same = "" if memory_firings is None else (
            "identical" if firings.equals(memory_firings) else "DIFFERENT")
        print(f"  {f'Dask, {workers} worker(s)':<28} {seconds:>8.1f} s {total / seconds:>12,.0f} events/s "
              f"{len(firings):>6} firings {same} ({firings.attrs['chunks']} chunks, {firings.attrs['reruns']} reruns), "
              f"peak memory {memory.gib:.1f} GiB (this process and the workers)")
    # 6. the weekly report over the archive: its last 30 days (what a user reports on; the agents'
    # state at the period's end is derived from every frame before it), and the whole history
    first, last = (pd.Timestamp(t) for t in archive.manifest["time_range"])
    month = f"{(last - pd.Timedelta(days=30)).isoformat()}/{last.isoformat()}"
    print("\nweekly report over the archive (aios-notebook report notebooks/04_weekly_report.ipynb -p source=...)")
    shutil.rmtree(archive_dir / "_checkpoints", ignore_errors=True)  # a kept archive's, of an earlier run
    for label, period in (("last 30 days", month), ("again", month),
                          ("whole history", f"{first.isoformat()}/{last.isoformat()}")):
        seconds, peak, tiles = _report(archive_dir, period, folder / f"report-{label.replace(' ', '-')}.html")
        shown = ", ".join(f"{k} {tiles.get(k, '?')}" for k in ("Jobs ended", "Success rate", "Median processing"))
        print(f"  {label:<14} {seconds:>7.1f} s, peak memory {peak:.2f} GiB (its processes together); {shown}")
    print(f"\nmachine after: load average {os.getloadavg()[0]:.1f}; files in {folder}")


if __name__ == "__main__":
    main()
