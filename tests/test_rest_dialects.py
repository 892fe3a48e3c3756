"""The client's REST side on the servers that exist: the autopilot test server (both apps of the
public AIOS v2 backend, tests/autopilot_server.py) with its own routes, on 127.0.0.1.

Snapshots read the dialect's routes and skip (and note once) what it lacks; get_dag_run, upload and
watch use what it has; what it lacks raises UnsupportedRoute before any request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web
from autopilot_server import SAMPLE_STEPS, SAMPLE_WORKFLOW, UPLOAD_WORKFLOW, AutopilotServer

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import APIError, UnsupportedRoute
from aios_notebook.protocol.dialects import Dialect, Routes, get_dialect
from aios_notebook.rest import RestClient, published_run, run_state
from aios_notebook.rest.routes import route
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(90)

MAIN_MISSING = ("the server speaks the 'autopilot' dialect, which has no route for metrics (GET "
                "/api/analytics/dashboard), agents (GET /api/agents), insights (GET /api/analytics/insights), "
                "knowledge (GET /api/knowledge/search): snapshots skip them")


@pytest.fixture
def main() -> Iterator[AutopilotServer]:
    with AutopilotServer(step_delay=0.05) as server:
        yield server


@pytest.fixture
def dag() -> Iterator[AutopilotServer]:
    with AutopilotServer(app="dag-updates", step_delay=0.05) as server:
        yield server


@pytest.fixture
def start_client() -> Iterator[Callable[..., AIOSClient]]:
    clients: list[AIOSClient] = []

    def start(url: str, dialect: str = "auto", run: bool = True, **options: Any) -> AIOSClient:
        client = AIOSClient(url, None, dialect=dialect, store=EventStore(), reconnect_delay=0.05,
                            max_reconnect_delay=0.2, **options)
        clients.append(client)
        return client.start() if run else client

    yield start
    for client in clients:
        client.stop()


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "q3.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"x" * 3000)
    return path


def snapshot_notes(store: EventStore) -> list[str]:
    errors = store.errors
    return list(errors[errors["kind"] == "snapshot"]["message"])


def rows(frame: pd.DataFrame, key: str = "run_id") -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in frame.to_dict("records")}


def wait(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(0.02)
    return result


def requested(server: AutopilotServer) -> list[str]:
    return [f"{method} {path}" for method, path, _ in server.http_requests]


def three_runs(server: AutopilotServer) -> tuple[str, str, str]:
    """A finished run, one just created and one running whose first step is being retried; none
    announced to the client (which is not connected yet): only the snapshot can tell of them."""
    done = server.create_run(announce=False)
    server.run_to_end(done)
    created = server.create_run(announce=False)
    running = server.create_run(announce=False)
    server.advance(running)  # starts, its first step running
    server.advance(running, "retry")  # the first step fails and will be tried again
    return done, created, running


# -- snapshots -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["autopilot", "auto"])
def test_snapshot_on_connect_reads_the_autopilot_routes(main, start_client, dialect) -> None:
    done, created, running = three_runs(main)
    client = start_client(main.url, dialect)
    store = client.store
    wait(lambda: len(store.dag_runs) == 3 and len(store.dag_steps) == 4 and snapshot_notes(store))
    runs = rows(store.dag_runs)
    assert set(runs) == {done, created, running}
    # workflow_name is the dag_id; created is queued, as the dialect reads dag.run.created
    assert {run_id: (r["dag_id"], r["status"], r["snapshot"]) for run_id, r in runs.items()} == {
        done: (SAMPLE_WORKFLOW, "success", True),
        created: (SAMPLE_WORKFLOW, "queued", True),
        running: (SAMPLE_WORKFLOW, "running", True),
    }
    # the steps of the runs not finished, from GET /api/dag-runs/{id} (a list of steps there)
    steps = {(r["run_id"], r["step_id"]): r["status"] for r in store.dag_steps.to_dict("records")}
    first, second = SAMPLE_STEPS
    assert steps == {(created, first): "pending", (created, second): "pending",
                     (running, first): "up_for_retry", (running, second): "pending"}
    assert f"GET /api/dag-runs/{running}" in requested(main)
    assert f"GET /api/dag-runs/{done}" not in requested(main)
    assert client.dialect == "autopilot"
    # what the dialect lacks is one note, and no "partial" snapshot, even when the published
    # routes were tried first (auto: the greeting had not named the dialect yet)
    assert snapshot_notes(store) == [MAIN_MISSING]
    assert client.last_snapshot.dialect == "autopilot"
    assert client.last_snapshot.problems == []
    if dialect == "autopilot":  # known from the start: never a route the server lacks
        assert all(status < 400 for _, _, status in main.http_requests), main.http_requests


@pytest.mark.parametrize("dialect", ["autopilot-dag-updates", "auto"])
def test_snapshot_with_dag_updates_reads_steps_keyed_by_id(dag, start_client, dialect) -> None:
    finished = dag.create_run("Simple Test Workflow", ("test_step",))
    dag.run_to_end(finished)
    running = dag.create_run("Two Steps", ("fetch", "parse"))
    dag.advance(running)
    dag.advance(running)  # fetch succeeded: parse is next
    client = start_client(dag.url, dialect)
    store = client.store
    wait(lambda: len(store.dag_runs) == 2 and len(store.dag_steps) == 2 and snapshot_notes(store))
    runs = rows(store.dag_runs)
    assert {run_id: (r["dag_id"], r["status"]) for run_id, r in runs.items()} == {
        finished: ("Simple Test Workflow", "success"), running: ("Two Steps", "running")}
    steps = {(r["run_id"], r["step_id"]): r["status"] for r in store.dag_steps.to_dict("records")}
    assert steps == {(running, "fetch"): "success", (running, "parse"): "pending"}
    assert f"GET /api/workflows/dag-runs/{running}" in requested(dag)
    assert client.dialect == "autopilot-dag-updates"
    [note] = snapshot_notes(store)
    assert note.startswith("the server speaks the 'autopilot-dag-updates' dialect, which has no route for metrics")


def test_missing_routes_are_noted_once_across_three_restarts(main, start_client) -> None:
    client = start_client(main.url)  # auto
    store = client.store
    wait(lambda: snapshot_notes(store))
    for _ in range(3):
        main.restart()
        # a run only the snapshot can tell of: a snapshot taken after this reconnect shows it
        fresh = main.create_run(announce=False)

        def settled(fresh: str = fresh) -> bool:
            snapshot = client.last_snapshot
            return snapshot is not None and fresh in {r["run_id"] for r in snapshot.records["dag_runs"]}

        wait(settled)
        assert fresh in set(store.dag_runs["run_id"])
    assert client.stats.reconnects >= 3
    # snapshots went on (no "no REST API"), and the missing routes were said once
    assert snapshot_notes(store) == [MAIN_MISSING]
    # the published routes were tried once, before the first greeting; never after a reconnect
    assert requested(main).count("GET /api/agents") == 1


# -- lookups, uploads, watch ---------------------------------------------------------------------
def test_get_dag_run_uses_the_dialects_route(main, dag, start_client) -> None:
    run_id = main.create_run(announce=False)
    main.run_to_end(run_id)
    client = start_client(main.url, "autopilot")
    run = client.get_dag_run(run_id)
    assert (run["id"], run["workflow_name"], run["status"]) == (run_id, SAMPLE_WORKFLOW, "success")
    assert [step["id"] for step in run["steps"]] == list(SAMPLE_STEPS)
    with pytest.raises(APIError, match=r"GET /api/dag-runs/nope answered 404: DAG run nope not found"):
        client.get_dag_run("nope")

    other = dag.create_run("Simple Test Workflow", ("test_step",))
    updates = start_client(dag.url, "autopilot-dag-updates")
    answer = updates.get_dag_run(other)
    assert answer["run_id"] == other and set(answer["steps"]) == {"test_step"}  # keyed by step id


def test_upload_and_watch_follow_an_autopilot_run_to_its_end(main, start_client, pdf) -> None:
    client = start_client(main.url)  # auto: the greeting names autopilot
    wait(lambda: client.dialect == "autopilot")
    result = client.upload(pdf)
    assert (result.job_id, result.status, result.kind, result.source) == (None, "started", "pdf", "q3.pdf")
    assert ("POST", "/api/workflows/upload-pdf", 200) in main.http_requests  # the file in field "file"
    state = client.watch(result.run_id, display="none", interval=0.05).wait(30)
    assert (state.status, state.ok, state.progress, state.error) == ("completed", True, 100.0, None)
    assert main.run(result.run_id)["status"] == "success"
    assert main.run(result.run_id)["dag_id"] == UPLOAD_WORKFLOW
    assert f"GET /api/dag-runs/{result.run_id}" in requested(main)
    assert f"GET /api/workflows/dag-runs/{result.run_id}" not in requested(main)
    # the upload was announced over the WebSocket too
    wait(lambda: result.run_id in set(client.store.dag_runs["run_id"]))


def test_watch_ends_on_failure_and_on_cancel(main, start_client) -> None:
    client = start_client(main.url, "autopilot")
    failing = main.create_sample_workflow(fail_step=SAMPLE_STEPS[1], error="model timed out")
    state = client.watch(failing, display="none", interval=0.05).wait(30)
    assert (state.status, state.current_step, state.error) == ("failed", SAMPLE_STEPS[1], "model timed out")

    cancelled = main.create_run(announce=False)
    main.advance(cancelled)
    watch = client.watch(cancelled, display="none", interval=0.05)
    wait(lambda: watch.state.status == "running")
    main.cancel(cancelled, "stopped by hand")
    state = watch.wait(30)
    assert (state.status, state.ok) == ("failed", False)


def test_partial_success_and_created_read_as_the_dialect_says() -> None:
    autopilot = get_dialect("autopilot")
    answer = {"id": "r1", "workflow_name": "w", "status": "partial_success", "errors": [],
              "steps": [{"id": "a", "name": "a", "status": "success", "duration_ms": 0, "error": None, "timestamp": ""},
                        {"id": "b", "name": "b", "status": "failed", "duration_ms": 0, "error": "bad page",
                         "timestamp": "2026-12-06T09:13:52.42"}]}
    run = published_run(answer, autopilot)
    assert (run["run_id"], run["dag_id"], [s["step_id"] for s in run["steps"]]) == ("r1", "w", ["a", "b"])
    state = run_state("r1", run)
    assert (state.done, state.status, state.current_step, state.error, state.progress) == (
        True, "failed", "b", "bad page", 50.0)
    created = run_state("r2", published_run({"id": "r2", "status": "created", "steps": None}, autopilot))
    assert (created.status, created.done) == ("queued", False)
    retry = published_run({"run_id": "r3", "status": "running", "steps": {"s": {"status": "retry"}}},
                          get_dialect("autopilot-dag-updates"))
    assert retry["steps"] == [{"step_id": "s", "status": "up_for_retry"}]
    # the published protocol's own runs pass unchanged
    published = {"run_id": "x", "dag_id": "d", "status": "queued", "steps": [{"step_id": "a", "status": "running"}]}
    assert published_run(published) == published


# -- what the server lacks -----------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["autopilot", "auto"])
def test_what_autopilot_lacks_raises_before_any_request(main, start_client, tmp_path, dialect) -> None:
    client = start_client(main.url, dialect)
    wait(lambda: client.dialect == "autopilot" and client.last_snapshot is not None)
    before = list(main.http_requests)
    with pytest.raises(UnsupportedRoute) as found:
        client.search_knowledge("quarterly")
    assert str(found.value) == ("the server speaks the 'autopilot' dialect, which has no route for "
                                "search_knowledge (GET /api/knowledge/search)")
    assert (found.value.dialect, found.value.operation) == ("autopilot", "search_knowledge")
    with pytest.raises(UnsupportedRoute, match=r"^the server speaks the 'autopilot' dialect, which has no "
                                               r"route for submit_url \(POST /api/workflows/from-url\)$"):
        client.submit_url("https://example.com/post")
    audio = tmp_path / "call.mp3"
    audio.write_bytes(b"ID3" + b"\0" * 500)
    with pytest.raises(UnsupportedRoute, match=r"no route for audio uploads \(POST /api/workflows/upload-audio\)"):
        client.upload(audio)
    assert main.http_requests == before


def test_a_forced_dialect_raises_before_the_client_runs(start_client) -> None:
    # nothing listens on port 9: a request would be an APIError, never this
    client = start_client("ws://127.0.0.1:9/ws", "autopilot-dag-updates", run=False)
    with pytest.raises(UnsupportedRoute, match="'autopilot-dag-updates' dialect, which has no route for search_knowledge"):
        client.search_knowledge()
    with pytest.raises(UnsupportedRoute, match="submit_url"):
        client.submit_url("https://example.com/")
    # a dialect without a run route: the published one is named
    with pytest.raises(UnsupportedRoute, match=r"'no-runs' dialect, which has no route for watch "
                                               r"\(GET /api/workflows/dag-runs/\{run_id\}\)"):
        route(Dialect("no-runs", routes=Routes(dag_run=None)), "dag_run", "watch", run_id="r")


# -- servers without auth ------------------------------------------------------------------------
class Recorder:
    """A REST API in autopilot's shapes that records the headers of every request."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.path == "/api/dag-runs":
            return web.json_response({"items": [{"id": "r1", "workflow_name": "w", "status": "success",
                                                 "started_at": "2026-12-06T09:00:00", "completed_at": None}],
                                      "total": 1, "limit": 100, "offset": 0})
        return web.json_response({"id": "r1", "workflow_name": "w", "status": "success", "steps": []})


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    app = web.Application()
    app.router.add_get("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


async def test_token_none_sends_no_authorization(main, recorder) -> None:
    client = AIOSClient(main.url, None, dialect="autopilot", rest_url=recorder.url, store=EventStore())
    await asyncio.to_thread(client.start)
    try:
        await asyncio.to_thread(client.wait_for, lambda s: len(s.dag_runs) == 1, 20)
        run = await asyncio.to_thread(client.get_dag_run, "r1")
    finally:
        await asyncio.to_thread(client.stop)
    assert run["id"] == "r1"
    assert len(recorder.headers) >= 2
    assert all("Authorization" not in headers for headers in recorder.headers)
    async with RestClient(recorder.url, None) as rest:  # and the client of the REST layer alone
        await rest.get("/health")
    assert "Authorization" not in recorder.headers[-1]
