"""A small WebSocket test client for the reference server's tests (real sockets on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from aios_notebook.server import Simulator

__all__ = ["WireClient", "close_code"]


class WireClient:
    """One raw client: send messages, read frames as dicts, wait for what a test expects."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []  # everything read so far, in order
        self.connected: dict[str, Any] = {}
        self._markers = 0

    @classmethod
    async def open(cls, sim: Simulator, *, auth: bool = True, receive_buffer: int | None = None,
                   **options: Any) -> WireClient:
        """Connect (and authenticate). ``receive_buffer`` fixes the socket's SO_RCVBUF, so that a
        client that stops reading fills it quickly instead of the kernel growing it to megabytes."""
        if receive_buffer is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", sim.port))
            sock.setblocking(False)
            options["sock"] = sock
        client = cls(await websockets.connect(sim.url, open_timeout=10, **options))
        client.connected = await client.next()
        assert client.connected["event"] == "connected"
        if auth:
            await client.send("auth", {"token": sim.token})
            await client.until(lambda m: m["event"] == "authenticated")
        return client

    async def send(self, event: str, data: Any = None) -> None:
        await self.ws.send(json.dumps({"event": event, "data": data if data is not None else {}}))

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Read until a frame satisfies ``predicate``; returns it (fails after ``timeout``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no matching frame within {timeout:g} s")
            frame = await self.next(left)
            if predicate(frame):
                return frame

    async def sync(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Everything the server queued before now: sends a marker (an unknown event, answered
        with invalid_message in order) and reads up to its answer; returns the frames before it."""
        self._markers += 1
        marker = f"marker-{self._markers}"
        start = len(self.frames)
        await self.send(marker)
        await self.until(lambda m: m["event"] == "error" and m["data"]["code"] == "invalid_message"
                         and marker in m["data"]["message"], timeout)
        return self.frames[start:-1]

    def stream(self) -> list[dict[str, Any]]:
        """The frames of the shared stream read so far (those with a seq)."""
        return [f for f in self.frames if "seq" in f]

    async def close(self) -> None:
        await self.ws.close()


async def close_code(client: WireClient, timeout: float = 15.0) -> int | None:
    """Read until the server closes the connection; its close code."""
    try:
        await client.until(lambda frame: False, timeout)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    return None  # pragma: no cover - until() raises rather than return
