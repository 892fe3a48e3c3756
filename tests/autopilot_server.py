"""A test double of the public AIOS v2 backend (bluelabel-autopilot ``apps/api``), on 127.0.0.1.

It plays either of that project's two apps, each exactly as ../shared/spec/servers-in-the-wild.md
records it (and as the project's source shows for what was not triggered there), so that the kit's
"autopilot" dialects are tested against the servers that exist rather than against our own:

- ``app="main"`` is ``apps.api.main:app``: WebSocket ``/ws`` (dialect "autopilot") and its REST API.
  Greeting ``connection.established``; every event goes to every connection with a naive ISO (UTC)
  timestamp; auth, subscribe and every other JSON frame are ignored; the exact text ``ping`` gets
  the text ``pong``; no heartbeat event; a binary frame from a client turns that connection into a
  silent zombie (open, answering WebSocket pings, never sent to again).
- ``app="dag-updates"`` is ``apps/api/api.py``: WebSocket ``/ws/dag-updates`` (dialect
  "autopilot-dag-updates") and the ``/api/workflows`` routes only. Greeting ``connected`` without
  ``data``; ``{"action": "subscribe", "run_id": X}`` answered with ``dag_run_status`` (steps keyed by
  step id) or an ``error``; broadcasts carry the loop's monotonic clock as ``timestamp``; a frame it
  cannot parse as a JSON object (the text ``ping``, a binary frame) leaves the connection a silent
  zombie, as the real one does.

Both refuse a WebSocket handshake on any other path with HTTP 403, answer unknown routes with 404
``{"detail": "Not Found"}`` and close every connection with 1012 when stopped or restarted.

Where the real app cannot show what the kit must handle, this server goes beyond it, on purpose and
only there: runs from ``POST /api/test/create-sample-workflow`` and ``POST
/api/workflows/upload-pdf`` progress by themselves through their steps (``step_delay`` apart),
emitting ``dag.step.status.updated`` on each change and ``dag.run.completed`` at the end as the real
app's run monitor does, and an uploaded run can be read at ``GET /api/dag-runs/{id}`` (the real app
stores it nowhere). ``POST /api/process-email`` sends ``started``, one ``progress`` per step and then,
like the real app, ``.completed`` only when the subject parses as an ISO date and ``.error``
("Invalid isoformat string: ...") otherwise, unless ``email_outcome`` says otherwise.

It runs on a thread of its own with its own loop; every control method is synchronous and
thread-safe, as in ``faulty_server.FaultyServer``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["SAMPLE_STEPS", "UPLOAD_STEPS", "AutopilotRun", "AutopilotServer", "Received", "naive_utc_now"]

#: steps of the run that POST /api/test/create-sample-workflow starts (names from the real app's YAML)
SAMPLE_STEPS = ("analyze_text", "generate_summary")
SAMPLE_WORKFLOW = "test-integration-workflow"
#: steps and workflow name of the run that POST /api/workflows/upload-pdf starts
UPLOAD_STEPS = ("ingest", "digest")
UPLOAD_WORKFLOW = "PDF Ingestion and Digest"
TERMINAL_RUN = ("success", "failed", "cancelled", "partial_success")
TERMINAL_STEP = ("success", "failed", "skipped", "cancelled")
WS_PATHS = {"main": "/ws", "dag-updates": "/ws/dag-updates"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def naive_utc_now() -> str:
    """``datetime.utcnow().isoformat()`` as the real app writes it: UTC without an offset."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


def dumps(obj: Any) -> str:
    """JSON as Starlette, FastAPI and pydantic write it: compact, non-ASCII kept."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(obj), status=status, content_type="application/json")


def detail(status: int, message: Any) -> web.Response:
    return json_response({"detail": message}, status)


def missing_field(where: str, name: str) -> web.Response:
    """FastAPI's 422 for a missing request field."""
    return detail(422, [{"type": "missing", "loc": [where, name], "msg": "Field required", "input": None}])


@dataclass
class Received:
    """A WebSocket frame a client sent."""

    connection: int  # 1-based index of the connection
    at: float  # monotonic time
    kind: str  # "text" or "binary"
    text: str | None
    data: bytes | None

    def json(self) -> Any:
        """The frame as JSON, or None when it is not JSON text."""
        if self.text is None:
            return None
        try:
            return json.loads(self.text)
        except ValueError:
            return None


@dataclass(eq=False)
class Connection:
    index: int
    ws: web.WebSocketResponse
    zombie: bool = False  # its handler died: never answered, never sent to again


@dataclass
class Step:
    """A step as the real ``DAGStepState`` holds it."""

    step_id: str
    name: str
    status: str = "pending"
    start_time: str | None = None
    end_time: str | None = None
    started: float | None = None
    ended: float | None = None
    retry_count: int = 0
    max_retries: int = 3
    error: str | None = None
    result: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``DAGStepState.to_dict()``."""
        duration = round(self.ended - self.started, 6) if self.started is not None and self.ended is not None else None
        return {"step_id": self.step_id, "status": self.status, "start_time": self.start_time,
                "end_time": self.end_time, "retry_count": self.retry_count, "max_retries": self.max_retries,
                "error": self.error, "result": self.result, "metadata": self.metadata,
                "duration_seconds": duration}

    def status_dict(self) -> dict[str, Any]:
        """The step as ``UnifiedWorkflowAdapter.get_run_status`` (and so ``dag.step.status.updated``) has it."""
        return {"status": self.status, "started_at": self.start_time, "completed_at": self.end_time,
                "retry_count": self.retry_count, "error": self.error}


@dataclass
class AutopilotRun:
    """A DAG run as the real ``DAGRun`` holds it, plus the index times of its store."""

    run_id: str
    dag_id: str  # the workflow name
    steps: dict[str, Step]
    store: str  # "adapter" (GET /api/dag-runs) or "workflows" (GET /api/workflows/dag-runs)
    status: str = "created"
    start_time: str | None = None
    end_time: str | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=naive_utc_now)
    updated_at: str = field(default_factory=naive_utc_now)
    fail_step: str | None = None  # auto-progression fails this step
    fail_error: str = "step failed"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_RUN

    def to_dict(self) -> dict[str, Any]:
        """``DAGRun.to_dict()``: the body of GET /api/workflows/dag-runs/{id} and of ``dag_run_status``."""
        duration = round(self.ended - self.started, 6) if self.started is not None and self.ended is not None else None
        return {"dag_id": self.dag_id, "run_id": self.run_id, "status": self.status,
                "steps": {sid: step.to_dict() for sid, step in self.steps.items()},
                "start_time": self.start_time, "end_time": self.end_time,
                "total_retries": sum(s.retry_count for s in self.steps.values()), "error": self.error,
                "metadata": self.metadata, "duration_seconds": duration}

    def status_steps(self) -> dict[str, dict[str, Any]]:
        return {sid: step.status_dict() for sid, step in self.steps.items()}


@dataclass
class EmailJob:
    run_id: str
    subject: str
    status: str = "running"  # the workflow engine's status: running, success, failed
    summary: str | None = None
    processing_time_ms: int | None = None
    done: bool = False


class AutopilotServer:
    """One of the two autopilot apps on 127.0.0.1 (``app="main"`` or ``app="dag-updates"``).

    Args:
        app: which app to play.
        step_delay: seconds between two changes of a run that progresses by itself, and between two
            email frames.
        email_steps: steps of an email job (its progress frames say ``"k/N steps"``).
        email_outcome: what ends ``POST /api/process-email``: ``"real"`` (``.completed`` when the
            subject parses as an ISO date, else ``.error`` as the real app does), ``"completed"`` or
            ``"error"``.
        keepalive: dag-updates only: seconds between ``{"event": "ping"}`` frames. The real app has the
            code but never runs it, hence None.
        ws_ping_interval: WebSocket control pings from the server (uvicorn's default is 20 s; None: off).
        port: 0 for any free port.
    """

    def __init__(
        self,
        *,
        app: str = "main",
        step_delay: float = 0.15,
        email_steps: int = 5,
        email_outcome: str = "real",
        keepalive: float | None = None,
        ws_ping_interval: float | None = 20.0,
        port: int = 0,
    ) -> None:
        if app not in WS_PATHS:
            raise ValueError(f"app must be one of {sorted(WS_PATHS)}, not {app!r}")
        if email_outcome not in ("real", "completed", "error"):
            raise ValueError(f"email_outcome must be 'real', 'completed' or 'error', not {email_outcome!r}")
        self.app = app
        self.ws_path = WS_PATHS[app]
        self.step_delay = step_delay
        self.email_steps = email_steps
        self.email_outcome = email_outcome
        self.keepalive = keepalive
        self.ws_ping_interval = ws_ping_interval
        self.port = port
        self.runs: dict[str, AutopilotRun] = {}
        self.emails: dict[str, EmailJob] = {}
        self.sent: list[tuple[int | None, str]] = []  # every frame sent: (connection or None for all, text)
        self.received: list[Received] = []
        self.connections: list[Connection] = []  # every connection ever opened
        self.http_requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.restarts = 0
        self._live: set[Connection] = set()
        self._endpoint_stats: dict[str, dict[str, float]] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = threading.Lock()  # guards the lists read from the test thread

    # -- lifecycle (sync, from the test) -------------------------------------------------------
    def start(self) -> AutopilotServer:
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to the caller of start()
                failed.append(exc)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

        self._thread = threading.Thread(target=main, name=f"autopilot-{self.app}", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the autopilot server did not start")
        if failed:
            raise RuntimeError(f"the autopilot server did not start: {failed[0]}") from failed[0]
        return self

    def stop(self) -> None:
        """Close every connection with 1012 (as uvicorn does on SIGTERM) and stop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._run(self._shutdown(), timeout=15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> AutopilotServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> AutopilotServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    @property
    def url(self) -> str:
        """The WebSocket URL of this app's endpoint."""
        return f"ws://127.0.0.1:{self.port}{self.ws_path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restart(self, downtime: float = 0.0) -> float:
        """Close every connection with 1012, stop listening for ``downtime`` s, listen again on the same
        port (runs and email jobs survive, as the real app's files do). Returns the monotonic time at
        which it listens again."""
        return self._run(self._restart(downtime), timeout=downtime + 20)

    def _run(self, coro: Awaitable[Any], timeout: float = 10.0) -> Any:
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return fn()

        return self._run(call())

    # -- driving it (sync, from the test) --------------------------------------------------------
    def create_sample_workflow(self, *, auto: bool = True, fail_step: str | None = None,
                               error: str = "step failed") -> str:
        """What ``POST /api/test/create-sample-workflow`` does; returns the run id.

        ``auto``: the run progresses by itself; ``fail_step``: that step fails (the run then fails).
        """
        async def create() -> str:
            return (await self._create_sample_run(fail_step, error, auto)).run_id

        return self._run(create())

    def create_run(self, workflow_name: str = SAMPLE_WORKFLOW, steps: Iterable[str] = SAMPLE_STEPS, *,
                   store: str | None = None, announce: bool = True, auto: bool = False,
                   fail_step: str | None = None, error: str = "step failed") -> str:
        """Add a run in ``created`` state; returns its id.

        ``store``: ``"adapter"`` (read by GET /api/dag-runs) or ``"workflows"`` (GET
        /api/workflows/dag-runs and dag-updates subscriptions); by default the app's own.
        ``announce``: broadcast ``dag.run.created`` (main app) as POST /api/dag-runs does.
        """
        steps = tuple(steps)
        if not steps:
            raise ValueError("steps must name at least one step")

        async def create() -> str:
            run = self._new_run(workflow_name, steps, store, fail_step, error)
            if announce and self.app == "main":
                await self._event("dag.run.created", {"run_id": run.run_id, "workflow_name": workflow_name,
                                                      "status": run.status})
            if auto:
                self._spawn(self._progress(run))
            return run.run_id

        return self._run(create())

    def advance(self, run_id: str, outcome: str = "success", error: str = "step failed") -> str:
        """Make one change to a run, broadcast it, and return the run's status.

        The change: a created run starts (with its first step running); a running step ends with
        ``outcome`` (``"success"``, ``"failed"``: the rest are skipped and the run fails, ``"retry"``:
        retry_count + 1, it runs again on the next call); a finished or retrying step's successor
        starts; once every step succeeded the run succeeds. Main app: one
        ``dag.step.status.updated`` with every step, and ``dag.run.completed`` when the run ends;
        dag-updates app: one ``dag_run_status`` broadcast with a monotonic timestamp.
        """
        if outcome not in ("success", "failed", "retry"):
            raise ValueError(f"outcome must be 'success', 'failed' or 'retry', not {outcome!r}")

        async def step() -> str:
            run = self._get(run_id)
            await self._advance(run, outcome, error)
            return run.status

        return self._run(step())

    def run_to_end(self, run_id: str, *, fail_step: str | None = None, error: str = "step failed") -> str:
        """``advance`` until the run ends (``fail_step`` fails); returns the final status."""
        while True:
            run = self._call(lambda: self._get(run_id))
            if run.done:
                return str(run.status)
            running = next((s for s in run.steps.values() if s.status == "running"), None)
            failing = running is not None and running.step_id == fail_step
            self.advance(run_id, "failed" if failing else "success", error)

    def cancel(self, run_id: str, message: str | None = None) -> None:
        """Cancel a running run: ``dag.run.status.updated`` {status: "cancelled"}, as PATCH does."""
        async def cancel() -> None:
            await self._cancel(self._get(run_id), message)

        self._run(cancel())

    def run_email(self, subject: str = "Q3 report", sender: str = "alice@example.com", *,
                  pdf_name: str = "q3.pdf", pdf_size: int = 400, outcome: str = "completed",
                  steps: int | None = None, wait: bool = True) -> str:
        """An email job as POST /api/process-email starts it: ``email.processing.started``, one
        ``.progress`` ("k/N steps") per step, then ``.completed`` or ``.error`` (``outcome``:
        "completed", "error" or "real"). Returns its run id; ``wait``: return once it ended."""
        async def start() -> tuple[str, asyncio.Task[Any]]:
            job = await self._start_email(subject, sender, pdf_name, pdf_size)
            task = self._spawn(self._email(job, outcome, steps or self.email_steps))
            return job.run_id, task

        run_id, task = self._run(start())
        if wait:
            async def ended() -> None:
                await task

            self._run(ended(), timeout=35)
        return run_id

    def broadcast(self, event: str, data: dict[str, Any], run_id: str | None = None) -> None:
        """Send an event to every live connection in this app's envelope (dag-updates needs ``run_id``)."""
        async def send() -> None:
            if self.app == "main":
                await self._event(event, data)
            else:
                await self._dag_update(event, run_id or "", data)

        self._run(send())

    def send_raw(self, frame: str | bytes) -> None:
        """Send one frame as is to every live connection."""
        async def send() -> None:
            await self._send_all(frame)

        self._run(send())

    # -- observations (sync) ------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        """The run as ``DAGRun.to_dict()`` (a copy)."""
        return self._call(lambda: json.loads(dumps(self._get(run_id).to_dict())))

    def messages(self, kind: str | None = None, connection: int | None = None) -> list[Received]:
        """Frames the clients sent (``kind``: "text" or "binary")."""
        with self._lock:
            return [m for m in self.received
                    if (kind is None or m.kind == kind) and (connection is None or m.connection == connection)]

    def text_frames(self) -> list[str]:
        return [m.text for m in self.messages("text") if m.text is not None]

    def binary_count(self) -> int:
        return len(self.messages("binary"))

    def subscribes(self) -> list[str]:
        """Run ids the clients asked for with ``{"action": "subscribe", "run_id": X}``."""
        out = []
        for m in self.messages("text"):
            obj = m.json()
            if isinstance(obj, dict) and obj.get("action") == "subscribe" and obj.get("run_id"):
                out.append(str(obj["run_id"]))
        return out

    def live_count(self) -> int:
        """Open connections the server still sends to (zombies excluded)."""
        return self._call(lambda: sum(1 for c in self._live if not c.zombie))

    def zombie_count(self) -> int:
        return self._call(lambda: sum(1 for c in self._live if c.zombie))

    def sent_events(self) -> list[str]:
        """Names of the events sent, in order (broadcasts counted once)."""
        names = []
        with self._lock:
            frames = [text for _, text in self.sent]
        for text in frames:
            with contextlib.suppress(ValueError, AttributeError):
                names.append(json.loads(text).get("event"))
        return names

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
    def _build_app(self) -> web.Application:
        application = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        r = application.router
        r.add_get(self.ws_path, self._ws_handler)
        if self.app == "main":
            r.add_get("/api/dag-runs", self._list_dag_runs)
            r.add_post("/api/dag-runs", self._create_dag_run)
            r.add_get("/api/dag-runs/{run_id}", self._get_dag_run)
            r.add_patch("/api/dag-runs/{run_id}/status", self._patch_status)
            r.add_post("/api/process-email", self._process_email)
            r.add_post("/api/process-email-form", self._process_email_form)
            r.add_get("/api/email-status/{run_id}", self._email_status)
            r.add_get("/health", self._health)
            r.add_get("/metrics", self._metrics)
            r.add_post("/api/test/create-sample-workflow", self._create_sample)
        r.add_post("/api/workflows/run", self._workflows_run)
        r.add_get("/api/workflows/dag-runs", self._list_workflow_runs)
        r.add_get("/api/workflows/dag-runs/{run_id}", self._get_workflow_run)
        r.add_post("/api/workflows/upload-pdf", self._upload_pdf)
        r.add_post("/api/workflows/workflows/from-url", self._stub("URL ingestion not implemented"))
        r.add_post("/api/workflows/workflows/from-email", self._stub("Email webhook not implemented"))
        return application

    async def _open(self) -> None:
        self._runner = web.AppRunner(self._build_app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen()
        if self.keepalive and self.app == "dag-updates":
            self._spawn(self._keepalive())

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]  # the port picked for 0, kept for restarts

    async def _close_all(self) -> None:
        live = list(self._live)
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.SERVICE_RESTART, message=b"") for c in live),
                             return_exceptions=True)
        self._live.clear()

    async def _restart(self, downtime: float) -> float:
        self.restarts += 1
        await self._close_all()
        assert self._site is not None
        await self._site.stop()
        if downtime:
            await asyncio.sleep(downtime)
        await self._listen()
        return time.monotonic()

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # Starlette refuses a WebSocket handshake on any path without a WebSocket route with 403
        if request.headers.get("Upgrade", "").lower() == "websocket" and request.path != self.ws_path:
            return web.Response(status=403, text="")
        started = time.monotonic()
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            response = detail(404, "Not Found")
        except web.HTTPMethodNotAllowed:
            response = detail(405, "Method Not Allowed")
        duration = (time.monotonic() - started) * 1000
        status = response.status
        with self._lock:
            self.http_requests.append((request.method, request.path, status))
        if self.app == "main" and request.path != self.ws_path:
            stats = self._endpoint_stats.setdefault(f"{request.method} {request.path}",
                                                    {"count": 0, "total_time": 0.0, "errors": 0})
            stats["count"] += 1
            stats["total_time"] += duration
            stats["errors"] += 1 if status >= 400 else 0
            if not response.prepared:
                response.headers["X-Request-ID"] = f"{time.time()}-{id(request)}"
                response.headers["X-Response-Time"] = f"{duration:.2f}ms"
        return response

    # -- WebSocket --------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=self.ws_ping_interval, autoping=True, max_msg_size=16 * 2**20)
        if not ws.can_prepare(request).ok:
            return detail(404, "Not Found")
        await ws.prepare(request)
        with self._lock:
            conn = Connection(len(self.connections) + 1, ws)
            self.connections.append(conn)
        self._live.add(conn)
        try:
            if self.app == "main":
                await self._send(conn, {"event": "connection.established",
                                        "data": {"message": "Connected to DAG updates"}})
            else:
                await self._send(conn, {"event": "connected", "message": "WebSocket connected"})
            # Reading goes on for zombies too, so that WebSocket pings are still answered, as uvicorn does
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._record(conn, "text", msg.data, None)
                    if not conn.zombie:
                        await self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._record(conn, "binary", None, msg.data)
                    # the real handler calls receive_text(), which raises on bytes; it is left half-dead
                    conn.zombie = True
        finally:
            self._live.discard(conn)
        return ws

    def _record(self, conn: Connection, kind: str, text: str | None, data: bytes | None) -> None:
        with self._lock:
            self.received.append(Received(conn.index, time.monotonic(), kind, text, data))

    async def _on_text(self, conn: Connection, text: str) -> None:
        if self.app == "main":
            if text == "ping":
                await self._send(conn, "pong")
            return  # auth, subscribe and everything else: no answer at all
        try:
            message = json.loads(text)
            action, run_id = message.get("action"), message.get("run_id")
        except (ValueError, AttributeError):
            conn.zombie = True  # json.loads / .get raise in the real handler, which then dies silently
            return
        if action == "subscribe" and run_id:
            run = self.runs.get(str(run_id))
            if run is not None and run.store == "workflows":
                await self._send(conn, {"event": "dag_run_status", "run_id": run_id, "data": run.to_dict()})
            else:
                await self._send(conn, {"event": "error", "message": f"DAG run {run_id} not found"})

    async def _send(self, conn: Connection, obj: Any) -> None:
        text = obj if isinstance(obj, str) else dumps(obj)
        with self._lock:
            self.sent.append((conn.index, text))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.send_str(text)

    async def _send_all(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            with self._lock:
                self.sent.append((None, frame))
        for conn in list(self._live):
            if conn.zombie or conn.ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                if isinstance(frame, str):
                    await conn.ws.send_str(frame)
                else:
                    await conn.ws.send_bytes(frame)

    async def _event(self, event: str, data: dict[str, Any]) -> None:
        """A broadcast of the main app: pydantic ``WebSocketMessage`` with a naive ISO timestamp."""
        await self._send_all(dumps({"event": event, "data": data, "timestamp": naive_utc_now()}))

    async def _dag_update(self, event: str, run_id: str, data: dict[str, Any]) -> None:
        """A broadcast of the dag-updates app: the loop's monotonic clock as ``timestamp``."""
        loop = asyncio.get_running_loop()
        await self._send_all(dumps({"event": event, "run_id": run_id, "data": data, "timestamp": loop.time()}))

    async def _keepalive(self) -> None:
        assert self.keepalive
        while True:
            await asyncio.sleep(self.keepalive)
            for conn in list(self._live):
                if not conn.zombie:
                    await self._send(conn, {"event": "ping"})

    # -- runs -------------------------------------------------------------------------------------
    def _get(self, run_id: str) -> AutopilotRun:
        try:
            return self.runs[run_id]
        except KeyError:
            raise KeyError(f"no run {run_id!r} on this autopilot server") from None

    def _new_run(self, workflow_name: str, steps: Iterable[str], store: str | None,
                 fail_step: str | None, error: str) -> AutopilotRun:
        store = store or ("adapter" if self.app == "main" else "workflows")
        if store not in ("adapter", "workflows"):
            raise ValueError(f"store must be 'adapter' or 'workflows', not {store!r}")
        run = AutopilotRun(str(uuid.uuid4()), workflow_name, {s: Step(s, s) for s in steps}, store,
                           fail_step=fail_step, fail_error=error)
        self.runs[run.run_id] = run
        return run

    async def _create_sample_run(self, fail_step: str | None, error: str, auto: bool) -> AutopilotRun:
        run = self._new_run(SAMPLE_WORKFLOW, SAMPLE_STEPS, None, fail_step, error)
        if self.app == "main":
            await self._event("dag.run.created", {
                "run_id": run.run_id, "workflow_name": SAMPLE_WORKFLOW, "status": run.status,
                "message": "Test workflow created for integration testing"})
        if auto:
            self._spawn(self._progress(run))
        return run

    async def _announce_change(self, run: AutopilotRun) -> None:
        run.updated_at = naive_utc_now()
        if self.app == "main":
            await self._event("dag.step.status.updated", {"run_id": run.run_id, "status": run.status,
                                                          "steps": run.status_steps()})
            if run.status in ("success", "failed", "cancelled"):
                await self._event("dag.run.completed", {"run_id": run.run_id, "status": run.status,
                                                        "error": run.error})
        else:
            await self._dag_update("dag_run_status", run.run_id, run.to_dict())

    async def _advance(self, run: AutopilotRun, outcome: str, error: str) -> None:
        if run.done:
            raise ValueError(f"run {run.run_id} has ended ({run.status})")
        now, clock = naive_utc_now(), time.monotonic()
        steps = list(run.steps.values())
        running = next((s for s in steps if s.status == "running"), None)
        if run.status == "created":
            run.status, run.start_time, run.started = "running", now, clock
        if running is not None:
            if outcome == "success":
                running.status, running.end_time, running.ended = "success", now, clock
                running.result = {}
            elif outcome == "failed":
                running.status, running.end_time, running.ended, running.error = "failed", now, clock, error
                for step in steps:
                    if step.status == "pending":
                        step.status, step.end_time, step.ended = "skipped", now, clock
                        step.metadata["skip_reason"] = f"Skipped due to failure of {running.step_id}"
                run.status = "failed"
                run.metadata["failure_reason"] = (f"Critical step '{running.step_id}' failed after "
                                                  f"{running.retry_count + 1} attempts: {error}")
                run.end_time, run.ended = now, clock
            else:
                running.status, running.retry_count, running.error = "retry", running.retry_count + 1, None
            if run.status == "running" and all(s.status == "success" for s in steps):
                run.status, run.end_time, run.ended = "success", now, clock
        else:
            nxt = next(s for s in steps if s.status in ("pending", "retry"))
            nxt.status, nxt.start_time, nxt.started = "running", now, clock
        await self._announce_change(run)

    async def _progress(self, run: AutopilotRun) -> None:
        """A run progressing by itself, ``step_delay`` between two changes."""
        while not run.done:
            await asyncio.sleep(self.step_delay)
            running = next((s for s in run.steps.values() if s.status == "running"), None)
            failing = running is not None and running.step_id == run.fail_step
            await self._advance(run, "failed" if failing else "success", run.fail_error)

    async def _cancel(self, run: AutopilotRun, message: str | None) -> None:
        now, clock = naive_utc_now(), time.monotonic()
        run.status, run.end_time, run.ended = "cancelled", now, clock
        for step in run.steps.values():
            if step.status in ("pending", "running"):
                step.status, step.end_time, step.ended = "cancelled", now, clock
        run.updated_at = now
        if self.app == "main":
            await self._event("dag.run.status.updated", {"run_id": run.run_id, "status": "cancelled",
                                                         "message": message})

    # -- email jobs -------------------------------------------------------------------------------
    async def _start_email(self, subject: str, sender: str, pdf_name: str, pdf_size: int) -> EmailJob:
        # ``email-{datetime.utcnow().timestamp()}``: microseconds, as in the real ids
        run_id = f"email-{datetime.now(UTC).timestamp()}"
        while run_id in self.emails:  # two jobs in the same microsecond would share an id
            await asyncio.sleep(0.001)
            run_id = f"email-{datetime.now(UTC).timestamp()}"
        job = EmailJob(run_id, subject)
        self.emails[run_id] = job
        await self._event("email.processing.started", {"run_id": run_id, "subject": subject, "sender": sender,
                                                       "pdf_name": pdf_name, "pdf_size": pdf_size})
        return job

    async def _email(self, job: EmailJob, outcome: str, steps: int) -> None:
        started = time.monotonic()
        for k in range(1, steps + 1):
            await asyncio.sleep(self.step_delay)
            await self._event("email.processing.progress", {
                "run_id": job.run_id, "status": "running" if k < steps else "success",
                "progress": f"{k}/{steps} steps", "current_step": f"step_{k}"})
        await asyncio.sleep(self.step_delay)
        job.status, job.done = "success", True
        job.summary = f"Summary of {job.subject}"
        job.processing_time_ms = int((time.monotonic() - started) * 1000)
        if outcome == "real":
            try:
                datetime.fromisoformat(job.subject)
                outcome = "completed"
            except ValueError:
                outcome = "error"
        if outcome == "completed":
            await self._event("email.processing.completed", {
                "run_id": job.run_id, "status": job.status, "summary": job.summary,
                "processing_time_ms": job.processing_time_ms, "email_subject": job.subject,
                "workflow_url": f"/api/dag-runs/{uuid.uuid4()}"})
        else:
            await self._event("email.processing.error", {
                "run_id": job.run_id, "error": f"Invalid isoformat string: {job.subject!r}",
                "email_subject": job.subject})

    # -- REST: main app ---------------------------------------------------------------------------
    @staticmethod
    def _int_query(request: web.Request, name: str, default: int, low: int, high: int | None) -> int | web.Response:
        raw = request.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            return detail(422, [{"type": "int_parsing", "loc": ["query", name],
                                 "msg": "Input should be a valid integer, unable to parse string as an integer",
                                 "input": raw}])
        if value < low or (high is not None and value > high):
            return detail(422, [{"type": "greater_than_equal" if value < low else "less_than_equal",
                                 "loc": ["query", name], "input": raw,
                                 "msg": f"Input should be {'greater' if value < low else 'less'} than or equal "
                                        f"to {low if value < low else high}"}])
        return value

    def _ordered(self, store: str) -> list[AutopilotRun]:
        runs = [r for r in self.runs.values() if r.store == store]
        return sorted(runs, key=lambda r: r.updated_at, reverse=True)

    async def _list_dag_runs(self, request: web.Request) -> web.Response:
        limit = self._int_query(request, "limit", 20, 1, 100)
        offset = self._int_query(request, "offset", 0, 0, None)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(offset, web.Response):
            return offset
        runs = self._ordered("adapter")[:100]
        status = request.query.get("status")
        if status:
            runs = [r for r in runs if r.status == status.lower()]
        items: list[dict[str, Any]] = [{"id": r.run_id, "workflow_name": r.dag_id, "workflow_version": "1.0.0", "status": r.status,
                  "started_at": r.created_at, "completed_at": r.updated_at if r.status != "running" else None,
                  "duration_ms": 0, "step_count": 0, "steps": None, "failed_step": None, "errors": [],
                  "execution_order": None} for r in runs[offset:offset + limit]]
        return json_response({"items": items, "total": len(runs), "limit": limit, "offset": offset})

    async def _get_dag_run(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        run = self.runs.get(run_id)
        if run is None or run.store != "adapter":
            return detail(404, f"DAG run {run_id} not found")
        steps = [{"id": sid, "name": sid, "status": s.status, "duration_ms": 0, "error": s.error,
                  "timestamp": s.start_time or ""} for sid, s in run.steps.items()]
        done = bool(run.start_time) and run.status in ("success", "failed", "cancelled")
        return json_response({
            "id": run_id, "workflow_name": run.dag_id, "workflow_version": "1.0.0", "status": run.status,
            "started_at": run.start_time or naive_utc_now(),
            "completed_at": (run.end_time or naive_utc_now()) if run.status != "running" else None,
            "duration_ms": 1000 if done else 0, "step_count": len(steps), "steps": steps, "failed_step": None,
            "errors": [run.error] if run.error else [], "execution_order": list(run.steps)})

    async def _create_dag_run(self, request: web.Request) -> web.Response:
        # the real route fails on every call (its WorkflowLoader is built without a path)
        return detail(500, "WorkflowLoader.__init__() missing 1 required positional argument: 'workflow_path'")

    async def _patch_status(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        try:
            body = await request.json()
            status = body["status"]
        except (ValueError, KeyError, TypeError):
            return missing_field("body", "status")
        run = self.runs.get(run_id)
        if run is None or run.store != "adapter":
            return detail(404, f"DAG run {run_id} not found")
        if status != "cancelled":
            return detail(400, f"Invalid status update: {status}")
        if run.status != "running":
            return detail(400, f"Cannot cancel workflow in {run.status} state")
        await self._cancel(run, body.get("message"))
        return json_response({"status": "cancelled", "message": "Workflow cancelled"})

    async def _create_sample(self, request: web.Request) -> web.Response:
        run = await self._create_sample_run(None, "step failed", True)
        return json_response({"id": run.run_id, "workflow_name": SAMPLE_WORKFLOW, "workflow_version": "1.0.0",
                              "status": "created", "started_at": naive_utc_now(), "completed_at": None,
                              "duration_ms": None, "step_count": len(SAMPLE_STEPS), "steps": None,
                              "failed_step": None, "errors": [], "execution_order": None})

    async def _process_email(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return detail(422, [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}])
        if not isinstance(body, dict):
            return detail(422, [{"type": "model_attributes_type", "loc": ["body"],
                                 "msg": "Input should be a valid dictionary or object to extract fields from"}])
        for name in ("subject", "sender", "body"):
            if not isinstance(body.get(name), str):
                return missing_field("body", name)
        attachments = body.get("attachments") or []
        pdfs = [a for a in attachments if isinstance(a, dict) and str(a.get("name", "")).lower().endswith(".pdf")]
        if not pdfs:
            return detail(400, "No PDF attachment found in email")
        try:
            content = base64.b64decode(pdfs[0].get("content", ""))
        except (binascii.Error, ValueError) as exc:
            return detail(500, f"Failed to process email: {exc}")
        job = await self._start_email(body["subject"], body["sender"], pdfs[0]["name"], len(content))
        self._spawn(self._email(job, self.email_outcome, self.email_steps))
        return json_response({"run_id": job.run_id, "status": "processing",
                              "message": f"Processing PDF '{pdfs[0]['name']}' from email",
                              "summary": None, "processing_time_ms": None})

    async def _process_email_form(self, request: web.Request) -> web.Response:
        form = await request.post()
        for name in ("subject", "sender", "body", "pdf_file"):
            if name not in form:
                return missing_field("body", name)
        upload = form["pdf_file"]
        if not isinstance(upload, web.FileField):
            return missing_field("body", "pdf_file")
        content = upload.file.read()
        if not str(upload.filename).lower().endswith(".pdf"):
            return detail(400, "No PDF attachment found in email")
        # the real route builds its own BackgroundTasks that nobody runs: only ``started`` is sent
        job = await self._start_email(str(form["subject"]), str(form["sender"]), str(upload.filename), len(content))
        return json_response({"run_id": job.run_id, "status": "processing",
                              "message": f"Processing PDF '{upload.filename}' from email",
                              "summary": None, "processing_time_ms": None})

    async def _email_status(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        job = self.emails.get(run_id)
        if job is None or not job.done:  # the real app stores the job only once its workflow ended
            return detail(404, f"Email processing job {run_id} not found")
        return json_response({"run_id": run_id, "status": job.status, "message": f"Workflow {job.status}",
                              "summary": job.summary, "processing_time_ms": job.processing_time_ms})

    async def _health(self, request: web.Request) -> web.Response:
        return json_response({"status": "healthy", "timestamp": naive_utc_now(),
                              "active_runs": sum(1 for j in self.emails.values() if j.done),
                              "connected_clients": sum(1 for c in self._live if not c.zombie)})

    async def _metrics(self, request: web.Request) -> web.Response:
        stats = self._endpoint_stats
        count = sum(int(s["count"]) for s in stats.values())
        errors = sum(int(s["errors"]) for s in stats.values())
        total = sum(s["total_time"] for s in stats.values())
        jobs = [j for j in self.emails.values() if j.done]
        return json_response({
            "timestamp": naive_utc_now(),
            "api_metrics": {"total_requests": count, "total_errors": errors,
                            "error_rate": errors / count if count else 0,
                            "avg_response_time_ms": total / count if count else 0,
                            "endpoints": {k: dict(v) for k, v in stats.items()}},
            "dag_metrics": {"active_runs": len(jobs), "total_runs": len(jobs), "runs_by_status": {
                "running": 0, "success": sum(1 for j in jobs if j.status == "success"),
                "failed": sum(1 for j in jobs if j.status == "failed")}},
            "websocket_metrics": {"connected_clients": sum(1 for c in self._live if not c.zombie)}})

    # -- REST: the workflows router (both apps) ---------------------------------------------------
    async def _workflows_run(self, request: web.Request) -> web.Response:
        try:
            path = (await request.json())["workflow_path"]
        except (ValueError, KeyError, TypeError):
            return missing_field("body", "workflow_path")
        # the real route opens the YAML file on the server's disk; this server has none
        return detail(500, f"[Errno 2] No such file or directory: {str(path)!r}")

    async def _list_workflow_runs(self, request: web.Request) -> web.Response:
        limit = self._int_query(request, "limit", 20, -(2**31), None)
        offset = self._int_query(request, "offset", 0, -(2**31), None)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(offset, web.Response):
            return offset
        runs = self._ordered("workflows")[:max(limit, 0)]  # offset is echoed, not applied, as in the real app
        items = [{"id": r.run_id, "workflow_name": r.dag_id, "status": r.status, "started_at": r.created_at,
                  "completed_at": r.updated_at} for r in runs]
        return json_response({"items": items, "total": len(items), "limit": limit, "offset": offset})

    async def _get_workflow_run(self, request: web.Request) -> web.Response:
        run = self.runs.get(request.match_info["run_id"])
        if run is None or run.store != "workflows":
            return detail(404, "Run not found")
        return json_response(run.to_dict())

    async def _upload_pdf(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            return missing_field("body", "file")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return missing_field("body", "file")
        upload.file.read()
        run = self._new_run(UPLOAD_WORKFLOW, UPLOAD_STEPS, None, None, "step failed")
        run.metadata["filename"] = upload.filename
        if self.app == "main":  # as POST /api/dag-runs announces its runs
            await self._event("dag.run.created", {"run_id": run.run_id, "workflow_name": UPLOAD_WORKFLOW,
                                                  "status": run.status})
        self._spawn(self._progress(run))
        return json_response({"run_id": run.run_id, "status": "started"})

    @staticmethod
    def _stub(message: str) -> Handler:
        async def stub(request: web.Request) -> web.Response:
            return json_response({"message": message})

        return stub
