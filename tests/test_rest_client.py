"""The client's REST side against the reference server: snapshots on connect and after a gap,
upload -> watch to completion and to failure, lookups, and every bad input."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import APIError, AuthError, ConfigurationError, UploadError
from aios_notebook.protocol.codec import parse_timestamp
from aios_notebook.rest import RunState
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def start_sim() -> Iterator[Callable[..., Simulator]]:
    started: list[Simulator] = []

    def start(**options: Any) -> Simulator:
        sim = Simulator(**options).start_in_thread()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def start_client() -> Iterator[Callable[..., AIOSClient]]:
    clients: list[AIOSClient] = []

    def start(sim: Simulator, token: str | None = None, **options: Any) -> AIOSClient:
        client = AIOSClient(sim.url, token or sim.token, store=options.pop("store", None) or EventStore(),
                            reconnect_delay=0.05, max_reconnect_delay=0.2, **options)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.stop()


@pytest.fixture
def pdfs(tmp_path: Path) -> list[Path]:
    paths = []
    for number in range(6):
        path = tmp_path / f"report_{number}.pdf"
        path.write_bytes(b"%PDF-1.4\n" + bytes([number]) * 2000)
        paths.append(path)
    return paths


def snapshot_errors(store: EventStore) -> list[str]:
    errors = store.errors
    return list(errors[errors["kind"] == "snapshot"]["message"])


def test_connect_after_an_hour_fills_the_store_before_the_first_event(start_sim, start_client) -> None:
    # a weekday afternoon, not now: at night the hour may end with no DAG run in flight
    sim = start_sim(seed=3, speed=60, warmup=3600.0, start="2026-01-06T13:00:00Z")
    client = start_client(sim)
    store = client.store
    at_first_frame: list[dict[str, Any]] = []

    def first_frame(frame: Any, received_at: datetime) -> None:
        if not at_first_frame:  # runs on the I/O thread, before the frame reaches the store
            runs = store.dag_runs
            running = runs[runs["status"] == "running"]
            at_first_frame.append({
                "agents": store.agents, "running": running, "steps": store.dag_steps,
                "metrics": store.metrics, "knowledge": len(store.knowledge), "events": len(store.job_events)})

    client.add_frame_listener(first_frame)
    client.start()
    client.wait_for(lambda s: at_first_frame and len(s.job_events) > 0, 30)
    state = at_first_frame[0]
    assert state["events"] == 0  # nothing had come over the WebSocket yet
    assert len(state["agents"]) == 8 and state["agents"]["snapshot"].all()
    assert state["agents"]["tasks_completed"].sum() > 0  # an hour of work shows
    assert len(state["running"]) > 0 and state["running"]["snapshot"].all()
    for run_id, total in zip(state["running"]["run_id"], state["running"]["total_steps"], strict=True):
        assert (state["steps"]["run_id"] == run_id).sum() == total
    (kpis,) = state["metrics"].to_dict("records")
    assert kpis["total_processed"] > 0 and bool(kpis["snapshot"]) and 0 < kpis["success_rate"] <= 100
    assert state["knowledge"] > 0
    assert client.last_snapshot is not None and snapshot_errors(store) == []
    # the live stream then takes over the same tables
    client.wait_for(lambda s: (~s.agents["snapshot"].fillna(True)).any(), 30)


def test_a_gap_the_server_could_not_fill_is_followed_by_a_snapshot(start_sim, start_client) -> None:
    sim = start_sim(seed=5, speed=120, warmup=600.0, replay_buffer=50)
    client = start_client(sim)
    client.start()
    client.wait_for(lambda s: client.last_snapshot is not None and len(s.job_events) > 5, 30)
    first = client.last_snapshot
    client.stop()
    # while we are away the server moves on by far more than its 50-event replay buffer
    seen = sim.hub.seq
    deadline = time.monotonic() + 30
    while sim.hub.seq < seen + 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.hub.seq >= seen + 500
    client.start()
    client.wait_for(lambda s: not s.gaps.empty, 30)
    gaps = client.store.gaps
    assert "resync incomplete" in gaps["reason"].iloc[0]
    gap_start = gaps["start"].iloc[0]
    # a snapshot taken after the gap refreshes the state the replay could not
    latest = client.wait_for(
        lambda s: client.last_snapshot if client.last_snapshot.at > first.at else None, 30)
    assert latest.at >= gap_start
    agents = client.store.agents
    refreshed = agents[agents["snapshot"].fillna(False).astype(bool)]
    assert (refreshed["updated_at"] > first.at).all()  # no agent row still dated before the gap
    assert snapshot_errors(client.store) == []


def watch_all(client: AIOSClient, results: list[Any], **options: Any) -> list[RunState]:
    watches = [client.watch(result.run_id, interval=0.1, **options) for result in results]
    return [watch.wait(60) for watch in watches]


def test_upload_then_watch_to_completion(start_sim, start_client, pdfs, capsys) -> None:
    sim = start_sim(seed=2, speed=120, warmup=600.0)
    client = start_client(sim).start()
    assert client.wait_connected(10)
    results = [client.upload(path, generate_summary=True) for path in pdfs[:3]]
    assert all(r.job_id and r.run_id and r.status == "queued" for r in results)
    states = watch_all(client, results, display="text")
    assert all(state.done for state in states)
    completed = [s for s in states if s.ok]
    assert completed, [s.line() for s in states]  # ~3 % of steady jobs fail: all three failing is ~3e-5
    for state in completed:
        assert state.progress == 100.0 and state.error is None
    err = capsys.readouterr().err
    assert f"{completed[0].run_id}  completed  100%" in err
    # the same jobs reached the store over the WebSocket
    done_ids = {s.job_id for s in completed}
    client.wait_for(lambda s: done_ids <= set(s.jobs[s.jobs["status"] == "completed"]["job_id"]), 30)


def test_upload_then_watch_to_failure(start_sim, start_client, pdfs, capsys) -> None:
    # three simulated hours in, the first failure_burst window (30 simulated minutes) is open:
    # each step fails with p=0.3, so ~80 % of jobs fail
    sim = start_sim(seed=4, speed=120, scenario="failure_burst", warmup=3 * 3600.0 + 60)
    window = sim.labels[0]
    assert parse_timestamp(window["start"]).timestamp() <= sim.now < parse_timestamp(window["end"]).timestamp()
    client = start_client(sim).start()
    assert client.wait_connected(10)
    results = [client.upload(path) for path in pdfs]
    states = watch_all(client, results, display="text")
    assert all(state.done for state in states)
    failed = [s for s in states if s.status == "failed"]
    assert failed, [s.line() for s in states]  # all six succeeding is ~1e-4
    for state in failed:
        assert state.error and state.current_step
    err = capsys.readouterr().err
    assert f"{failed[0].run_id}  failed at {failed[0].current_step}: {failed[0].error}" in err


def test_lookups_through_the_client(start_sim, start_client, pdfs) -> None:
    sim = start_sim(seed=6, speed=60, warmup=3600.0)
    client = start_client(sim)
    # before start(): the calls run on a loop of their own
    found = client.search_knowledge(limit=5)
    assert 0 < len(found) <= 5 and "title" in found.columns
    result = client.submit_url("https://example.com/post", generate_summary=True)
    run = client.get_dag_run(result.run_id)
    assert (run["run_id"], run["job_id"], run["type"]) == (result.run_id, result.job_id, "url")
    client.start()
    assert client.wait_connected(10)
    run = client.get_dag_run(result.run_id)  # and on the I/O loop once it runs
    assert run["steps"][0]["step_id"] == "fetch"
    snapshot = client.refresh()
    assert snapshot.counts()["agents"] == 8 and client.last_snapshot is snapshot
    with pytest.raises(APIError) as caught:
        client.get_dag_run("manual__1999-01-01T00:00:00+00:00")
    assert caught.value.status == 404 and "no DAG run" in str(caught.value)


def test_bad_input_fails_before_any_request(start_client, tmp_path, pdfs) -> None:
    # the REST URL is a port nobody listens on: a request would give an APIError, never these
    class Nowhere:
        url = "ws://127.0.0.1:9/ws"
        token = "tok-12345"

    client = start_client(Nowhere, rest_url="http://127.0.0.1:9")
    with pytest.raises(UploadError, match=str(tmp_path / "missing.pdf")):
        client.upload(tmp_path / "missing.pdf")
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    with pytest.raises(UploadError, match=r"pass kind='pdf' or kind='audio'; accepted extensions are pdf: \.pdf, audio: "):
        client.upload(odd)
    with pytest.raises(UploadError, match="accepted kinds are pdf, audio"):
        client.upload(odd, kind="text")
    with pytest.raises(UploadError, match="does not take option"):
        client.upload(pdfs[0], summarize=True)
    with pytest.raises(UploadError, match="submit_url needs an http"):
        client.submit_url("file:///etc/passwd")
    with pytest.raises(ConfigurationError, match="limit"):
        client.search_knowledge(limit=0)
    with pytest.raises(ConfigurationError, match="run_id"):
        client.get_dag_run("")
    with pytest.raises(ConfigurationError, match="watch needs a running client"):
        client.watch("run-1")
    with pytest.raises(ConfigurationError, match="rest_url must be an http"):
        AIOSClient("ws://127.0.0.1:9/ws", "tok-12345", rest_url="ftp://127.0.0.1:9")
    # and the same good upload does make a request, which fails as an APIError
    with pytest.raises(APIError, match=r"POST /api/workflows/upload-pdf failed: cannot connect"):
        client.upload(pdfs[0])


def test_wrong_token_over_rest_is_an_auth_error(start_sim, start_client, pdfs) -> None:
    sim = start_sim(seed=8, speed=60)
    wrong = "not-the-right-token-1234"
    client = start_client(sim, token=wrong)
    for call in (lambda: client.upload(pdfs[0]), lambda: client.get_dag_run("x"),
                 lambda: client.search_knowledge()):
        with pytest.raises(AuthError) as caught:
            call()
        assert "answered 401" in str(caught.value)
        assert wrong not in str(caught.value) and sim.token not in str(caught.value)


@pytest.fixture
def failing_rest() -> Iterator[str]:
    """A REST API on 127.0.0.1 whose every endpoint answers 500, in a thread of its own."""
    import asyncio
    import threading

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"message": "database is down"}, status=500)

    ready = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", broken)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        holder.update(loop=loop, url=f"http://127.0.0.1:{runner.addresses[0][1]}", runner=runner)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(10)
    yield holder["url"]
    holder["loop"].call_soon_threadsafe(holder["loop"].stop)
    thread.join(10)


def test_a_failing_snapshot_is_one_error_row_and_the_stream_goes_on(start_sim, start_client, failing_rest) -> None:
    sim = start_sim(seed=9, speed=120, warmup=600.0)
    client = start_client(sim, rest_url=failing_rest, snapshot_wait=0.5)
    client.start()
    rows = client.wait_for(lambda s: snapshot_errors(s), 30)
    events = len(client.store.job_events)
    client.wait_for(lambda s: len(s.job_events) > events + 20, 30)  # the stream is untouched
    assert client.stats.reconnects == 0
    rows = snapshot_errors(client.store)
    assert len(rows) == 1, rows
    assert "snapshot on connect failed" in rows[0] and "answered 500: database is down" in rows[0]
    assert sim.token not in rows[0]
    assert client.last_snapshot is None and client.store.agents["snapshot"].sum() == 0
