"""How fast is the dashboard full after connecting, with and without the REST snapshot; and what an
upload costs in memory and time. Prints figures measured in one run (no assertions).

    .venv/bin/python benchmarks/rest_snapshot.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from aios_notebook.client import AIOSClient
from aios_notebook.rest import RestClient, prepare_upload, upload
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

CAP = 20.0  # seconds to wait for a dashboard the stream alone may never complete


def full(store: EventStore) -> bool:
    """Every agent, some running DAG runs and the KPIs are known."""
    runs = store.dag_runs
    return len(store.agents) >= 8 and bool((runs["status"] == "running").any()) and len(store.metrics) > 0


def time_to_full(sim: Simulator, snapshots: bool) -> tuple[float, float]:
    """(seconds to a full dashboard, seconds to the first event), from client.start()."""
    client = AIOSClient(sim.url, sim.token, store=EventStore(), snapshots=snapshots)
    seen: dict[str, float] = {}

    def check(store: EventStore) -> bool:
        now = time.perf_counter() - began
        if "event" not in seen and len(store.job_events) > 0:
            seen["event"] = now
        if "full" not in seen and full(store):
            seen["full"] = now
        return len(seen) == 2

    began = time.perf_counter()
    client.start()
    try:
        client.wait_for(check, CAP, interval=0.002)
    except TimeoutError:
        pass
    finally:
        client.stop()
    return seen.get("full", float("inf")), seen.get("event", float("inf"))


def median_of(runs: int, sim: Simulator, snapshots: bool) -> tuple[float, float]:
    results = [time_to_full(sim, snapshots) for _ in range(runs)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results))


def write_file(path: Path, size: int) -> None:
    with open(path, "wb") as out:
        block = os.urandom(2**20)
        for _ in range(size // len(block)):
            out.write(block)


async def upload_cost(sim: Simulator, path: Path, size: int) -> tuple[float, float]:
    """(peak traced memory / file size, MiB/s) for one streamed upload (client and server)."""
    async with RestClient(sim.http_url, sim.token) as rest:
        prepared = prepare_upload(path)
        tracemalloc.start()
        began = time.perf_counter()
        await upload(rest, prepared)
        took = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / size, size / 2**20 / took


def main() -> None:
    sim = Simulator(seed=7, speed=60, warmup=3600.0, max_upload_bytes=2**30).start_in_thread()
    try:
        time_to_full(sim, snapshots=True)  # warm-up: first imports and pandas code paths
        with_filled, with_first = median_of(3, sim, snapshots=True)
        without_filled, without_first = median_of(3, sim, snapshots=False)
        print("medians of 3 connects to a server with an hour of history (speed 60):")
        print(f"full dashboard after connect, with the REST snapshot: {with_filled:.3f} s "
              f"(first event after {with_first:.3f} s)")
        shown = f"{without_filled:.3f} s" if without_filled != float("inf") else f"not within {CAP:g} s"
        print(f"full dashboard after connect, WebSocket alone:        {shown} (first event after {without_first:.3f} s)")
        if without_filled != float("inf"):
            print(f"ratio WebSocket alone / with snapshot: {without_filled / with_filled:.1f}x")
        size = 64 * 2**20
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "big.wav"
            write_file(path, size)
            ratio, speed = asyncio.run(upload_cost(sim, path, size))
        print(f"upload of {size / 2**20:.0f} MiB: peak traced memory {ratio:.4f} x the file size, {speed:.0f} MiB/s")
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
