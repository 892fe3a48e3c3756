"""A recording of a server that speaks another dialect, served as that server sent it.

The reference server's replay (:mod:`.replay`) re-publishes a recording's events in the published
protocol. A recording made against the AIOS v2 backend's own apps (the ``autopilot`` dialects)
is served here instead the way that server served it: its greeting to every new connection, then
its frames verbatim, broadcast to every connection at the recorded pace, its keepalive answered
(the text ``pong`` to ``ping``), nothing else answered (those servers ignore auth and subscribe).
So the client reads a replay exactly as it read the live server, dialect detection included.

``open_replay`` picks the server for a recording: this one for a foreign dialect, else the
reference server's ``ReplayServer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from ..exceptions import RecordingError
from ..protocol.dialects import AUTO, DIALECTS, Dialect, detect_dialect, get_dialect
from ..recording.reader import OnError, RecordingReader
from .replay import ReplayServer, _ms

__all__ = ["DialectReplayServer", "open_replay", "recording_dialect"]

_LOOP_PAUSE = 1.0  # seconds between two rounds of a looped recording


def recording_dialect(recording: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                      on_error: OnError = "skip") -> Dialect:
    """The dialect a recording was made in: its header's, else its first frame's greeting, else
    the published protocol."""
    reader = RecordingReader(recording, on_error, quiet=True)
    for header in reader.headers:
        name = header.extra.get("dialect")
        if isinstance(name, str) and name != AUTO and name in DIALECTS:
            return get_dialect(name)
    for frame in reader:
        return detect_dialect(frame.frame) or get_dialect("aios-v2")
    return get_dialect("aios-v2")


def open_replay(recording: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], **options: Any) -> Any:
    """The replay server for ``recording``: :class:`DialectReplayServer` for a foreign dialect
    (``token`` and ``heartbeat`` do not apply there), the reference ``ReplayServer`` otherwise."""
    dialect = recording_dialect(recording, options.get("on_error", "raise"))
    if dialect.native:
        return ReplayServer(recording, **options)
    for ignored in ("token", "heartbeat", "replay_buffer"):
        options.pop(ignored, None)
    return DialectReplayServer(recording, dialect=dialect, **options)


class _Source:
    """The recording's frames with their offsets from its first one (seconds), checked up front."""

    def __init__(self, recording: Any, dialect: Dialect, on_error: OnError) -> None:
        self.recording = recording
        self.greeting: str | None = None
        self.timeline: list[tuple[float, str]] = []
        self.skipped = 0
        self.path = "/ws"
        reader = RecordingReader(recording, on_error)
        for header in reader.headers:
            if header.url:
                self.path = urlsplit(header.url).path or "/ws"
                break
        origin = last = None
        for frame in reader:
            moment = _ms(frame.received_at) / 1000
            origin = moment if origin is None else origin
            last = max(moment, last if last is not None else moment)  # a clock stepping back does not rewind
            text = frame.frame
            if not isinstance(text, str):
                self.skipped += 1
                continue
            role = dialect.translate(text).role
            if role == "greeting":
                self.greeting = self.greeting or text  # sent to each connection, once
            elif role in ("keepalive", "reply") and text == dialect.keepalive.reply:
                self.skipped += 1  # the answer to the recording client's own ping
            elif role == "reply":
                self.skipped += 1  # an answer to that client alone
            else:
                self.timeline.append((last - origin, text))
        if origin is None or last is None:
            raise RecordingError(f"{recording}: the recording holds no frame to replay")
        if self.greeting is None:  # recorded after the greeting: the server's own words
            self.greeting = dialect.greeting_frame
        self.frames = len(self.timeline)
        self.duration_ms = int((last - origin) * 1000)


class DialectReplayServer:
    """A foreign dialect's recording served over WebSocket on 127.0.0.1 (see the module doc).

    Args:
        recording: a file, glob or list of files.
        dialect: the recording's dialect (read from it when None).
        speed: recorded seconds per wall second.
        loop: start again when the recording ends.
        on_error: ``"raise"`` refuses a damaged recording; ``"skip"`` serves around the damage.
        wait_for_client: hold the recording until a client connects.
        host, port: where to listen (port 0: any free port).
    """

    token: str | None = None  # these servers have no auth

    def __init__(self, recording: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                 dialect: Dialect | str | None = None, speed: float = 1.0, loop: bool = False,
                 on_error: OnError = "raise", wait_for_client: bool = True, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if not speed > 0:
            raise RecordingError(f"speed must be > 0, got {speed!r}")
        self.dialect = get_dialect(dialect) if dialect is not None else recording_dialect(recording, on_error)
        self.source = _Source(recording, self.dialect, on_error)
        self.speed = float(speed)
        self.loop = loop
        self.wait_for_client = wait_for_client
        self.host, self.port = host, port
        self.sent = 0
        self.finished = False
        self._sockets: set[web.WebSocketResponse] = set()
        self._someone = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.source.path}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"DialectReplayServer({self.source.recording!r}, {self.dialect.name}, speed={self.speed:g})"

    # -- serving ----------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False)
        await ws.prepare(request)
        if self.source.greeting is not None:
            await ws.send_str(self.source.greeting)
        self._sockets.add(ws)
        self._someone.set()
        reply = self.dialect.keepalive.reply
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT and reply is not None and message.data == self.dialect.keepalive.send:
                    await ws.send_str(reply)
        finally:
            self._sockets.discard(ws)
        return ws

    async def _play(self) -> None:
        if self.wait_for_client:
            await self._someone.wait()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            for offset, text in self.source.timeline:
                delay = started + offset / self.speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for ws in list(self._sockets):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await ws.send_str(text)
                self.sent += 1
            if not self.loop:
                self.finished = True
                return
            await asyncio.sleep(_LOOP_PAUSE)

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_get(self.source.path, self._websocket)
        self._runner = web.AppRunner(app, handle_signals=False)
        try:
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.host, self.port)
            await site.start()
            sockets = getattr(site._server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            await self._runner.cleanup()
            return
        ready.set()
        player = asyncio.create_task(self._play())
        await self._stop.wait()
        player.cancel()
        await asyncio.gather(player, return_exceptions=True)
        for ws in list(self._sockets):
            await ws.close(code=1012)  # as uvicorn does on shutdown
        await self._runner.cleanup()

    def start_in_thread(self, timeout: float = 30.0) -> DialectReplayServer:
        """Serve on a daemon thread of its own; returns once it listens."""
        if self._thread is not None:
            raise RuntimeError("a DialectReplayServer starts once")
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready, failure))
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="aios-dialect-replay", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"the replay server did not start within {timeout:g} s")
        if failure:
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (1012) and stop serving."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> DialectReplayServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop()

