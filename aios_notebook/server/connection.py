"""One WebSocket client of the reference server: its protocol session, send queue and writer.

The protocol decisions are the sans-I/O :class:`~aios_notebook.protocol.session.ServerSession`'s
(the very code the client runs, in server mode); this module only moves frames. Everything sent
to the client, the shared stream and the connection's own replies alike, goes through one bounded
``deque`` drained by one writer task, so the order is kept and nobody awaits per client per event.

The queue holds complete WebSocket frames (``hub.text_frame``: the hub frames each event once for
everybody), and the writer hands all that has gathered to the transport in one ``write``: one
system call per client per batch instead of one per frame. aiohttp still owns the connection: it
parses what the client sends, answers pings and performs the close handshake, and its own frames
(pong, close) are written whole, so they never land inside one of ours. Compression is off on
these sockets, so every frame is a plain text frame.

A client that stops reading fills the socket, then the transport (``TRANSPORT_HIGH_WATER``), then
its queue: past ``queue_limit`` frames it is cut off with close 1008, while the others carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ..protocol.models import CLOSE_POLICY_VIOLATION
from ..protocol.session import (
    CloseRequest,
    DagRunRequest,
    ResyncRequest,
    ServerRequest,
    ServerSession,
    SubscriptionChanged,
)
from ..protocol.subscriptions import Subscriptions
from .hub import text_frame

if TYPE_CHECKING:
    from .simulator import Simulator

__all__ = ["Connection"]

log = logging.getLogger(__name__)

#: how long a close handshake may take before the transport is dropped
CLOSE_TIMEOUT = 5.0
#: bytes the transport may buffer for a client before its writer waits for the socket to drain
TRANSPORT_HIGH_WATER = 1 << 20


class Connection:
    """A client connection: session + queue + writer task, owned by the WebSocket handler."""

    def __init__(self, simulator: Simulator, ws: web.WebSocketResponse, request: web.Request,
                 session: ServerSession, queue_limit: int) -> None:
        self.simulator = simulator
        self.ws = ws
        self.transport = request.transport
        self.session = session
        self.queue: deque[bytes] = deque()
        self.queue_limit = queue_limit
        self.client_id = session.client_id
        self.joined = False
        self.cut_off = False
        self._close: CloseRequest | None = None
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None  # kept: the loop holds tasks only weakly
        self._finishing = False

    def __repr__(self) -> str:
        return f"Connection({self.client_id}, queued={len(self.queue)}, joined={self.joined})"

    @property
    def subscriptions(self) -> Subscriptions:
        return self.session.subscriptions

    # -- queueing ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.session.opened()
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"aios-writer-{self.client_id}")
        self.pump()

    def pump(self) -> None:
        """Move the session's own replies (connected, errors, pings ...) to the queue."""
        replies = self.session.data_to_send()
        if self.cut_off:
            return  # nothing more is sent to a client that was cut off, so nothing piles up
        for text in replies:
            self.queue.append(text_frame(text.encode()))
        self.flush()

    def flush(self) -> None:
        if len(self.queue) > self.queue_limit:
            self._cut_off()
        elif self.queue:
            self._wake.set()

    def request_close(self, code: int, reason: str = "") -> None:
        """Close after what is already queued has been sent."""
        if self._close is None:
            self._close = CloseRequest(code, reason)
        self._wake.set()

    def _cut_off(self) -> None:
        # the client is too far behind: what it has not read is dropped, not buffered forever
        if self.cut_off:
            return
        self.cut_off = True
        self.queue.clear()
        self.simulator.hub.leave(self)
        self.simulator.stats["slow_readers_cut"] += 1
        log.info("client %s stopped reading: closing it with %d", self.client_id, CLOSE_POLICY_VIOLATION)
        self._close = CloseRequest(CLOSE_POLICY_VIOLATION, "send queue full: the client is not reading")
        if self._writer is not None:
            self._writer.cancel()  # it may be stuck waiting for the socket to drain
        self._closing = asyncio.get_running_loop().create_task(self._finish())

    # -- requests from the session -----------------------------------------------------------------
    def handle(self, requests: list[ServerRequest]) -> None:
        if self.cut_off:
            self.session.data_to_send()  # dropped: see pump
            return
        for request in requests:
            if isinstance(request, CloseRequest):
                self.request_close(request.code, request.reason)
            elif isinstance(request, SubscriptionChanged):
                self.simulator.hub.regroup()
            elif isinstance(request, ResyncRequest):
                first, last, replayed, complete = self.simulator.hub.replay(self, request.since_seq)
                self.session.resync_complete(first, last, replayed, complete)
            elif isinstance(request, DagRunRequest):
                self._dag_run(request.run_id)
        if self.session.authenticated and not self.joined and not self.session.closed:
            self.joined = True
            self.simulator.hub.join(self)
        self.pump()

    def _dag_run(self, run_id: str) -> None:
        job = self.simulator.workload.run(run_id)
        if job is None:
            self.session.error("not_found", f"unknown run_id {run_id[:200]!r}", {"run_id": run_id[:200]})
            return
        self.subscriptions.add_dag_run(run_id)
        self.simulator.hub.regroup()
        stamp = self.simulator.workload.stamp()
        # the run's current state at once, so a late subscriber is not left waiting for a change
        self.session.send("dag_run_status", job.dag_status_event(stamp))
        self.session.send("dag_run_progress", job.dag_progress_event(stamp))

    def receive(self, message: Any) -> None:
        if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
            self.handle(self.session.receive(message.data))

    def tick(self) -> None:
        self.handle(self.session.tick())

    def shutdown(self) -> None:
        """The server is going away: connection_error server_shutdown, then close 1001."""
        if self._close is not None or self.cut_off:
            return
        request = self.session.shutdown()
        self.pump()
        self.request_close(request.code, request.reason)

    # -- the writer ----------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        ws, queue, transport = self.ws, self.queue, self.transport
        try:
            while True:
                if queue:
                    if transport is None or transport.is_closing() or ws.closed:
                        return  # the client went away; the handler notices and cleans up
                    batch = b"".join(queue)  # nothing runs between these two lines
                    queue.clear()
                    transport.write(batch)
                    await self._drained(transport)
                    continue
                if self._close is not None:
                    break
                self._wake.clear()
                if not queue and self._close is None:
                    await self._wake.wait()
        except asyncio.CancelledError:
            if not self.cut_off:
                raise
            return
        except (ConnectionError, RuntimeError):
            return
        await self._finish()

    @staticmethod
    async def _drained(transport: asyncio.BaseTransport) -> None:
        """Wait while the transport holds more than ``TRANSPORT_HIGH_WATER`` bytes for the client.

        Polled with a growing pause (1 to 16 ms): only clients that are behind ever wait here.
        """
        pause = 0.001
        while transport.get_write_buffer_size() > TRANSPORT_HIGH_WATER:  # type: ignore[attr-defined]
            if transport.is_closing():
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.016)

    async def _finish(self) -> None:
        """Send the requested close frame; drop the transport if the client never answers."""
        request = self._close
        if request is None or self._finishing:
            return
        self._finishing = True
        transport = self.transport
        try:
            await asyncio.wait_for(
                self.ws.close(code=request.code, message=request.reason.encode()[:120], drain=False),
                CLOSE_TIMEOUT,
            )
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            pass
        except asyncio.CancelledError:
            # the server is stopping (or the socket went away): no pause for a slow client now
            if transport is not None:
                transport.abort()
            raise
        if transport is None:
            return
        if not transport.is_closing():
            transport.close()
        # a client that never reads keeps the close frame in our buffer: give it a while, then abort
        if transport.get_write_buffer_size():
            try:
                await asyncio.sleep(CLOSE_TIMEOUT)
            finally:
                transport.abort()

    async def closed(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Wait until the writer and the close are done; past ``timeout`` they are cancelled.

        Returns (or raises CancelledError) with no task of this connection left pending: one still
        pending when the server's loop closes is reported as "Task was destroyed but it is
        pending!" on stderr. The server's own shutdown does not wait for a client it cut off.
        """
        tasks = [task for task in (self._writer, self._closing) if task is not None]
        if not tasks:
            return
        if self.cut_off and self.simulator._closing:
            timeout = 0  # it stopped reading long ago: its close handshake is not worth waiting for
        try:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
        except asyncio.CancelledError:
            await self._cancel(tasks)
            raise
        if pending:
            await self._cancel(pending)
        for task in tasks:  # read, so that no "exception was never retrieved" follows
            if not task.cancelled():
                task.exception()

    async def _cancel(self, tasks: Iterable[asyncio.Task[None]]) -> None:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        if self.transport is not None:
            self.transport.abort()

    def detach(self) -> None:
        """The socket is gone: stop the writer and leave the stream (a close under way goes on:
        the handler awaits :meth:`closed`)."""
        if self.joined:
            self.simulator.hub.leave(self)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self.queue.clear()
