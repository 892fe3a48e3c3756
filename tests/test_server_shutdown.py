"""The reference server stops with no task of its own left pending (issue 18).

A task still pending when the server's loop closes is printed as "Task was destroyed but it is
pending! ... Connection._finish()" on stderr: it reached the weekly report's HTML.
"""

from __future__ import annotations

import asyncio
import contextlib

import websockets
from server_wire import WireClient

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator
from aios_notebook.server.workload import DEFAULT_START


def _server_tasks() -> list[asyncio.Task[object]]:
    """The loop's unfinished tasks that run the server's connection code."""
    return [task for task in asyncio.all_tasks()
            if not task.done() and "aios_notebook/server/" in _code_file(task)]


def _code_file(task: asyncio.Task[object]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return code.co_filename.replace("\\", "/") if code is not None else ""


async def test_closing_right_after_a_slow_reader_was_cut_off_leaves_no_task_pending() -> None:
    sim = Simulator(seed=1, speed=1200, start=DEFAULT_START, warmup=6 * 3600, send_queue_limit=200)
    await sim.start()
    try:
        # a client that stops reading: cut off with 1008, whose close handshake it never answers
        slow = await WireClient.open(sim, max_queue=1, receive_buffer=64 * 1024)
        await slow.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        while not sim.stats["slow_readers_cut"]:  # noqa: ASYNC110 - the server's own counter
            await asyncio.sleep(0.02)
    finally:
        await sim.close()
    assert _server_tasks() == []
    with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
        await slow.ws.close()


async def test_closing_with_readers_connected_leaves_no_task_pending() -> None:
    async with Simulator(seed=2, speed=600, start=DEFAULT_START) as sim:
        clients = [await WireClient.open(sim) for _ in range(3)]
        for client in clients:
            await client.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
            await client.until(lambda m: "seq" in m)
    assert _server_tasks() == []
    for client in clients:
        with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
            await client.ws.close()
