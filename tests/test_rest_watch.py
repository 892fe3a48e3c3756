"""RunWatch against a small real server that plays a run's life: text line, widget, endings."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.rest import RestClient, RunState, RunWatch, get_dag_run, run_state

pytestmark = pytest.mark.timeout(30)

STEPS = ("upload", "text_extraction", "analysis")


def run(status: str, states: tuple[str, ...], progress: int, error: str | None = None, **extra: Any) -> dict[str, Any]:
    steps = [{"step_id": step, "status": state, "error": error if state == "failed" else None}
             for step, state in zip(STEPS, states, strict=True)]
    job_status = {"success": "completed", "running": "processing"}.get(status, status)
    return {"run_id": "run-1", "dag_id": "pdf_processing", "job_id": "job-7", "status": status,
            "job_status": job_status, "progress": progress, "error": None, "steps": steps, **extra}


LIFE_OK = [
    run("queued", ("pending", "pending", "pending"), 0),
    run("running", ("running", "pending", "pending"), 5),
    run("running", ("success", "running", "pending"), 40),
    run("running", ("success", "success", "running"), 75),
    run("success", ("success", "success", "success"), 100),
]
LIFE_FAIL = [
    run("running", ("running", "pending", "pending"), 5),
    run("running", ("success", "running", "pending"), 30),
    run("failed", ("success", "failed", "pending"), 30, error="Failed to extract text: <Invalid> PDF"),
]


class RunServer:
    """Answers GET /api/workflows/dag-runs/{id} with the next stage of a scripted run."""

    def __init__(self, life: list[Any]) -> None:
        self.life = life
        self.gets = 0
        self.url = ""
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        stage = self.life[min(self.gets, len(self.life) - 1)]
        self.gets += 1
        if isinstance(stage, int):
            return web.json_response({"message": "nope"}, status=stage)
        return web.json_response(stage)

    async def start(self) -> RunServer:
        app = web.Application()
        app.router.add_get("/api/workflows/dag-runs/{run_id}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self


@pytest.fixture
async def servers() -> AsyncIterator[list[RunServer]]:
    started: list[RunServer] = []
    yield started
    for server in started:
        assert server.runner is not None
        await server.runner.cleanup()


async def serve(servers: list[RunServer], life: list[Any]) -> RunServer:
    server = await RunServer(life).start()
    servers.append(server)
    return server


async def test_text_line_follows_the_run_to_completion(servers: list[RunServer]) -> None:
    server = await serve(servers, LIFE_OK)
    out = io.StringIO()
    async with RestClient(server.url, "t") as rest:
        watch = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="text", interval=0.01, stream=out)
        state = await watch.start()
    assert state.ok and state.done and state.progress == 100.0
    assert (state.job_id, state.dag_id) == ("job-7", "pdf_processing")
    lines = out.getvalue().splitlines()
    assert lines == [
        "run-1  queued    0%",
        "run-1  running    5%  upload",
        "run-1  running   40%  text_extraction",
        "run-1  running   75%  analysis",
        "run-1  completed  100%",
    ]
    assert watch.done and watch.wait(0) == state


async def test_failure_ends_the_watch_with_the_error_and_the_step(servers: list[RunServer]) -> None:
    server = await serve(servers, LIFE_FAIL)
    out = io.StringIO()
    async with RestClient(server.url, "t") as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="text",
                               interval=0.01, stream=out).start()
    assert (state.status, state.current_step) == ("failed", "text_extraction")
    assert state.error == "Failed to extract text: <Invalid> PDF"
    assert out.getvalue().splitlines()[-1] == "run-1  failed at text_extraction: Failed to extract text: <Invalid> PDF"
    assert server.gets == 3  # it stopped asking once the run had failed


async def test_widget_view_shows_progress_then_the_error(servers: list[RunServer]) -> None:
    server = await serve(servers, LIFE_FAIL)
    async with RestClient(server.url, "t") as rest:
        watch = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="widget", interval=0.01)
        bar, label = watch.widget.children
        assert (bar.value, bar.bar_style) == (0.0, "info")
        await watch.start()
    assert (bar.value, bar.bar_style) == (30.0, "danger")
    assert label.value == "failed at <b>text_extraction</b>: Failed to extract text: &lt;Invalid&gt; PDF"


async def test_widget_view_completed(servers: list[RunServer]) -> None:
    server = await serve(servers, LIFE_OK)
    async with RestClient(server.url, "t") as rest:
        watch = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="widget", interval=0.01)
        await watch.start()
    bar, label = watch.widget.children
    assert (bar.value, bar.bar_style, label.value) == (100.0, "success", "completed")


async def test_refused_token_ends_at_once(servers: list[RunServer]) -> None:
    server = await serve(servers, [401])
    async with RestClient(server.url, "t") as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.01).start()
    assert state.status == "unknown" and "answered 401" in (state.error or "")
    assert server.gets == 1


async def test_transient_errors_are_ridden_out(servers: list[RunServer]) -> None:
    server = await serve(servers, [503, 404, *LIFE_OK])
    async with RestClient(server.url, "t", retries=0) as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.01).start()
    assert state.ok


async def test_a_run_that_never_appears_gives_up(servers: list[RunServer]) -> None:
    server = await serve(servers, [404])
    async with RestClient(server.url, "t", retries=0) as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.005).start()
    assert state.status == "unknown"
    assert "cannot follow the run" in (state.error or "") and "answered 404" in (state.error or "")


async def test_timeout_and_cancel(servers: list[RunServer]) -> None:
    server = await serve(servers, [LIFE_OK[1]])  # running for ever
    async with RestClient(server.url, "t") as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none",
                               interval=0.01, timeout=0.2).start()
        assert state.status == "unknown" and "still running after 0.2 s" in (state.error or "")
        assert state.current_step == "upload"
        watch = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.01).start()
        await asyncio.sleep(0.05)
        watch.cancel()
        state = await watch
    assert (state.status, state.error) == ("unknown", "stopped watching")


async def test_wait_from_another_thread_and_not_on_its_own_loop(servers: list[RunServer]) -> None:
    server = await serve(servers, LIFE_OK)
    async with RestClient(server.url, "t") as rest:
        watch = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.01).start()
        got: list[RunState] = []
        waiter = threading.Thread(target=lambda: got.append(watch.wait(10)))
        waiter.start()
        await watch
        await asyncio.to_thread(waiter.join, 10)
        assert got and got[0].ok
        running = RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), display="none", interval=0.01).start()
        await asyncio.sleep(0)  # its task has started on this loop: blocking here would deadlock
        with pytest.raises(RuntimeError, match="use `await watch`"):
            running.wait(0)
        running.cancel()
        await running


async def test_local_news_wins_when_newer(servers: list[RunServer]) -> None:
    # REST still says running; the store's job row (live events) already says completed
    server = await serve(servers, [LIFE_OK[2] | {"updated_at": "2026-01-01T00:00:00Z"}])
    local = RunState("run-1", "completed", 100.0, updated_at=None)
    async with RestClient(server.url, "t") as rest:
        state = await RunWatch("run-1", lambda: get_dag_run(rest, "run-1"), local=lambda: local,
                               display="none", interval=0.01).start()
    assert state is local


def test_bad_arguments() -> None:
    async def fetch() -> None:
        return None

    with pytest.raises(ConfigurationError, match="run_id"):
        RunWatch("", fetch)
    with pytest.raises(ConfigurationError, match="display must be one of auto, widget, text, none"):
        RunWatch("r", fetch, display="bar")
    with pytest.raises(ConfigurationError, match="interval"):
        RunWatch("r", fetch, interval=0)
    with pytest.raises(ConfigurationError, match="timeout must be > 0 s or None"):
        RunWatch("r", fetch, timeout=-1)


def test_run_state_from_rest_and_from_a_job_row() -> None:
    state = run_state("r", {"status": "running", "steps": [
        {"step_id": "a", "status": "success"}, {"step_id": "b", "status": "up_for_retry"},
        {"step_id": "c", "status": "pending"}, {"step_id": "d", "status": "pending"}]})
    assert (state.status, state.current_step, state.progress) == ("running", "b", 25.0)
    row = run_state("r", {"status": "failed", "current_step": "fetch", "error": "404 Not Found", "progress": 10.0,
                          "updated_at": "2026-01-01T00:00:05Z"})
    assert (row.status, row.current_step, row.error) == ("failed", "fetch", "404 Not Found")
    assert row.updated_at is not None and row.updated_at.second == 5
    assert run_state("r", {}).status == "unknown"
