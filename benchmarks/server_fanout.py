"""Fan-out of the reference server against websockets' own ``broadcast()``, in one run.

For 1, 10 and 100 clients (all in one child process, each counting the frames it reads):

- simulator: the reference server runs its simulation and sends each client the events its own
  filters select (every client subscribes to all five types with its own ``agent_ids`` filter,
  eight different filters in all);
- broadcast: a plain ``websockets`` server calls ``broadcast()`` with frames encoded beforehand
  (the simulator's frames of six simulated hours) to the same number of clients.

Both sides are paced the same way. The client process reports how many frames it has read every
10 ms, and a producer keeps about 5,000 frames per client in flight: the simulated speed is
steered up and down by that, and ``broadcast()`` (which never waits) is held back by it. Without
it the kernel buffers of 100 loopback sockets would swallow hundreds of megabytes and the producer
would spin and starve the clients of CPU. So each figure is what the server sustains while the
clients keep up, not a speed we picked.

Prints deliveries per second (frames read by all clients together) and the ratio. Each side runs
twice per client count, alternating, and the better run counts (the machine is shared and noisy).
Bounded in time (about 80 s). Run: ``.venv/bin/python benchmarks/server_fanout.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from typing import Any

import websockets
from websockets.asyncio.server import broadcast, serve

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator
from aios_notebook.server.catalog import AGENTS
from aios_notebook.server.hub import encode_frame
from aios_notebook.server.workload import DEFAULT_START, generate

WARM = 1.0  # seconds the clients read before counting
WINDOW = 3.0  # seconds counted
ROUNDS = 2
CLIENT_COUNTS = (1, 10, 100)
IN_FLIGHT = 5000  # frames per client sent but not yet read
REPORT_EVERY = 0.01


# -- the client process -------------------------------------------------------------------------------
def filters_for(index: int) -> dict[str, Any]:
    """Client ``index``'s own filter: five of the eight agents, a different five for neighbours."""
    ids = [a.agent_id for a in AGENTS]
    return {"agent_ids": [ids[(index + k) % len(ids)] for k in range(5)]}


async def clients_main(url: str, token: str | None, count: int) -> None:
    received = [0] * count
    sockets = [await websockets.connect(url, max_size=None, open_timeout=30, close_timeout=1)
               for _ in range(count)]
    for index, ws in enumerate(sockets):
        if token is not None:
            await ws.recv()  # connected
            await ws.send(json.dumps({"event": "auth", "data": {"token": token}}))
            await ws.send(json.dumps({"event": "subscribe", "data": {
                "types": list(SUBSCRIPTION_TYPES), "filters": filters_for(index)}}))

    async def read(index: int, ws: Any) -> None:
        try:
            async for _ in ws:
                received[index] += 1
        except websockets.ConnectionClosed:
            pass

    async def report() -> None:
        while True:
            print(sum(received), flush=True)
            await asyncio.sleep(REPORT_EVERY)

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    reporter = asyncio.create_task(report())
    await asyncio.sleep(WARM)
    before, start = sum(received), time.perf_counter()
    await asyncio.sleep(WINDOW)
    after, seconds = sum(received), time.perf_counter() - start
    reporter.cancel()
    closed = sum(ws.close_code is not None for ws in sockets)
    print(json.dumps({"delivered": after - before, "seconds": seconds, "closed": closed}), flush=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


class Clients:
    """The client process seen from the server side: its progress, then its result."""

    def __init__(self, url: str, token: str | None, count: int) -> None:
        args = [sys.executable, __file__, "--clients", str(count), "--url", url]
        if token is not None:
            args.append("--token-stdin")
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((token or "") + "\n")  # a token never goes on a command line
        self.process.stdin.close()
        self.received = 0
        self.result: dict[str, Any] | None = None
        self.reporting = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.result = json.loads(line)
            elif line.strip().isdigit():
                self.received = int(line)
                self.reporting.set()

    async def finish(self) -> dict[str, Any]:
        await asyncio.to_thread(self.process.wait, 60)
        await asyncio.to_thread(self._thread.join, 10)
        if self.result is None:
            raise RuntimeError("the client process gave no result")
        return self.result


# -- the two servers ----------------------------------------------------------------------------------
async def simulator_run(count: int) -> dict[str, Any]:
    async with Simulator(seed=7, speed=600, start=DEFAULT_START, warmup=9 * 3600,
                         send_queue_limit=10_000_000) as sim:
        clients = Clients(sim.url, sim.token, count)
        await asyncio.to_thread(clients.reporting.wait, 60)

        async def steer() -> None:
            while True:
                await asyncio.sleep(REPORT_EVERY)
                in_flight = sim.hub.delivered - clients.received
                if in_flight > 1.5 * IN_FLIGHT * count:
                    sim.speed = max(60.0, sim.speed * 0.7)
                elif in_flight < 0.5 * IN_FLIGHT * count:
                    sim.speed = min(5_000_000.0, sim.speed * 1.15)

        steering = asyncio.create_task(steer())
        await asyncio.sleep(WARM)
        groups = len({c.subscriptions.signature() for c in sim.connections})
        try:
            result = await clients.finish()
        finally:
            steering.cancel()
        result["groups"] = groups
        return result


async def broadcast_run(count: int, frames: list[bytes]) -> dict[str, Any]:
    connections: set[Any] = set()

    async def handler(ws: Any) -> None:
        connections.add(ws)
        try:
            await ws.wait_closed()
        finally:
            connections.discard(ws)

    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        clients = Clients(f"ws://127.0.0.1:{port}", None, count)
        await asyncio.to_thread(clients.reporting.wait, 60)

        async def produce() -> None:
            sent = 0  # deliveries: frames x connections
            index = 0
            while True:
                if sent - clients.received > IN_FLIGHT * count:
                    await asyncio.sleep(0.002)
                    continue
                for _ in range(50):
                    broadcast(connections, frames[index % len(frames)], text=True)  # UTF-8 already
                    index += 1
                sent += 50 * len(connections)
                await asyncio.sleep(0)

        producing = asyncio.create_task(produce())
        try:
            return await clients.finish()
        finally:
            producing.cancel()


async def main() -> None:
    frames = [encode_frame(event, data, seq)
              for seq, (_, event, data) in enumerate(generate(7, "steady", 6, start=DEFAULT_START), 1)]
    print(f"{'clients':>7}  {'simulator (filtered)':>24}  {'websockets broadcast()':>24}  {'ratio':>5}")
    for count in CLIENT_COUNTS:
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for _ in range(ROUNDS):  # alternating, so that load from elsewhere hits both sides alike
            ours.append(await simulator_run(count))
            theirs.append(await broadcast_run(count, frames))
        ours_rate = max(r["delivered"] / r["seconds"] for r in ours)
        theirs_rate = max(r["delivered"] / r["seconds"] for r in theirs)
        closed = sum(r["closed"] for r in ours + theirs)
        print(f"{count:>7}  {ours_rate:>11,.0f} deliveries/s  {theirs_rate:>11,.0f} deliveries/s  "
              f"{ours_rate / theirs_rate:>5.2f}   ({ours[-1]['groups']} subscription groups; "
              f"{closed} clients closed)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--token-stdin", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.clients:
        token = sys.stdin.readline().strip() if options.token_stdin else None
        asyncio.run(clients_main(options.url, token, options.clients))
    else:
        # clients leaving at the end of a run make asyncio and websockets log each failed write
        logging.getLogger("asyncio").setLevel(logging.ERROR)
        logging.getLogger("websockets").setLevel(logging.ERROR)
        asyncio.run(main())
