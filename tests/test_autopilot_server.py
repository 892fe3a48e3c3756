"""The autopilot test server against ../shared/spec/servers-in-the-wild.md, with a bare websockets
client and urllib: it must stay as the real backend was observed, or the kit's dialect tests prove
nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import pytest
from autopilot_server import SAMPLE_STEPS, UPLOAD_STEPS, AutopilotServer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = pytest.mark.timeout(60)

MAIN_GREETING = '{"event":"connection.established","data":{"message":"Connected to DAG updates"}}'
DAG_GREETING = '{"event":"connected","message":"WebSocket connected"}'


@pytest.fixture
def main() -> Iterator[AutopilotServer]:
    with AutopilotServer(step_delay=0.02, email_steps=3) as server:
        yield server


@pytest.fixture
def dag() -> Iterator[AutopilotServer]:
    with AutopilotServer(app="dag-updates", step_delay=0.02) as server:
        yield server


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def post_json(url: str, obj: Any) -> tuple[int, Any]:
    return http("POST", url, json.dumps(obj).encode(), {"Content-Type": "application/json"})


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/pdf\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, ping_interval=None, open_timeout=10)


async def frames_until(ws: ClientConnection, last: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """JSON frames received up to and including the first whose event is ``last``."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            out.append(frame)
            if frame.get("event") == last:
                return out


async def nothing_pending(ws: ClientConnection) -> bool:
    """True if the server sent nothing before answering a WebSocket ping now.

    Frames go out in order on one connection, so anything sent before the pong is already queued
    here when the pong arrives: the short recv() below finds it at once if it exists.
    """
    await asyncio.wait_for(await ws.ping(), 10)
    try:
        await asyncio.wait_for(ws.recv(), 0.05)
    except TimeoutError:
        return True
    return False


@pytest.fixture
async def client(main: AutopilotServer) -> AsyncIterator[ClientConnection]:
    ws = await open_ws(main.url)
    assert await ws.recv() == MAIN_GREETING
    yield ws
    await ws.close()


def naive_iso(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is None, value
    return parsed


# -- /ws (dialect "autopilot") -------------------------------------------------------------------
async def test_main_greeting_is_byte_exact_and_json_frames_get_no_answer(main: AutopilotServer) -> None:
    ws = await open_ws(main.url)
    assert await ws.recv() == MAIN_GREETING
    for frame in ({"event": "auth", "data": {"token": "t"}}, {"event": "subscribe", "data": {"types": ["dags"]}},
                  {"event": "subscribe_dag_run", "data": {"run_id": "x"}}, {"event": "ping", "data": {}}):
        await ws.send(json.dumps(frame))
    await ws.send("PING")
    await ws.send("ping")
    assert await ws.recv() == "pong"  # frames are handled in order: nothing came for the ones before
    assert await nothing_pending(ws)
    assert main.text_frames()[-2:] == ["PING", "ping"]
    assert main.binary_count() == 0
    await ws.close()


async def test_main_broadcasts_a_sample_run_to_every_connection_with_naive_timestamps(
        main: AutopilotServer, client: ClientConnection) -> None:
    other = await open_ws(main.url)
    assert await other.recv() == MAIN_GREETING
    await other.send(json.dumps({"event": "subscribe", "data": {"types": ["agents"]}}))  # filters nothing
    status, body = http("POST", f"{main.http_url}/api/test/create-sample-workflow")
    assert status == 200
    assert body["status"] == "created" and body["step_count"] == 2 and body["steps"] is None
    assert list(body) == ["id", "workflow_name", "workflow_version", "status", "started_at", "completed_at",
                          "duration_ms", "step_count", "steps", "failed_step", "errors", "execution_order"]
    run_id = body["id"]
    for ws in (client, other):
        frames = await frames_until(ws, "dag.run.completed")
        created = frames[0]
        assert list(created) == ["event", "data", "timestamp"]
        assert created["data"] == {"run_id": run_id, "workflow_name": "test-integration-workflow",
                                   "status": "created", "message": "Test workflow created for integration testing"}
        for frame in frames:
            naive_iso(frame["timestamp"])
        updates = [f["data"] for f in frames if f["event"] == "dag.step.status.updated"]
        assert len(updates) == 2 * len(SAMPLE_STEPS)
        assert list(updates[-1]["steps"]) == list(SAMPLE_STEPS)
        assert set(updates[-1]["steps"][SAMPLE_STEPS[0]]) == {"status", "started_at", "completed_at",
                                                               "retry_count", "error"}
        assert [u["steps"][SAMPLE_STEPS[0]]["status"] for u in updates[:2]] == ["running", "success"]
        assert frames[-1]["data"] == {"run_id": run_id, "status": "success", "error": None}
    status, run = http("GET", f"{main.http_url}/api/dag-runs/{run_id}")
    assert status == 200 and run["status"] == "success" and run["duration_ms"] == 1000
    assert [s["id"] for s in run["steps"]] == list(SAMPLE_STEPS) == run["execution_order"]
    assert run["steps"][0] == {"id": "analyze_text", "name": "analyze_text", "status": "success", "duration_ms": 0,
                               "error": None, "timestamp": run["steps"][0]["timestamp"]}
    naive_iso(run["steps"][0]["timestamp"])
    status, listed = http("GET", f"{main.http_url}/api/dag-runs?limit=5")
    assert status == 200 and listed["total"] == 1 and (listed["limit"], listed["offset"]) == (5, 0)
    assert listed["items"][0]["id"] == run_id and listed["items"][0]["step_count"] == 0
    assert http("GET", f"{main.http_url}/api/dag-runs?status=failed")[1]["items"] == []
    assert http("GET", f"{main.http_url}/api/dag-runs?limit=0")[0] == 422
    # the workflows router reads another store, empty here, and 404s the sample run
    assert http("GET", f"{main.http_url}/api/workflows/dag-runs")[1] == {"items": [], "total": 0, "limit": 20,
                                                                       "offset": 0}
    assert http("GET", f"{main.http_url}/api/workflows/dag-runs/{run_id}") == (404, {"detail": "Run not found"})
    await other.close()


async def test_main_binary_frame_makes_a_silent_zombie(main: AutopilotServer, client: ClientConnection) -> None:
    zombie = await open_ws(main.url)
    assert await zombie.recv() == MAIN_GREETING
    await zombie.send(b"\x01\x02")
    main.wait_until(lambda: main.zombie_count() == 1)
    assert main.binary_count() == 1
    main.broadcast("dag.run.created", {"run_id": "r1", "workflow_name": "w", "status": "created"})
    assert json.loads(await client.recv())["data"]["run_id"] == "r1"
    await zombie.send("ping")
    assert await nothing_pending(zombie)  # still open, answers WebSocket pings, sends nothing
    main.broadcast("dag.run.created", {"run_id": "r2", "workflow_name": "w", "status": "created"})
    assert not await nothing_pending(client)  # the check sees a frame that did come
    assert main.live_count() == 1
    status, health = http("GET", f"{main.http_url}/health")
    assert status == 200 and health["connected_clients"] == 1 and set(health) == {
        "status", "timestamp", "active_runs", "connected_clients"}
    main.stop()  # a stop closes even the zombie, with 1012
    for ws in (zombie, client):
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 1012


async def test_main_restart_closes_with_1012_and_listens_on_the_same_port(
        main: AutopilotServer, client: ClientConnection) -> None:
    port = main.port
    run_id = main.create_run(announce=False)
    main.restart(downtime=0.1)
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert client.close_code == 1012 and main.restarts == 1 and main.port == port
    again = await open_ws(main.url)
    assert await again.recv() == MAIN_GREETING
    assert http("GET", f"{main.http_url}/api/dag-runs/{run_id}")[0] == 200  # runs outlive the restart
    assert len(main.connections) == 2
    await again.close()


async def test_main_unknown_paths_refuse_the_handshake_and_missing_routes_404(main: AutopilotServer) -> None:
    for path in ("/nope", "/ws/dag-updates", "/health"):
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(f"ws://127.0.0.1:{main.port}{path}")
        assert refused.value.response.status_code == 403, path
    for path in ("/api/analytics/dashboard", "/api/agents", "/api/analytics/insights",
                 "/api/knowledge/search?q=x", "/api/workflows/from-url"):
        assert http("GET", main.http_url + path) == (404, {"detail": "Not Found"}), path
    assert http("POST", f"{main.http_url}/api/workflows/from-url") == (404, {"detail": "Not Found"})
    assert http("POST", f"{main.http_url}/api/workflows/workflows/from-url") == (
        200, {"message": "URL ingestion not implemented"})
    status, body = post_json(f"{main.http_url}/api/dag-runs", {"workflow_path": "x"})
    assert status == 500 and "WorkflowLoader" in body["detail"]
    assert http("GET", f"{main.http_url}/api/dag-runs/nope") == (404, {"detail": "DAG run nope not found"})
    status, metrics = http("GET", f"{main.http_url}/metrics")
    assert status == 200 and set(metrics) == {"timestamp", "api_metrics", "dag_metrics", "websocket_metrics"}
    assert metrics["api_metrics"]["endpoints"]["GET /api/agents"] == {
        "count": 1, "total_time": metrics["api_metrics"]["endpoints"]["GET /api/agents"]["total_time"], "errors": 1}


async def test_main_email_job_as_the_real_app_ends_it(main: AutopilotServer, client: ClientConnection) -> None:
    pdf = b"%PDF-1.4\n" + b"0" * 391
    email: dict[str, Any] = {
        "subject": "Q3 report", "sender": "alice@example.com", "body": "see attached",
        "attachments": [{"name": "q3.pdf", "content": "JVBERi0xLjQKMDAw", "content_type": "application/pdf"}]}
    assert post_json(f"{main.http_url}/api/process-email", dict(email, attachments=[])) == (
        400, {"detail": "No PDF attachment found in email"})
    assert post_json(f"{main.http_url}/api/process-email", {"sender": "a"})[0] == 422
    email["attachments"][0]["content"] = base64.b64encode(pdf).decode()
    status, body = post_json(f"{main.http_url}/api/process-email", email)
    assert status == 200 and body["status"] == "processing" and body["run_id"].startswith("email-")
    assert body == {"run_id": body["run_id"], "status": "processing", "message": "Processing PDF 'q3.pdf' from email",
                    "summary": None, "processing_time_ms": None}
    frames = await frames_until(client, "email.processing.error")
    assert [f["event"] for f in frames] == ["email.processing.started"] + ["email.processing.progress"] * 3 + [
        "email.processing.error"]
    assert frames[0]["data"] == {"run_id": body["run_id"], "subject": "Q3 report", "sender": "alice@example.com",
                                 "pdf_name": "q3.pdf", "pdf_size": 400}
    assert [f["data"]["progress"] for f in frames[1:4]] == ["1/3 steps", "2/3 steps", "3/3 steps"]
    assert frames[-1]["data"] == {"run_id": body["run_id"], "error": "Invalid isoformat string: 'Q3 report'",
                                  "email_subject": "Q3 report"}
    status, job = http("GET", f"{main.http_url}/api/email-status/{body['run_id']}")
    assert status == 200 and set(job) == {"run_id", "status", "message", "summary", "processing_time_ms"}
    # a subject that parses as an ISO date gets .completed, as on the real app
    status, body = post_json(f"{main.http_url}/api/process-email", dict(email, subject="2026-12-06T04:00:00"))
    completed = (await frames_until(client, "email.processing.completed"))[-1]["data"]
    assert set(completed) == {"run_id", "status", "summary", "processing_time_ms", "email_subject", "workflow_url"}
    assert completed["workflow_url"].startswith("/api/dag-runs/")
    run_id = main.run_email("Board pack", outcome="completed", steps=5)
    frames = await frames_until(client, "email.processing.completed")
    assert frames[0]["data"]["run_id"] == run_id and frames[2]["data"]["progress"] == "2/5 steps"
    assert http("GET", f"{main.http_url}/api/email-status/nope")[0] == 404


async def test_main_upload_progresses_to_its_end_at_dag_runs(main: AutopilotServer, client: ClientConnection) -> None:
    body, headers = multipart("file", "up.pdf", b"%PDF-1.4\n")
    status, answer = http("POST", f"{main.http_url}/api/workflows/upload-pdf", body, headers)
    assert status == 200 and answer == {"run_id": answer["run_id"], "status": "started"}
    frames = await frames_until(client, "dag.run.completed")
    assert frames[0]["event"] == "dag.run.created" and frames[0]["data"]["workflow_name"] == "PDF Ingestion and Digest"
    main.wait_until(lambda: http("GET", f"{main.http_url}/api/dag-runs/{answer['run_id']}")[1]["status"] == "success")
    run = http("GET", f"{main.http_url}/api/dag-runs/{answer['run_id']}")[1]
    assert [s["id"] for s in run["steps"]] == list(UPLOAD_STEPS)
    wrong, headers = multipart("pdf", "up.pdf", b"%PDF")
    assert http("POST", f"{main.http_url}/api/workflows/upload-pdf", wrong, headers)[0] == 422


async def test_main_advance_step_by_step_retry_failure_and_cancel(main: AutopilotServer,
                                                                  client: ClientConnection) -> None:
    run_id = main.create_run("nightly", ("extract", "load"))
    assert json.loads(await client.recv())["data"] == {"run_id": run_id, "workflow_name": "nightly",
                                                       "status": "created"}
    assert main.advance(run_id) == "running"
    assert main.advance(run_id, "retry") == "running"
    main.advance(run_id)  # the retried step runs again
    assert main.advance(run_id, "failed", "disk full") == "failed"
    frames = await frames_until(client, "dag.run.completed")
    steps = [f["data"]["steps"] for f in frames if f["event"] == "dag.step.status.updated"]
    assert [s["extract"]["status"] for s in steps] == ["running", "retry", "running", "failed"]
    assert steps[1]["extract"]["retry_count"] == 1 and steps[-1]["extract"]["error"] == "disk full"
    assert steps[-1]["load"]["status"] == "skipped"
    assert frames[-1]["data"] == {"run_id": run_id, "status": "failed", "error": None}
    assert main.run(run_id)["steps"]["load"]["metadata"]["skip_reason"] == "Skipped due to failure of extract"
    with pytest.raises(ValueError, match="has ended"):
        main.advance(run_id)

    other = main.create_run("nightly", ("extract",), announce=False)
    main.advance(other)
    await frames_until(client, "dag.step.status.updated")
    status, answer = http("PATCH", f"{main.http_url}/api/dag-runs/{other}/status",
                          json.dumps({"status": "cancelled", "message": "by test"}).encode(),
                          {"Content-Type": "application/json"})
    assert (status, answer) == (200, {"status": "cancelled", "message": "Workflow cancelled"})
    cancelled = json.loads(await client.recv())
    assert cancelled["event"] == "dag.run.status.updated"
    assert cancelled["data"] == {"run_id": other, "status": "cancelled", "message": "by test"}
    assert main.run_to_end(main.create_run(announce=False), fail_step=SAMPLE_STEPS[1]) == "failed"


# -- /ws/dag-updates (dialect "autopilot-dag-updates") ------------------------------------------------
async def test_dag_updates_greeting_subscribe_and_error(dag: AutopilotServer) -> None:
    ws = await open_ws(dag.url)
    assert await ws.recv() == DAG_GREETING
    await ws.send(json.dumps({"action": "subscribe", "run_id": "nope"}))
    assert await ws.recv() == '{"event":"error","message":"DAG run nope not found"}'
    run_id = dag.create_run("Simple Test Workflow", ("test_step",))
    await ws.send(json.dumps({"event": "auth", "data": {"token": "t"}}))  # ignored
    await ws.send(json.dumps({"action": "subscribe", "run_id": run_id}))
    answer = json.loads(await ws.recv())
    assert list(answer) == ["event", "run_id", "data"] and answer["event"] == "dag_run_status"
    assert answer["run_id"] == run_id and answer["data"] == dag.run(run_id)
    assert list(answer["data"]) == ["dag_id", "run_id", "status", "steps", "start_time", "end_time",
                                    "total_retries", "error", "metadata", "duration_seconds"]
    assert list(answer["data"]["steps"]["test_step"]) == [
        "step_id", "status", "start_time", "end_time", "retry_count", "max_retries", "error", "result",
        "metadata", "duration_seconds"]
    assert dag.subscribes() == ["nope", run_id]
    status, body = http("GET", f"{dag.http_url}/api/workflows/dag-runs/{run_id}")
    assert status == 200 and body == answer["data"]
    assert http("GET", f"{dag.http_url}/api/workflows/dag-runs")[1]["items"][0]["id"] == run_id
    await ws.close()


async def test_dag_updates_broadcasts_carry_a_monotonic_clock(dag: AutopilotServer) -> None:
    ws = await open_ws(dag.url)
    assert await ws.recv() == DAG_GREETING
    run_id = dag.create_run(auto=True)
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["data"]["status"] != "success":
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    for frame in frames:
        assert list(frame) == ["event", "run_id", "data", "timestamp"] and frame["run_id"] == run_id
        assert isinstance(frame["timestamp"], float)
        assert frame["timestamp"] <= time.monotonic() and frame["timestamp"] < 1e9  # not an epoch
    assert [f["timestamp"] for f in frames] == sorted(f["timestamp"] for f in frames)
    assert frames[-1]["data"]["steps"][SAMPLE_STEPS[1]]["status"] == "success"
    await ws.close()


async def test_dag_updates_text_ping_or_binary_leaves_a_zombie(dag: AutopilotServer) -> None:
    run_id = dag.create_run()
    subscribe = json.dumps({"action": "subscribe", "run_id": run_id})
    for poison in ("ping", b"\x00", '"str"'):
        ws = await open_ws(dag.url)
        assert await ws.recv() == DAG_GREETING
        await ws.send(poison)
        await ws.send(subscribe)
        assert await nothing_pending(ws), poison
        await ws.close()
    assert dag.binary_count() == 1 and dag.text_frames().count("ping") == 1


async def test_dag_updates_keepalive_routes_and_refused_paths() -> None:
    with AutopilotServer(app="dag-updates", keepalive=0.05) as server:
        ws = await open_ws(server.url)
        assert await ws.recv() == DAG_GREETING
        assert await asyncio.wait_for(ws.recv(), 10) == '{"event":"ping"}'
        await ws.close()
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(f"ws://127.0.0.1:{server.port}/ws")
        assert refused.value.response.status_code == 403
        for path in ("/health", "/metrics", "/api/dag-runs", "/api/agents"):
            assert http("GET", server.http_url + path) == (404, {"detail": "Not Found"}), path
        body, headers = multipart("file", "up.pdf", b"%PDF")
        status, answer = http("POST", f"{server.http_url}/api/workflows/upload-pdf", body, headers)
        assert status == 200
        server.wait_until(lambda: server.run(answer["run_id"])["status"] == "success")


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="app must be"):
        AutopilotServer(app="other")
    with pytest.raises(ValueError, match="email_outcome"):
        AutopilotServer(email_outcome="maybe")
