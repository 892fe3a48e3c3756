"""Every row of PROTOCOL_NOTES.md's lifecycle, subscription and error tables, over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from server_wire import WireClient, close_code

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator
from aios_notebook.server.workload import DEFAULT_START

pytestmark = pytest.mark.timeout(60)

ALL_TYPES = list(SUBSCRIPTION_TYPES)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(seed=3, speed=1500, start=DEFAULT_START, heartbeat=0.3, auth_timeout=1.0,
                         warmup=1800) as server:
        yield server


async def stream_for(client: WireClient, sim: Simulator, simulated_seconds: float) -> list[dict]:
    """The stream frames the client gets over the next ``simulated_seconds``, from the moment the
    server has handled everything it sent so far (frames queued before that are read and dropped)."""
    await client.sync()
    until = sim.now + simulated_seconds
    while sim.now < until:  # noqa: ASYNC110 - polling the simulated clock, which has no event
        await asyncio.sleep(0.05)
    return [f for f in await client.sync() if "seq" in f]


# -- lifecycle ------------------------------------------------------------------------------------
async def test_connected_carries_client_id_server_time_and_capabilities(sim: Simulator) -> None:
    client = await WireClient.open(sim, auth=False)
    data = client.connected["data"]
    assert data["client_id"].startswith("client-") and data["server_time"].endswith("Z")
    assert data["protocol"] == "aios-v2"
    assert data["capabilities"] == ["seq", "resync", "pong"]
    assert data["heartbeat_interval"] == 0.3
    assert "seq" not in client.connected


async def test_messages_before_auth_get_not_authenticated_and_are_ignored(sim: Simulator) -> None:
    client = await WireClient.open(sim, auth=False)
    await client.send("subscribe", {"types": ALL_TYPES})
    reply = await client.until(lambda m: m["event"] == "error")
    assert reply["data"]["code"] == "not_authenticated" and "seq" not in reply
    await client.send("auth", {"token": sim.token})
    await client.until(lambda m: m["event"] == "authenticated")
    frames = await stream_for(client, sim, 600)
    # the subscribe sent before auth was dropped: only the stream's processing errors arrive
    assert all(f["event"] == "error" for f in frames)


async def test_no_auth_in_time_gets_auth_timeout_then_4408(sim: Simulator) -> None:
    client = await WireClient.open(sim, auth=False)
    reply = await client.until(lambda m: m["event"] == "error")
    assert reply["data"]["code"] == "auth_timeout"
    assert await close_code(client) == 4408


async def test_wrong_token_gets_auth_failed_then_4401_and_never_data(sim: Simulator) -> None:
    client = await WireClient.open(sim, auth=False)
    await client.send("auth", {"token": sim.token + "x"})
    assert await close_code(client) == 4401
    assert [f["event"] for f in client.frames] == ["connected", "error"]
    assert client.frames[1]["data"]["code"] == "auth_failed"
    assert sim.token not in json.dumps(client.frames)


async def test_right_token_gets_authenticated_with_the_client_id(sim: Simulator) -> None:
    client = await WireClient.open(sim, auth=False)
    await client.send("auth", {"token": sim.token})
    reply = await client.until(lambda m: m["event"] == "authenticated")
    assert reply["data"]["client_id"] == client.connected["data"]["client_id"]
    assert reply["data"]["timestamp"].endswith("Z") and "seq" not in reply


async def test_pings_every_heartbeat_and_pongs_are_accepted(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    pings = [await client.until(lambda m: m["event"] == "ping") for _ in range(3)]
    assert all("seq" not in p and p["data"]["timestamp"].endswith("Z") for p in pings)
    await client.send("pong", {"timestamp": pings[-1]["data"]["timestamp"]})
    answered = await client.sync()
    assert not [f for f in answered if f["event"] == "error" and "seq" not in f]


async def test_shutdown_sends_server_shutdown_then_1001() -> None:
    server = Simulator(speed=60, start=DEFAULT_START)
    await server.start()
    client = await WireClient.open(server)
    await client.send("subscribe", {"types": ALL_TYPES})
    await client.sync()
    closing = asyncio.create_task(close_code(client))
    await server.close()
    assert await closing == 1001
    assert client.frames[-1]["event"] == "connection_error"
    assert client.frames[-1]["data"]["code"] == "server_shutdown"


# -- subscriptions --------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_TYPES)
async def test_each_type_delivers_exactly_its_events(sim: Simulator, kind: str) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": [kind]})
    frames = await stream_for(client, sim, 1800)
    names = {f["event"] for f in frames}
    assert names - {"error"} <= set(SUBSCRIPTION_TYPES[kind])
    assert names & set(SUBSCRIPTION_TYPES[kind])


async def test_subscribe_adds_types_and_unsubscribe_removes_them(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["agents"]})
    await client.send("subscribe", {"types": ["dags"]})
    both = {f["event"] for f in await stream_for(client, sim, 600)}
    assert "agent_status_update" in both and "step_status" in both
    await client.send("unsubscribe", {"types": ["agents"]})
    after = {f["event"] for f in await stream_for(client, sim, 600)}
    assert "step_status" in after and not after & set(SUBSCRIPTION_TYPES["agents"])


async def test_filters_given_with_a_subscribe_replace_those_of_its_types(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["agents"], "filters": {"agent_ids": ["content_mind_01"]}})

    async def agents_seen() -> set[str]:  # (the stream's processing errors reach everyone)
        return {f["data"]["agent_id"] for f in await stream_for(client, sim, 900) if f["event"] != "error"}

    first = await agents_seen()
    await client.send("subscribe", {"types": ["agents"], "filters": {"agent_ids": ["indexer_07"]}})
    second = await agents_seen()
    assert first == {"content_mind_01"}
    assert second == {"indexer_07"}
    await client.send("subscribe", {"types": ["agents"]})  # no filters: unfiltered again
    assert len(await agents_seen()) > 3


async def test_unknown_types_are_reported_and_the_valid_ones_still_apply(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["insights", "bogus", "jobs"]})
    reply = await client.until(lambda m: m["event"] == "error")
    assert reply["data"]["code"] == "invalid_subscription"
    assert reply["data"]["details"]["types"] == ["bogus", "jobs"]
    names = {f["event"] for f in await stream_for(client, sim, 600)}
    assert "dashboard_metrics_update" in names


async def test_agent_ids_filter_never_drops_events_without_agent_id(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["agents", "insights"], "filters": {"agent_ids": ["digest_agent_02"]}})
    frames = await stream_for(client, sim, 900)
    agents = {f["data"]["agent_id"] for f in frames if f["event"].startswith("agent_")}
    assert agents == {"digest_agent_02"}
    assert any(f["event"] == "dashboard_metrics_update" for f in frames)


async def test_run_id_filter_passes_only_that_runs_events(sim: Simulator) -> None:
    run = next(job for job in sim.workload.active.values() if job.status == "processing")
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["processing_jobs", "dags", "insights"], "filters": {"run_id": run.run_id}})
    frames = await stream_for(client, sim, 900)
    with_run = [f for f in frames if "run_id" in f["data"]]
    assert with_run and {f["data"]["run_id"] for f in with_run} == {run.run_id}
    assert any(f["event"] == "dashboard_metrics_update" for f in frames)  # carries no run_id


async def test_processing_errors_reach_every_authenticated_client() -> None:
    # inside a failure_burst window most jobs fail: the stream's error events come quickly
    async with Simulator(seed=2, speed=600, scenario="failure_burst", start=DEFAULT_START,
                         warmup=3 * 3600 + 120) as burst:
        client = await WireClient.open(burst)
        frame = await client.until(lambda m: m["event"] == "error" and "seq" in m)
        assert frame["data"]["code"] == "processing_error"
        assert frame["data"]["details"]["job_id"].startswith("job-")


async def test_subscribe_dag_run_answers_the_runs_state_then_follows_it(sim: Simulator) -> None:
    run = next(job for job in sim.workload.active.values() if job.status == "processing")
    client = await WireClient.open(sim)
    await client.send("subscribe_dag_run", {"run_id": run.run_id})
    status = await client.until(lambda m: m["event"] == "dag_run_status")
    progress = await client.next()
    assert status["data"]["run_id"] == run.run_id == progress["data"]["run_id"]
    assert progress["event"] == "dag_run_progress" and "seq" not in status and "seq" not in progress
    frames = await stream_for(client, sim, 1200)
    dag = [f for f in frames if f["event"] in SUBSCRIPTION_TYPES["dags"]]
    assert dag and {f["data"]["run_id"] for f in dag} == {run.run_id}
    assert not [f for f in frames if f["event"] not in (*SUBSCRIPTION_TYPES["dags"], "error")]


async def test_subscribe_dag_run_of_an_unknown_run_is_not_found(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe_dag_run", {"run_id": "manual__1999-01-01T00:00:00+00:00"})
    reply = await client.until(lambda m: m["event"] == "error")
    assert reply["data"]["code"] == "not_found"


# -- seq and resync -------------------------------------------------------------------------------
async def test_seq_is_global_and_strictly_increasing(sim: Simulator) -> None:
    one, two = await WireClient.open(sim), await WireClient.open(sim)
    for client in (one, two):
        await client.send("subscribe", {"types": ALL_TYPES})
    await stream_for(one, sim, 600)
    await two.sync()
    seqs = [f["seq"] for f in one.stream()]
    assert seqs == sorted(set(seqs))
    common = {f["seq"]: f for f in one.stream()}.keys() & {f["seq"]: f for f in two.stream()}.keys()
    by_seq = {f["seq"]: f for f in two.stream()}
    assert common and all(by_seq[s] == next(f for f in one.stream() if f["seq"] == s) for s in list(common)[:50])
    # subscribed to every type, a client sees every seq: no gaps
    assert seqs == list(range(seqs[0], seqs[-1] + 1))


async def test_resync_replays_matching_events_then_resync_complete(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    await client.send("subscribe", {"types": ["knowledge"]})
    since = sim.hub.seq // 2
    await client.send("resync", {"since_seq": since})
    done = await client.until(lambda m: m["event"] == "resync_complete")
    replayed = [f for f in client.frames if "seq" in f and f["seq"] <= done["data"]["to_seq"]]
    assert done["data"]["complete"] is True and done["data"]["from_seq"] == since + 1
    assert done["data"]["replayed"] == len(replayed) > 0
    assert {f["event"] for f in replayed} <= {*SUBSCRIPTION_TYPES["knowledge"], "error"}
    assert [f["seq"] for f in replayed] == sorted(f["seq"] for f in replayed)
    assert all(f["seq"] > since for f in replayed)


async def test_resync_past_the_buffer_says_incomplete() -> None:
    async with Simulator(speed=60, start=DEFAULT_START, warmup=600, replay_buffer=50) as small:
        client = await WireClient.open(small)
        await client.send("subscribe", {"types": ALL_TYPES})
        await client.send("resync", {"since_seq": 0})
        done = await client.until(lambda m: m["event"] == "resync_complete")
        assert done["data"]["complete"] is False and done["data"]["replayed"] <= 50
        assert done["data"]["from_seq"] == small.hub.replay_buffer[0][0] or done["data"]["from_seq"] > 1


# -- what the server rejects ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame",
    ["{not json", "[1, 2]", '"text"', '{"data": {}}', '{"event": "launch_missiles", "data": {}}',
     '{"event": 7, "data": {}}', '{"event": "subscribe", "data": {"types": "nope-not-a-list"}}',
     '{"event": "resync", "data": {"since_seq": "yesterday"}}', '{"event": "subscribe_dag_run", "data": {}}'],
)
async def test_malformed_messages_get_an_error_and_the_connection_stays_open(sim: Simulator, frame: str) -> None:
    client = await WireClient.open(sim)
    await client.send_raw(frame)
    reply = await client.until(lambda m: m["event"] == "error" and "seq" not in m)
    assert reply["data"]["code"] in ("invalid_message", "invalid_subscription")
    await client.send("subscribe", {"types": ["insights"]})
    frames = await stream_for(client, sim, 300)
    assert any(f["event"] == "dashboard_metrics_update" for f in frames)


async def test_a_frame_over_one_mebibyte_is_closed_with_1009(sim: Simulator) -> None:
    client = await WireClient.open(sim, max_size=None)
    await client.send("subscribe", {"types": ["insights"], "filters": {"run_id": "x" * (1 << 20)}})
    assert await close_code(client) == 1009


async def test_a_frame_of_exactly_one_mebibyte_is_still_read(sim: Simulator) -> None:
    client = await WireClient.open(sim)
    padding = (1 << 20) - len(json.dumps({"event": "pong", "data": {"timestamp": "", "pad": ""}}))
    await client.send("pong", {"timestamp": "", "pad": "p" * padding})
    answered = await client.sync()
    assert not [f for f in answered if f["event"] == "error" and "seq" not in f]
