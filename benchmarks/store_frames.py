"""Shared by the store's benchmarks: realistic frames, and a feeder process that sends them.

Frames come from the reference server's workload (the event mix a live server sends), encoded as
the server encodes them, with a ``seq``. ``status_frames`` replicates the workload's
processing_job_status events with fresh job ids and times, for a million of them.

The feeder is a separate process running a plain ``websockets`` server on 127.0.0.1. A connection
says what it wants in its URL's query (``Feeder.url_for(count, mode, rate, stamp)``), so that any
client can be fed, ``AIOSClient`` included (whatever it sends first is read and ignored), and gets
N frames: ``send`` awaits ``ws.send`` per frame (what a Python server does), ``raw`` writes frames
framed beforehand straight to the transport (a feeder that costs next to nothing), ``rate`` paces
them (frames per second) instead of sending as fast as the socket takes them, and ``stamp`` writes
the moment each frame is sent into its ``timestamp`` (microseconds), for latency from the send.
A plain HTTP request (the client's REST snapshot) is answered 404, as a WebSocket-only server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import struct
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aios_notebook.protocol.codec import encode, format_timestamp, parse_timestamp
from aios_notebook.server.workload import generate

__all__ = ["Feeder", "pin", "status_frames", "workload_frames"]

_EVENTS_PER_HOUR = 4000  # about what the steady workload sends
_STATUS_TIMES = ("timestamp", "started_at", "estimated_completion")


def workload_frames(count: int, seed: int = 7) -> list[str]:
    """``count`` frames of the steady workload's mix (generated once, then cycled with new seqs)."""
    events = []
    for _, event, data in generate(seed=seed, scenario="steady", hours=min(200.0, count / _EVENTS_PER_HOUR + 1)):
        events.append((event, data))
        if len(events) >= count:
            break
    return [encode(*events[i % len(events)], seq=i + 1) for i in range(count)]


def status_frames(count: int, seed: int = 7) -> list[str]:
    """``count`` processing_job_status frames, realistic values, ~10 per job, all jobs distinct."""
    template = [d for _, e, d in generate(seed=seed, scenario="steady", hours=24) if e == "processing_job_status"]
    frames = []
    cycle = 0
    while len(frames) < count:
        # one simulated day later per cycle (only the date changes), with new job and run ids
        dates: dict[str, str] = {}
        for data in template:
            item = dict(data)
            item["job_id"] = f"{data['job_id']}-{cycle}"
            item["run_id"] = f"{data['run_id']}-{cycle}"
            for key in _STATUS_TIMES:
                text = item.get(key)
                if text:
                    day = dates.get(text[:10])
                    if day is None:
                        moved = parse_timestamp(text[:10] + "T00:00:00Z") + timedelta(days=cycle)
                        day = dates[text[:10]] = format_timestamp(moved)[:10]
                    item[key] = day + text[10:]
            frames.append(encode("processing_job_status", item, seq=len(frames) + 1))
            if len(frames) >= count:
                break
        cycle += 1
    return frames


def pin(cpu: int | None) -> str:
    """Pin this process to one CPU (if there are several); returns a description."""
    if cpu is None or not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return "not pinned"
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


def _wire(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes([0x81, size])
    elif size < 65536:
        header = bytes([0x81, 126]) + struct.pack("!H", size)
    else:
        header = bytes([0x81, 127]) + struct.pack("!Q", size)
    return header + payload


def _feeder_main(kind: str, count: int, cpu: int | None, conn: Any) -> None:
    from websockets.asyncio.server import serve

    pin(cpu)
    frames = workload_frames(count) if kind == "workload" else status_frames(count)
    wire = [_wire(f) for f in frames]

    stamp_at = re.compile(r'"timestamp":"[^"]*"')

    async def drain(ws: Any) -> None:  # whatever the client sends (auth, subscribe): read, ignored
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def handler(ws: Any) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        n = int(query["count"][0])
        mode = query.get("mode", ["send"])[0]
        rate = float(query["rate"][0]) if "rate" in query else None
        stamp = query.get("stamp", ["0"])[0] == "1"
        reader = asyncio.create_task(drain(ws))
        start = time.perf_counter()
        sent = 0
        while sent < n:
            if rate:  # paced: send what is due, then sleep a millisecond
                due = min(n, int((time.perf_counter() - start) * rate) + 1)
                while sent < due:
                    frame = frames[sent % len(frames)]
                    if stamp:
                        now = datetime.now(timezone.utc).strftime('"timestamp":"%Y-%m-%dT%H:%M:%S.%fZ"')
                        frame = stamp_at.sub(now, frame, count=1)
                    await ws.send(frame)
                    sent += 1
                await asyncio.sleep(0.001)
            elif mode == "raw":  # framed beforehand: the feeder costs next to nothing
                chunk = b"".join(wire[(sent + i) % len(wire)] for i in range(min(4096, n - sent)))
                ws.transport.write(chunk)
                sent += min(4096, n - sent)
                # the transport has no event for "buffer drained": poll it
                while ws.transport.get_write_buffer_size() > 1 << 22:  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
            else:
                await ws.send(frames[sent % len(frames)])
                sent += 1
        await ws.wait_closed()
        reader.cancel()

    def http_only(connection: Any, request: Any) -> Any:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(404, "no REST API here\n")
        return None

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None, write_limit=1 << 22,
                         process_request=http_only) as server:
            conn.send(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


class Feeder:
    """The feeder process: ``with Feeder("workload", 300_000) as feeder: feeder.url``."""

    def __init__(self, kind: str, count: int, cpu: int | None = None) -> None:
        self.kind, self.count, self.cpu = kind, count, cpu
        self.url = ""
        self._process: multiprocessing.Process | None = None

    def __enter__(self) -> Feeder:
        parent, child = multiprocessing.Pipe()
        context = multiprocessing.get_context("spawn")
        self._process = context.Process(target=_feeder_main, args=(self.kind, self.count, self.cpu, child), daemon=True)
        self._process.start()
        if not parent.poll(300):
            raise RuntimeError("the feeder did not start")
        self.url = f"ws://127.0.0.1:{parent.recv()}"
        return self

    def url_for(self, count: int, mode: str = "raw", rate: float | None = None, stamp: bool = False) -> str:
        """The URL that asks for ``count`` frames the ``mode`` way (see the module docstring)."""
        query = f"count={count}&mode={mode}" + (f"&rate={rate:g}" if rate else "") + ("&stamp=1" if stamp else "")
        return f"{self.url}/ws?{query}"

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.join(10)
