"""The store fed by the reference server over a real WebSocket on 127.0.0.1.

A raw ``websockets`` client authenticates, subscribes to everything, asks for the server's
replay buffer (a few simulated hours of warm-up) and then reads the live stream. Every frame it
reads goes to ``store.ingest_frame``; the expected tables are computed from the same frames with
``json.loads`` alone.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pandas as pd
import pytest
import websockets
from store_samples import KEYS, LATEST_SOURCES, expected_latest

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(120)
LIVE_FRAMES = 600  # live frames to read after the replay ...
LIVE_SECONDS = 3.0  # ... or for this long at most


async def _read_stream(sim: Simulator, store: EventStore) -> list[str]:
    texts: list[str] = []
    # close_timeout: the reference server answers a client's close slowly (seen: 10 s)
    async with websockets.connect(sim.url, max_size=None, open_timeout=10, close_timeout=1) as ws:

        async def read() -> dict:
            async with asyncio.timeout(20):
                text = await ws.recv()
            store.ingest_frame(text)
            texts.append(text)
            return json.loads(text)

        assert (await read())["event"] == "connected"
        await ws.send(json.dumps({"event": "auth", "data": {"token": sim.token}}))
        while (await read())["event"] != "authenticated":
            pass
        await ws.send(json.dumps({"event": "subscribe", "data": {"types": list(SUBSCRIPTION_TYPES)}}))
        await ws.send(json.dumps({"event": "resync", "data": {"since_seq": 0}}))
        while (message := await read())["event"] != "resync_complete":
            pass
        assert message["data"]["complete"] is True and message["data"]["replayed"] > 1000
        live = 0
        deadline = asyncio.get_running_loop().time() + LIVE_SECONDS
        while live < LIVE_FRAMES and asyncio.get_running_loop().time() < deadline:
            if "seq" in await read():
                live += 1
        assert live >= 10  # the live stream flows after the replay
    return texts


@pytest.fixture(scope="module")
def received():
    async def run():
        store = EventStore()
        async with Simulator(seed=7, speed=1200, scenario="failure_burst", warmup=3600,
                             heartbeat=1.0, replay_buffer=200_000, send_queue_limit=200_000) as sim:
            texts = await _read_stream(sim, store)
        return store, texts

    store, texts = asyncio.run(run())
    yield store, texts
    store.close()


def test_every_frame_is_in_raw_and_every_event_in_its_table(received):
    store, texts = received
    messages = [json.loads(t) for t in texts]
    sent = Counter(m["event"] for m in messages)
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # replay + live: nothing twice
    assert store.received == sent
    counts = store.counts
    assert counts["raw"] == len(texts)
    assert counts["job_events"] == sum(n for e, n in sent.items() if e.startswith("processing_job_"))
    assert counts["agent_events"] == sum(n for e, n in sent.items() if e.startswith("agent_"))
    assert counts["metrics"] == sent["dashboard_metrics_update"]
    assert counts["insights"] == sent["insight_generated"]
    assert counts["errors"] == sent["error"] + sent["connection_error"]
    assert store.raw["text"].tolist() == texts
    assert (store.errors["kind"] == "processing_error").sum() == sent["error"] > 0  # failure_burst
    assert not store.errors["kind"].isin(["malformed", "field_type"]).any()


@pytest.mark.parametrize("table", list(LATEST_SOURCES))
def test_latest_state_matches_the_last_event_per_entity(received, table):
    store, texts = received
    events = [(m["event"], m["data"], m["seq"]) for m in map(json.loads, texts) if "seq" in m]
    expected = expected_latest(table, events)
    frame = store.table(table)
    assert len(frame) == len(expected) > 0
    keys = list(zip(*(frame[k].astype(str) for k in KEYS[table]), strict=True))
    records = {k[0] if len(k) == 1 else k: row for k, row in zip(keys, frame.to_dict("records"), strict=True)}
    for key, want in expected.items():
        row = records[key]
        for column, value in want.items():
            got = row[column]
            if value is None:
                assert pd.isna(got), (key, column, got)
            elif isinstance(value, float):
                assert got == pytest.approx(value), (key, column)
            else:
                assert got == value, (key, column, got, value)


def test_now_follows_the_simulated_clock(received):
    store, texts = received
    stamps = [json.loads(t)["data"].get("timestamp") for t in texts]
    latest = max(pd.Timestamp(s) for s in stamps if s)
    assert store.now == latest
