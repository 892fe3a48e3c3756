"""Snapshots, lookups and uploads against the reference server (REST on 127.0.0.1), and the merge rule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from aios_notebook.exceptions import APIError, AuthError, ConfigurationError
from aios_notebook.protocol.codec import format_timestamp, parse_timestamp
from aios_notebook.rest import (
    RestClient,
    fetch_snapshot,
    get_dag_run,
    merge_into,
    prepare_upload,
    prepare_url,
    search_knowledge,
    submit_url,
    upload,
)
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    # an hour of simulated history before serving, then (nearly) frozen: the state holds still
    # while a test compares what REST says with what the snapshot holds. A fixed weekday afternoon,
    # not the default (now): at night and on weekends the workload is quiet enough (x0.4) that no
    # DAG run may be in flight when the hour ends, and these tests failed at 00:20 UTC on a Monday
    async with Simulator(seed=11, speed=1e-6, warmup=3600.0, max_upload_bytes=4096,
                         start="2026-01-06T13:00:00Z") as server:
        yield server


@pytest.fixture
async def rest(sim: Simulator) -> AsyncIterator[RestClient]:
    async with RestClient(sim.http_url, sim.token) as client:
        yield client


async def test_snapshot_holds_the_current_state(sim: Simulator, rest: RestClient) -> None:
    before = parse_timestamp((await rest.get("/api/analytics/dashboard"))["server_time"])
    snapshot = await fetch_snapshot(rest)
    assert snapshot.problems == []
    dashboard = await rest.get("/api/analytics/dashboard")
    # dated by the server's (simulated) clock, read during the fetch
    assert before <= snapshot.at <= parse_timestamp(dashboard["server_time"])

    agents = (await rest.get("/api/agents"))["items"]
    assert {a["agent_id"] for a in agents} == {r["agent_id"] for r in snapshot.records["agents"]}
    assert len(agents) == 8

    running = (await rest.get("/api/workflows/dag-runs", {"status": "running", "limit": 1000}))["items"]
    assert running, "an hour of steady load leaves runs in flight"
    runs = {r["run_id"]: r for r in snapshot.records["dag_runs"]}
    steps = snapshot.records["dag_steps"]
    for run in running:
        assert runs[run["run_id"]]["status"] == "running"
        run_steps = [s for s in steps if s["run_id"] == run["run_id"]]
        assert len(run_steps) == run["total_steps"]  # the steps of every running run

    (metrics,) = snapshot.records["metrics"]
    assert metrics["total_processed"] == dashboard["total_processed"] > 0
    assert snapshot.records["knowledge"] and snapshot.records["insights"]

    store = EventStore()
    merged = merge_into(store, snapshot)
    assert merged["agents"] == 8 and merged["metrics"] == 1
    assert len(store.agents) == 8 and store.agents["snapshot"].all()
    in_flight = store.dag_runs[store.dag_runs["status"] == "running"]
    assert set(in_flight["run_id"]) == {r["run_id"] for r in running}
    assert len(store.metrics) == 1 and bool(store.metrics["snapshot"].iloc[0])
    assert len(store.dag_steps) == len(steps) and len(store.knowledge) == len(snapshot.records["knowledge"])
    assert store.errors.empty


def agent_event(agent_id: str, status: str, when: object) -> str:
    return json.dumps({"event": "agent_status_update", "data": {
        "agent_id": agent_id, "name": "X", "type": "analysis", "status": status, "current_task": None,
        "progress": 0, "performance": {"tasks_completed": 999, "average_processing_time": 1.0,
                                       "success_rate": 50.0},
        "timestamp": format_timestamp(when)}})


def metrics_event(total: int, when: object) -> str:
    return json.dumps({"event": "dashboard_metrics_update", "data": {
        "total_processed": total, "processing_time": 2.5, "success_rate": 97.0, "active_agents": 3,
        "knowledge_items": 10, "changes": {}, "timestamp": format_timestamp(when)}})


def run_event(run_id: str, dag_id: str, status: str, when: object) -> str:
    return json.dumps({"event": "dag_run_status", "data": {
        "dag_id": dag_id, "run_id": run_id, "status": status, "started_at": format_timestamp(when),
        "timestamp": format_timestamp(when)}})


async def test_an_older_snapshot_never_overwrites_a_newer_event(rest: RestClient) -> None:
    snapshot = await fetch_snapshot(rest)
    agent = snapshot.records["agents"][0]
    run = next(r for r in snapshot.records["dag_runs"] if r["status"] == "running")
    later = snapshot.at + timedelta(minutes=1)
    store = EventStore()
    # the event happened after the snapshot was taken, but reached the store first
    store.ingest([agent_event(agent["agent_id"], "offline", later),
                  run_event(run["run_id"], run["dag_id"], "failed", later),
                  metrics_event(123_456, later)])
    merged = merge_into(store, snapshot)
    # KPIs are a history: the snapshot's older ones would only be a step back in time
    assert merged["metrics"] == 0 and list(store.metrics["total_processed"]) == [123_456]
    row = store.agents.set_index("agent_id").loc[agent["agent_id"]]
    assert (row["status"], row["tasks_completed"], bool(row["snapshot"])) == ("offline", 999, False)
    assert row["updated_at"] == later
    run_row = store.dag_runs.set_index("run_id").loc[run["run_id"]]
    assert (run_row["status"], bool(run_row["snapshot"])) == ("failed", False)
    # the other agents came from the snapshot
    others = store.agents[store.agents["agent_id"] != agent["agent_id"]]
    assert len(others) == 7 and others["snapshot"].all()


async def test_an_older_event_never_overwrites_a_newer_snapshot(rest: RestClient) -> None:
    snapshot = await fetch_snapshot(rest)
    agent = snapshot.records["agents"][0]
    run = next(r for r in snapshot.records["dag_runs"] if r["status"] == "running")
    earlier = snapshot.at - timedelta(minutes=1)
    store = EventStore()
    merge_into(store, snapshot)
    # a late event (a resync replay) from before the snapshot arrives after it
    store.ingest([agent_event(agent["agent_id"], "offline", earlier),
                  run_event(run["run_id"], run["dag_id"], "failed", earlier),
                  metrics_event(1, earlier)])
    kpis = store.metrics.sort_values("timestamp")
    assert list(kpis["total_processed"]) == [1, snapshot.records["metrics"][0]["total_processed"]]
    assert list(kpis["snapshot"]) == [False, True]
    row = store.agents.set_index("agent_id").loc[agent["agent_id"]]
    assert (row["status"], bool(row["snapshot"])) == (agent["status"], True)
    assert row["tasks_completed"] == agent["tasks_completed"]
    assert row["updated_at"] == snapshot.at
    run_row = store.dag_runs.set_index("run_id").loc[run["run_id"]]
    assert (run_row["status"], bool(run_row["snapshot"])) == ("running", True)
    assert len(store.agent_events) == 1  # the event itself is kept in the history


async def test_get_dag_run_and_unknown_run(rest: RestClient) -> None:
    listing = await rest.get("/api/workflows/dag-runs", {"status": "running", "limit": 1})
    run_id = listing["items"][0]["run_id"]
    assert ":" in run_id and "+" in run_id  # manual__2026-...T..:..:..+00:00 survives the path
    run = await get_dag_run(rest, run_id)
    assert run["run_id"] == run_id and run["steps"] and run["status"] == "running"
    with pytest.raises(APIError) as caught:
        await get_dag_run(rest, "manual__1999-01-01T00:00:00+00:00")
    assert caught.value.status == 404
    assert caught.value.endpoint.startswith("GET /api/workflows/dag-runs/manual__1999")
    assert "no DAG run" in caught.value.server_message
    with pytest.raises(ConfigurationError, match="run_id"):
        await get_dag_run(rest, "")


async def test_search_knowledge(rest: RestClient) -> None:
    everything = await search_knowledge(rest, limit=1000)
    assert len(everything) > 20
    assert list(everything.columns[:7]) == ["item_id", "title", "type", "source_job", "tags", "created_at", "updated_at"]
    assert str(everything["created_at"].dtype) == "datetime64[ns, UTC]"
    tag = everything["tags"].iloc[0][0]
    tagged = await search_knowledge(rest, tags=[tag], limit=1000)
    assert len(tagged) and all(tag in tags for tags in tagged["tags"])
    kind = everything["type"].iloc[0]
    typed = await search_knowledge(rest, type=kind, limit=5)
    assert 0 < len(typed) <= 5 and set(typed["type"]) == {kind}
    word = everything["title"].iloc[0].split()[0]
    found = await search_knowledge(rest, q=word)
    assert len(found) and found["title"].str.contains(word, case=False).any()
    nothing = await search_knowledge(rest, q="no such words anywhere at all")
    assert nothing.empty and "item_id" in nothing.columns
    for bad in (0, 5000, "10", True):
        with pytest.raises(ConfigurationError, match="limit must be an integer from 1 to 1000"):
            await search_knowledge(rest, limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tags must be strings"):
        await search_knowledge(rest, tags=[1])  # type: ignore[list-item]


async def test_wrong_token_is_an_auth_error_without_the_token(sim: Simulator) -> None:
    wrong = "definitely-not-the-token"
    async with RestClient(sim.http_url, wrong) as rest:
        with pytest.raises(AuthError) as caught:
            await fetch_snapshot(rest)
    assert "answered 401" in str(caught.value) and wrong not in str(caught.value)
    assert sim.token not in str(caught.value)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    made = {"pdf": tmp_path / "Q3 report.pdf", "audio": tmp_path / "call.mp3", "big": tmp_path / "big.pdf"}
    made["pdf"].write_bytes(b"%PDF-1.4 " * 100)
    made["audio"].write_bytes(b"ID3" * 100)
    made["big"].write_bytes(b"%PDF-1.4 " * 1000)  # over the server's 4096-byte limit
    return made


async def test_uploads_start_jobs_on_the_server(sim: Simulator, rest: RestClient, files: dict[str, Path]) -> None:
    pdf = await upload(rest, prepare_upload(files["pdf"], extract_text=True, generate_summary=True))
    audio = await upload(rest, prepare_upload(files["audio"], transcribe=True))
    page = await submit_url(rest, prepare_url("https://example.com/article", full_content=True))
    for result, kind in ((pdf, "pdf"), (audio, "audio"), (page, "url")):
        assert result.job_id and result.run_id and result.status == "queued" and result.kind == kind
        run = await get_dag_run(rest, result.run_id)
        assert (run["job_id"], run["type"]) == (result.job_id, kind)
    assert pdf.source == "Q3 report.pdf"


async def test_server_refusals_name_endpoint_status_and_message(rest: RestClient, files: dict[str, Path]) -> None:
    with pytest.raises(APIError) as caught:
        await upload(rest, prepare_upload(files["big"]))
    error = caught.value
    assert (error.endpoint, error.status) == ("POST /api/workflows/upload-pdf", 413)
    assert "uploads are limited to 4096 bytes" in str(error)
