"""A fault-injecting AIOS v2 WebSocket server for the client's tests and benchmarks (127.0.0.1 only).

It speaks enough of the protocol to be a real peer (connected, auth, subscriptions with filters,
legacy dag-run subscriptions, seq, resync from a replay buffer, ping/pong) and lets a test break it
on purpose: restart it mid-stream (the stream and its buffer survive, as with a server whose
buffer outlives the process), stall its heartbeat, freeze a connection so that even WebSocket pings
go unanswered, refuse the token in each of the ways servers do, leave out ``connected`` / resync /
pings, and push any frame, valid or not.

It runs on a thread of its own with its own loop, so that a test can block (``client.wait_for``)
while it serves. Every control method is synchronous and thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from aios_notebook.protocol.codec import encode, format_timestamp
from aios_notebook.protocol.subscriptions import Filters, Subscriptions

__all__ = ["FAST_CLIENT", "Connection", "CuttableProxy", "FaultyServer", "Received", "sample_event", "stream_seqs"]


@dataclass
class Received:
    """A message the server got from a client."""

    connection: int  # 1-based index of the connection
    at: float  # monotonic time
    event: str | None
    data: Any
    text: str


@dataclass(eq=False)
class Connection:
    """The server's side of one client connection."""

    index: int
    ws: ServerConnection
    subscriptions: Subscriptions = field(default_factory=Subscriptions)
    authenticated: bool = False
    stalled: bool = False  # sends nothing at all (a hung server process)
    outgoing: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)
    opened_at: float = field(default_factory=time.monotonic)


class FaultyServer:
    """A scriptable AIOS v2 server on 127.0.0.1.

    Args:
        token: the accepted token.
        capabilities: what ``connected`` advertises (``()`` with ``send_connected``: none).
        heartbeat: seconds between ``ping`` events (None: never sends the ping event).
        advertise_heartbeat: put ``heartbeat_interval`` in ``connected``.
        send_connected: send ``connected`` on open (servers of the published document do not
            have to).
        send_authenticated: answer a good auth with ``authenticated``.
        auth_reply: how a wrong token is refused: ``"error+close"`` (error auth_failed, then close
            4401), ``"close"`` (4401 only), ``"error"`` (error only, the socket stays open) or
            ``"http"`` (HTTP 401 on the handshake, for every connection).
        ignore_client: never answer auth or subscribe; every event goes to every connection.
        rate: events per second the stream produces (0: only what ``emit`` adds).
        replay_buffer: events kept for resync.
        ws_ping_interval / ws_ping_timeout: the server's WebSocket keepalive (None: off).
        ssl_context: serve ``wss://``.
    """

    def __init__(
        self,
        *,
        token: str = "s3cret-token-for-tests",
        capabilities: Iterable[str] = ("seq", "resync", "pong"),
        stream_id: str | None = None,
        heartbeat: float | None = None,
        advertise_heartbeat: bool = True,
        send_connected: bool = True,
        send_authenticated: bool = True,
        auth_reply: str = "error+close",
        ignore_client: bool = False,
        rate: float = 0.0,
        replay_buffer: int = 100_000,
        ws_ping_interval: float | None = None,
        ws_ping_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_size: int | None = 2**20,
    ) -> None:
        self.token = token
        self.capabilities = tuple(capabilities)
        self.stream_id = stream_id  # sent in connected when set (the reference server's extension)
        self.heartbeat = heartbeat
        self.advertise_heartbeat = advertise_heartbeat
        self.send_connected = send_connected
        self.send_authenticated = send_authenticated
        self.auth_reply = auth_reply
        self.ignore_client = ignore_client
        self.rate = rate
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.ssl_context = ssl_context
        self.max_size = max_size
        self.port = 0
        self.log: list[tuple[int, str, dict[str, Any]]] = []  # every stream event: (seq, event, data)
        self.buffer: deque[tuple[int, str, dict[str, Any], str]] = deque(maxlen=replay_buffer)
        self.received: list[Received] = []
        self.connections: list[Connection] = []  # every connection ever opened
        self.listening_since: float | None = None  # monotonic time the listener last (re)opened
        self._seq = 0
        self._live: set[Connection] = set()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._streaming = True
        self._lock = threading.Lock()  # guards the lists read from the test thread

    # -- lifecycle (sync, from the test) -------------------------------------------------------
    def start(self) -> FaultyServer:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            self._stream_task = self._loop.create_task(self._stream())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=main, name="faulty-server", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the faulty server did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._run(self._shutdown(), timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FaultyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/ws"

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return self._run(call())

    # -- faults (sync) ---------------------------------------------------------------------------
    def restart(self, downtime: float = 0.0, *, code: int = 1001, announce: bool = True) -> float:
        """Close every connection and the listener, wait ``downtime``, listen again on the same port.

        The stream goes on meanwhile (its events reach the replay buffer). Returns the monotonic
        time at which the server listens again.
        """
        return self._run(self._restart(downtime, code, announce), timeout=downtime + 20)

    def drop_connections(self, code: int = 1011, reason: str = "dropped") -> None:
        """Close the live connections (the listener stays open)."""
        self._run(self._close_live(code, reason, announce=False))

    def stall(self) -> None:
        """The live connections get nothing more: no events, no pings (a hung server)."""

        def stall() -> None:
            for conn in self._live:
                conn.stalled = True

        self._call(stall)

    def freeze(self) -> None:
        """Stop reading and writing on the live connections: even WebSocket pings go unanswered."""

        def freeze() -> None:
            for conn in self._live:
                conn.stalled = True
                conn.ws.transport.pause_reading()

        self._call(freeze)

    def renumber(self) -> None:
        """Act as a new server process: the stream numbers from 1 again, the replay buffer is empty."""

        def reset() -> None:
            self._seq = 0
            self.buffer.clear()
            if self.stream_id is not None:  # a new process of a server that names its stream
                self.stream_id = f"{self.stream_id}+"

        self._call(reset)

    def pause_stream(self) -> None:
        self._streaming = False

    def resume_stream(self) -> None:
        self._streaming = True

    def emit(self, event: str, data: dict[str, Any]) -> int:
        """Add one event to the stream (seq, buffer, every subscribed connection); returns its seq."""
        return self._call(lambda: self._emit(event, data))

    def send_raw(self, frame: str | bytes) -> None:
        """Send one frame as is to every live connection (not part of the stream)."""

        def send() -> None:
            for conn in self._live:
                conn.outgoing.put_nowait(frame)

        self._call(send)

    # -- observations (sync) ------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._seq

    def messages(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.received if event is None or m.event == event]

    def live_count(self) -> int:
        return self._call(lambda: len(self._live))

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll ``predicate()`` until true; raises TimeoutError (a test failure, not a timed assert)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(0.01)

    # -- the server (on its loop) ---------------------------------------------------------------
    async def _listen(self) -> None:
        self._server = await serve(
            self._handler, "127.0.0.1", self.port, ssl=self.ssl_context,
            ping_interval=self.ws_ping_interval, ping_timeout=self.ws_ping_timeout,
            max_size=self.max_size, process_request=self._process_request,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self.listening_since = time.monotonic()

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if self.auth_reply == "http":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
        return None

    async def _restart(self, downtime: float, code: int, announce: bool) -> float:
        await self._close_live(code, "server restart", announce)
        assert self._server is not None
        self._server.close(close_connections=False)
        await self._server.wait_closed()
        if downtime:
            await asyncio.sleep(downtime)
        await self._listen()
        return self.listening_since or time.monotonic()

    async def _close_live(self, code: int, reason: str, announce: bool) -> None:
        live = list(self._live)
        for conn in live:
            if announce and not conn.stalled:
                with contextlib.suppress(ConnectionClosed):
                    await conn.ws.send(encode("connection_error", {
                        "code": "server_shutdown", "message": "the server is shutting down",
                        "timestamp": format_timestamp(time.time())}))
        await asyncio.gather(*(self._close(c, code, reason) for c in live), return_exceptions=True)

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        if conn.stalled:
            conn.ws.transport.abort()
        else:
            await conn.ws.close(code, reason)

    async def _shutdown(self) -> None:
        if self._stream_task is not None:
            self._stream_task.cancel()
        await self._close_live(1001, "server stopped", announce=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handler(self, ws: ServerConnection) -> None:
        with self._lock:
            conn = Connection(len(self.connections) + 1, ws)
            self.connections.append(conn)
        self._live.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        pinger = asyncio.create_task(self._pinger(conn)) if self.heartbeat else None
        if self.send_connected:
            data: dict[str, Any] = {"client_id": f"c{conn.index}", "server_time": format_timestamp(time.time())}
            if self.capabilities:
                data["protocol"] = "aios-v2"
                data["capabilities"] = list(self.capabilities)
            if self.heartbeat and self.advertise_heartbeat:
                data["heartbeat_interval"] = self.heartbeat
            if self.stream_id is not None:
                data["stream_id"] = self.stream_id
            conn.outgoing.put_nowait(encode("connected", data))
        if self.ignore_client:
            conn.authenticated = True
            conn.subscriptions.subscribe(["processing_jobs", "agents", "knowledge", "insights", "dags"])
        try:
            async for frame in ws:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                self._on_message(conn, text)
        except ConnectionClosed:
            pass
        finally:
            self._live.discard(conn)
            writer.cancel()
            if pinger is not None:
                pinger.cancel()

    def _on_message(self, conn: Connection, text: str) -> None:
        try:
            obj = json.loads(text)
            event, data = obj.get("event"), obj.get("data") or {}
        except (ValueError, AttributeError):
            event, data = None, None
        with self._lock:
            self.received.append(Received(conn.index, time.monotonic(), event, data, text))
        if self.ignore_client or conn.stalled:
            return
        if event == "auth":
            if data.get("token") == self.token:
                conn.authenticated = True
                if self.send_authenticated:
                    self._reply(conn, "authenticated", {"client_id": f"c{conn.index}"})
                return
            if "error" in self.auth_reply:
                self._reply(conn, "error", {"code": "auth_failed", "message": "invalid token"})
            if "close" in self.auth_reply:
                asyncio.get_running_loop().create_task(self._close_after_queue(conn, 4401, "auth failed"))
            return
        if not conn.authenticated:
            self._reply(conn, "error", {"code": "not_authenticated", "message": f"send auth before {event}"})
            return
        if event == "subscribe":
            conn.subscriptions.subscribe(data.get("types") or [], Filters.parse(data.get("filters"))[0])
        elif event == "unsubscribe":
            conn.subscriptions.unsubscribe(data.get("types") or [])
        elif event == "subscribe_dag_run":
            conn.subscriptions.add_dag_run(data.get("run_id"))
        elif event == "resync" and "resync" in self.capabilities:
            self._resync(conn, int(data.get("since_seq", 0)))

    def _reply(self, conn: Connection, event: str, data: dict[str, Any]) -> None:
        data.setdefault("timestamp", format_timestamp(time.time()))
        conn.outgoing.put_nowait(encode(event, data))

    async def _close_after_queue(self, conn: Connection, code: int, reason: str) -> None:
        await asyncio.sleep(0.05)  # let the writer put the error reply on the wire first
        await conn.ws.close(code, reason)

    def _resync(self, conn: Connection, since: int) -> None:
        oldest = self.buffer[0][0] if self.buffer else self._seq + 1
        replayed = 0
        for seq, event, data, frame in self.buffer:
            if seq > since and conn.subscriptions.matches(event, data):
                conn.outgoing.put_nowait(frame)
                replayed += 1
        complete = oldest <= since + 1
        self._reply(conn, "resync_complete", {"from_seq": since + 1, "to_seq": self._seq,
                                              "replayed": replayed, "complete": complete})

    async def _writer(self, conn: Connection) -> None:
        while True:
            frame = await conn.outgoing.get()
            if conn.stalled:
                continue
            try:
                await conn.ws.send(frame)
            except ConnectionClosed:
                return

    async def _pinger(self, conn: Connection) -> None:
        assert self.heartbeat
        while True:
            await asyncio.sleep(self.heartbeat)
            if not conn.stalled:
                conn.outgoing.put_nowait(encode("ping", {"timestamp": format_timestamp(time.time())}))

    def _emit(self, event: str, data: dict[str, Any]) -> int:
        self._seq += 1
        seq = self._seq
        data = {**data}
        data.setdefault("timestamp", format_timestamp(time.time()))
        frame = encode(event, data, seq)
        self.log.append((seq, event, data))
        self.buffer.append((seq, event, data, frame))
        for conn in self._live:
            if conn.authenticated and conn.subscriptions.matches(event, data):
                conn.outgoing.put_nowait(frame)
        return seq

    async def _stream(self) -> None:
        """Produce ``rate`` events a second, alternating job and agent updates."""
        started = time.monotonic()
        made = 0
        while True:
            await asyncio.sleep(0.01)
            if not self._streaming or not self.rate:
                started, made = time.monotonic(), 0
                continue
            due = int((time.monotonic() - started) * self.rate)
            while made < due:
                made += 1
                self._emit(*sample_event(self._seq + 1))


def sample_event(n: int) -> tuple[str, dict[str, Any]]:
    """A valid stream event, the ``n``-th of a simple workload."""
    if n % 2:
        return "processing_job_status", {
            "job_id": f"job-{n % 50}", "run_id": f"run-{n % 50}", "type": "pdf", "status": "processing",
            "progress": n % 100, "filename": f"doc-{n % 50}.pdf", "current_step": "text_extraction"}
    return "agent_status_update", {
        "agent_id": f"agent-{n % 5}", "name": f"Agent {n % 5}", "type": "analysis", "status": "working",
        "current_task": "summarising", "progress": n % 100,
        "performance": {"tasks_completed": n, "average_processing_time": 2.5, "success_rate": 97.5}}


#: client options for tests: quick reconnects, no REST snapshots (this server has no REST API)
FAST_CLIENT = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.4, "healthy_after": 0.2,
               "snapshots": False, "close_timeout": 1.0}


def stream_seqs(store: Any) -> list[int]:
    """Every seq in the store's event tables (a list: duplicates would show as repeats)."""
    seqs: list[int] = []
    for table in ("job_events", "agent_events"):
        frame = getattr(store, table)
        if len(frame):
            seqs.extend(int(s) for s in frame["seq"].dropna())
    return seqs


def wait_for_whole_stream(client: Any, last: int, timeout: float = 10.0) -> None:
    """Wait until the client holds every seq from its first up to ``last``, or ``timeout`` passes
    (the caller's assertion then shows what is missing).

    Waiting for ``last`` alone is not enough after a resync: the server answers ``subscribe``
    before ``resync``, so live events queued in between reach the client before the replay of
    what was missed. With the stream paused right after, ``last`` can arrive with the replay still
    on its way (a test failed so, under load, with the seven replayed events missing).
    """

    def whole(store: Any) -> bool:
        seqs = stream_seqs(store)
        return bool(seqs) and max(seqs) >= last and len(set(seqs)) == last - min(seqs) + 1

    with contextlib.suppress(TimeoutError):
        client.wait_for(whole, timeout=timeout)


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server, to restart "the server" as the client sees it.

    ``cut(downtime)`` drops every proxied connection and stops listening for ``downtime`` seconds,
    as a server restart does, while the server behind (e.g. the reference Simulator, which cannot
    restart on its port) keeps its stream and replay buffer.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def start(self) -> CuttableProxy:
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=main, name="cuttable-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> CuttableProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cut(self, downtime: float = 0.0) -> float:
        """Drop every connection, refuse new ones for ``downtime`` s; returns when it listens again."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._cut(downtime), self._loop).result(downtime + 10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _cut(self, downtime: float) -> float:
        await self._close()
        if downtime:
            await asyncio.sleep(downtime)
        await self._listen()
        return time.monotonic()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._pipes.difference_update((writer, up_writer))
