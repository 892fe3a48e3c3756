"""The client's API in each place it runs: plain script, IPython, a running asyncio loop, async with."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faulty_server import FAST_CLIENT, FaultyServer, stream_seqs

from aios_notebook.client import AIOSClient, Event, connect
from aios_notebook.exceptions import AuthError, ConfigurationError
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with FaultyServer(rate=200, heartbeat=0.5) as running:
        yield running


SCRIPT = """
import sys, time
from aios_notebook.client import AIOSClient
started = time.monotonic()
client = AIOSClient({url!r}, {token!r}, snapshots=False).start()
returned_after = time.monotonic() - started
client.wait_for(lambda store: len(store.job_events) >= 20, timeout=30)
print("events", client.stats.events_received, "state", client.state, "start_returned", returned_after < 5)
print("nest_asyncio" in sys.modules)
"""


def _run(args: list[str], code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*args, code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)


def test_a_plain_script_connects_and_exits_cleanly(server: FaultyServer) -> None:
    # no stop(): the interpreter must still exit (daemon I/O thread, closed at exit)
    result = _run([sys.executable, "-c"], SCRIPT.format(url=server.url, token=server.token))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].startswith("events ") and "state connected start_returned True" in lines[0]
    assert lines[1] == "False"  # nothing patched the event loop
    assert "Traceback" not in result.stderr
    server.wait_until(lambda: server.live_count() == 0, timeout=10)  # the socket was closed at exit


def test_ipython_runs_it_the_same_way(server: FaultyServer) -> None:
    ipython = Path(sys.executable).with_name("ipython")
    result = _run([str(ipython), "--quick", "--no-banner", "-c"], SCRIPT.format(url=server.url, token=server.token))
    assert result.returncode == 0, result.stderr
    assert "state connected start_returned True" in result.stdout
    assert "Traceback" not in result.stderr


async def test_start_inside_a_running_asyncio_loop_leaves_the_loop_alone(server: FaultyServer) -> None:
    loop = asyncio.get_running_loop()
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    client.start()  # a plain call from a coroutine: returns at once, the I/O has its own loop
    try:
        ticks = 0
        while client.stats.events_received < 20:  # our loop keeps running while the client works
            await asyncio.sleep(0.01)
            ticks += 1
            assert ticks < 1000
        assert asyncio.get_running_loop() is loop
        await asyncio.to_thread(client.wait_for, lambda s: len(stream_seqs(s)) >= 20, 10)
        assert client._loop is not loop
    finally:
        await asyncio.to_thread(client.stop)


async def test_async_with_and_events_hand_over_every_event_in_order(server: FaultyServer) -> None:
    got: list[Event] = []
    async with AIOSClient(server.url, server.token, **FAST_CLIENT) as client:
        async for event in client.events():
            got.append(event)
            if len(got) == 50:
                break
        assert client.state == "connected"
    assert client.state == "closed"
    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 50
    assert seqs == list(range(seqs[0], seqs[0] + 50))  # none missed between 'async with' and the loop
    assert all(isinstance(e.received_at, dt.datetime) and e.received_at.tzinfo for e in got)
    assert {e.event for e in got} == {"processing_job_status", "agent_status_update"}
    assert set(seqs) <= set(stream_seqs(client.store))  # the store has them too


async def test_events_end_when_the_client_stops(server: FaultyServer) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
    count = 0
    stopper = None
    async for _ in client.events():
        count += 1
        if count == 5:
            stopper = asyncio.create_task(asyncio.to_thread(client.stop))
    assert stopper is not None
    await stopper
    assert count >= 5 and client.state == "closed"


def test_callbacks_run_on_their_own_thread_and_their_errors_are_caught(
        server: FaultyServer, capfd: pytest.CaptureFixture[str]) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    jobs: list[Event] = []
    everything: list[Event] = []
    threads: set[str] = set()

    def on_job(event: Event) -> None:
        threads.add(threading.current_thread().name)
        # the event is already in the store when the callback runs
        assert event.seq in set(client.store.job_events["seq"])
        jobs.append(event)

    def broken(event: Event) -> None:
        raise ValueError(f"bad luck with {event.event}")

    client.on("processing_job_status", on_job)
    client.on("*", everything.append)
    client.on("agent_status_update", broken)
    client.start()
    try:
        client.wait_for(lambda _s: len(jobs) >= 10 and client.stats.callback_errors >= 10, timeout=10)
        assert threads == {"aios-callbacks"}
        assert {e.event for e in jobs} == {"processing_job_status"}
        assert len(everything) >= len(jobs)
        assert client.state == "connected"  # a failing callback does not touch the stream
        assert client.callback_errors[0].startswith("callback test_callbacks_run_on_their_own_thread_and_")
        assert "ValueError: bad luck with agent_status_update" in client.callback_errors[0]
    finally:
        client.stop()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert err.count("bad luck") <= 1  # one warning line, then only counted


def test_a_callback_handle_stops_the_calls(server: FaultyServer) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
    try:
        got: list[Event] = []
        handle = client.on("*", got.append)
        client.wait_for(lambda _s: len(got) >= 5, timeout=10)
        handle.close()
        seen = client.stats.events_received
        client.wait_for(lambda _s: client.stats.events_received > seen + 20, timeout=10)
        assert len(got) < seen + 5
    finally:
        client.stop()


def test_frame_listeners_see_every_frame_as_received(server: FaultyServer) -> None:
    frames: list[tuple[str | bytes, dt.datetime]] = []
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    client.add_frame_listener(lambda frame, at: frames.append((frame, at)))

    def broken(frame: str | bytes, at: dt.datetime) -> None:
        raise RuntimeError("recorder full")

    client.add_frame_listener(broken)
    client.start()
    try:
        client.wait_for(lambda s: len(stream_seqs(s)) >= 20, timeout=10)
        server.send_raw(b"\x00binary")
        client.wait_for(lambda _s: any(isinstance(f, bytes) for f, _ in frames), timeout=10)
    finally:
        client.stop()
    assert len(frames) == client.stats.frames_received
    assert frames[0][0].startswith('{"event":"connected"')
    assert all(isinstance(at, dt.datetime) and at.tzinfo is not None for _, at in frames)
    assert client.stats.callback_errors == client.stats.frames_received  # counted, stream unharmed


def test_stats_describe_the_stream(server: FaultyServer) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    assert client.state == "closed" and client.stats.connected_since is None
    client.start()
    try:
        client.wait_for(lambda s: len(stream_seqs(s)) >= 50, timeout=10)
        stats = client.stats
        assert stats.state == "connected" and stats.connections == 1 and stats.reconnects == 0
        assert stats.connected_since is not None and stats.connected_since.tzinfo is not None
        assert stats.events_received >= 50 and stats.frames_received > stats.events_received
        assert stats.events_per_s > 0 and stats.last_event_age is not None and stats.last_event_age >= 0
        assert stats.malformed == stats.gaps == stats.duplicates == 0
        assert set(stats.as_dict()) >= {"reconnects", "malformed", "gaps", "events_per_s", "last_event_age"}
        assert "events" in str(stats)
    finally:
        client.stop()
    assert client.stats.connected_since is None and client.stats.state == "closed"


def test_wait_for_explains_a_timeout_and_a_client_that_does_not_run(server: FaultyServer) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    with pytest.raises(ConfigurationError, match="not running"):
        client.wait_for(lambda _s: False, timeout=1)
    client.start()
    try:
        with pytest.raises(TimeoutError, match=r"within 0.3 s \(state"):
            client.wait_for(lambda _s: False, timeout=0.3)
        assert client.wait_for(lambda s: len(s.raw) or None, timeout=10) >= 1  # returns the value
    finally:
        client.stop()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "http://127.0.0.1:1/ws"}, "must start with ws:// or wss://"),
    ({"token": 5}, "token must be"),  # None is a server without auth (issue 16)
    ({"token": ""}, "token must be"),
    ({"types": ["processing_jobs", "jbos"]}, r"unknown subscription types \['jbos'\]"),
    ({"filters": {"run_id": 7}}, "filters.run_id must be a string"),
    ({"ssl": ssl.create_default_context()}, "use wss://"),
    ({"max_reconnects": -1}, "max_reconnects"),
    ({"reconnect_delay": 0}, "reconnect delay must be > 0"),
    ({"max_size": 10}, "max_size"),
    ({"dialect": "autopilott"}, r"dialect must be one of .*autopilot"),
])
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    args = {"url": "ws://127.0.0.1:1/ws", "token": "a-test-token", **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        AIOSClient(**args)  # type: ignore[arg-type]


def test_bad_calls_are_named(server: FaultyServer) -> None:
    client = AIOSClient(server.url, server.token, **FAST_CLIENT)
    with pytest.raises(ConfigurationError, match="unknown event 'processing_job_done'"):
        client.on("processing_job_done", print)
    with pytest.raises(ConfigurationError, match="unknown subscription types"):
        client.subscribe(["agent"])
    with pytest.raises(ConfigurationError, match="run_id must be a non-empty string"):
        client.subscribe_dag_run("")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_wss_verifies_certificates_and_takes_a_custom_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with FaultyServer(ssl_context=server_context, rate=50) as server:
        assert server.url.startswith("wss://")
        untrusted = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
        try:
            untrusted.wait_for(lambda _s: untrusted.stats.failed_attempts >= 2, timeout=10)
            assert untrusted.state == "connecting"
            assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stats.last_error
            assert server.messages("auth") == []  # the token never went to an unverified peer
        finally:
            untrusted.stop()
        trusted = AIOSClient(server.url, server.token, ssl=ssl.create_default_context(cafile=str(cert)), **FAST_CLIENT)
        trusted.start()
        try:
            trusted.wait_for(lambda s: len(stream_seqs(s)) >= 5, timeout=10)
            assert trusted.state == "connected"
        finally:
            trusted.stop()


def test_connect_reads_the_environment(server: FaultyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOS_URL", server.url)
    monkeypatch.setenv("AIOS_TOKEN", server.token)
    client = connect(types=["processing_jobs"], **FAST_CLIENT)
    try:
        assert client.state == "connected"  # connect() waited for the server to take the token
        assert client.subscriptions["types"] == {"processing_jobs": None}
        client.wait_for(lambda s: len(s.job_events) >= 5, timeout=10)
        assert client.simulator is None
    finally:
        client.stop()


def test_connect_wants_a_url_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOS_URL", raising=False)
    monkeypatch.setenv("AIOS_TOKEN", "t")
    with pytest.raises(ConfigurationError, match="no url"):
        connect()
    monkeypatch.delenv("AIOS_TOKEN")
    # a url alone is a server without auth (issue 16); one that wants a token says so at once
    sim = Simulator(seed=3, speed=10).start_in_thread()
    try:
        monkeypatch.setenv("AIOS_URL", sim.url)
        with pytest.raises(AuthError, match=r"wants a token and none was given \(it answered not_authenticated\): "
                                            r"pass one \(the token argument, or AIOS_TOKEN\)"):
            connect(wait=10, store=EventStore())
    finally:
        sim.stop()


def test_connect_with_nothing_starts_the_reference_server(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AIOS_URL", raising=False)
    monkeypatch.delenv("AIOS_TOKEN", raising=False)
    client = connect(speed=600, snapshots=False)
    try:
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and "started the reference server" in out and client.url in out
        assert client.simulator is not None and client.url == client.simulator.url
        assert client.simulator.token not in out + repr(client)
        client.wait_for(lambda s: sum(s.counts[t] for t in ("job_events", "agent_events", "metrics")) > 0, timeout=30)
        assert client.state == "connected"
    finally:
        client.stop()
    assert client.state == "closed"
