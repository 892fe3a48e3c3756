"""``Simulator`` itself: the same events as the offline generator, warm-up, thread mode, settings."""

from __future__ import annotations

import json
import math
import time

import pytest
import websockets.sync.client
from server_wire import WireClient

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server import Simulator, generate
from aios_notebook.server.workload import DEFAULT_START

pytestmark = pytest.mark.timeout(60)


async def test_the_live_stream_is_exactly_the_offline_generators() -> None:
    async with Simulator(seed=5, scenario="volume_spike", speed=3600, start=DEFAULT_START, warmup=3 * 3600) as sim:
        client = await WireClient.open(sim)
        await client.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        await client.send("resync", {"since_seq": 0})
        done = await client.until(lambda m: m["event"] == "resync_complete")
        assert done["data"]["complete"] is True
        live = [(f["event"], f["data"]) for f in client.frames if "seq" in f and f["seq"] <= done["data"]["to_seq"]]
        assert [f["seq"] for f in client.frames if "seq" in f][: len(live)] == list(range(1, len(live) + 1))
    offline = [(event, data) for _, event, data in generate(5, "volume_spike", 4, start=DEFAULT_START)]
    assert len(live) > 10_000
    assert live == offline[: len(live)]


async def test_warmup_fills_the_state_and_the_replay_buffer_before_serving() -> None:
    async with Simulator(seed=1, speed=1, start=DEFAULT_START, warmup=3600) as sim:
        assert sim.now == pytest.approx(DEFAULT_START + 3600, abs=1)
        assert sim.hub.seq > 2000 and len(sim.hub.replay_buffer) == sim.hub.seq
        assert len(sim.workload.runs) > 40 and sim.workload.metrics["total_processed"] > 40


async def test_by_default_simulated_time_tracks_the_wall_clock() -> None:
    before = math.floor(time.time() / 60) * 60
    async with Simulator(speed=1, warmup=600) as sim:
        assert sim.origin in (before - 600, before + 60 - 600)
        drift = abs(sim.now - time.time())  # simulated now starts at the wall clock's now
        assert drift < 120


def test_start_in_thread_serves_until_stop() -> None:
    sim = Simulator(speed=600, start=DEFAULT_START, scenario="agent_outage").start_in_thread()
    try:
        assert sim.labels[0]["kind"] == "agent_outage" and len(sim.labels) == 28
        with websockets.sync.client.connect(sim.url, open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["event"] == "connected"
            ws.send(json.dumps({"event": "auth", "data": {"token": sim.token}}))
            assert json.loads(ws.recv(timeout=10))["event"] == "authenticated"
            sim.stop()
            frames = []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    frames.append(json.loads(ws.recv(timeout=10)))
            assert frames[-1]["data"]["code"] == "server_shutdown"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        sim.stop()


def test_start_may_be_epoch_seconds_a_datetime_or_an_iso_time() -> None:
    from datetime import datetime, timezone

    first = next(generate(1, "steady", 0.1, start=datetime(2026, 1, 5, tzinfo=timezone.utc)))
    assert first[0] == DEFAULT_START
    assert Simulator(start="2026-01-05T00:00:00Z").origin == DEFAULT_START
    with pytest.raises(ConfigurationError, match="start must be epoch seconds, a datetime or an ISO"):
        Simulator(start="next tuesday")


def test_the_token_is_never_in_the_repr() -> None:
    sim = Simulator(token="super-secret-token")
    assert "super-secret-token" not in repr(sim) and "super-secret-token" not in str(sim)
    assert sim.check_token("super-secret-token") and not sim.check_token("super-secret-tokeN")
    assert len(Simulator().token) >= 32 and Simulator().token != Simulator().token


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"speed": 0}, "speed must be a positive number"),
        ({"heartbeat": -1}, "heartbeat must be a positive number"),
        ({"warmup": -5}, "warmup must be a number of simulated seconds"),
        ({"replay_buffer": 0}, "replay_buffer must be a positive integer"),
        ({"port": 70000}, "port must be 0-65535"),
        ({"scenario": "nope"}, "unknown scenario 'nope'"),
        ({"token": ""}, "token must be a non-empty string"),
    ],
)
def test_bad_settings_are_named(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Simulator(**options)


async def test_a_port_in_use_is_a_clear_error() -> None:
    async with Simulator(speed=1) as first:
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            async with Simulator(speed=1, port=first.port):
                pass


async def test_stop_is_only_for_thread_mode() -> None:
    async with Simulator(speed=1) as sim:
        with pytest.raises(RuntimeError, match="start_in_thread"):
            sim.stop()
