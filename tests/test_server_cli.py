"""``python -m aios_notebook serve`` as a real process: URLs and token at start, labels file,
and on SIGTERM / SIGINT a connection_error server_shutdown then close 1001 to every client."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES
from aios_notebook.server.simulator import is_loopback

pytestmark = pytest.mark.timeout(60)


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})},
    )


def banner(process: subprocess.Popen[str]) -> dict[str, str]:
    """The start-up lines, up to the one that says how to stop it."""
    lines = {}
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Ctrl-C"):
            return lines
        key, _, value = line.strip().partition(" ")
        lines[key] = value.strip()
    raise AssertionError(f"the server exited early: {process.wait()} {process.stderr.read() if process.stderr else ''}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_sends_server_shutdown_then_1001_and_exits_cleanly(signum: int) -> None:
    process = serve("--speed", "600", "--heartbeat", "5")
    try:
        info = await asyncio.to_thread(banner, process)
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/ws", info["WebSocket"])
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", info["REST"])
        async with websockets.connect(info["WebSocket"], open_timeout=10) as ws:
            await ws.recv()  # connected
            await ws.send(json.dumps({"event": "auth", "data": {"token": info["token"]}}))
            await ws.send(json.dumps({"event": "subscribe", "data": {"types": list(SUBSCRIPTION_TYPES)}}))
            frames = [json.loads(await ws.recv()) for _ in range(20)]
            assert frames[0]["event"] == "authenticated"
            process.send_signal(signum)
            last = None
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    last = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert last is not None and last["event"] == "connection_error"
            assert last["data"]["code"] == "server_shutdown"
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert await asyncio.to_thread(process.wait, 15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_labels_file_and_a_token_from_the_environment(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    process = serve("--scenario", "agent_outage", "--seed", "3", "--labels", str(labels),
                    env={"AIOS_TOKEN": "secret-from-env"})
    try:
        info = await asyncio.to_thread(banner, process)
        assert info["token"] == "as given (--token or AIOS_TOKEN)"
        document = json.loads(labels.read_text())
        assert document["scenario"] == "agent_outage" and document["seed"] == 3
        assert len(document["labels"]) == 28  # four windows a day for a week
        assert document["labels"][0]["entities"] == {"agent_ids": ["context_mind_01"]}
        async with websockets.connect(info["WebSocket"], open_timeout=10) as ws:
            await ws.recv()
            await ws.send(json.dumps({"event": "auth", "data": {"token": "secret-from-env"}}))
            assert json.loads(await ws.recv())["event"] == "authenticated"
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(process.communicate, None, 15)
        assert process.returncode == 0
        assert "secret-from-env" not in out + err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_non_loopback_host_is_warned_about() -> None:
    # 192.0.2.1 (TEST-NET-1) is not on this machine: the bind fails, after the warning
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "serve", "--host", "192.0.2.1", "--port", "0"],
        capture_output=True, text=True, timeout=30,
    )
    assert "warning: binding 192.0.2.1, not 127.0.0.1" in result.stderr
    assert result.returncode == 2 and "cannot listen on 192.0.2.1" in result.stderr


def test_bad_options_are_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "serve", "--scenario", "meteor_strike"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2 and "unknown scenario 'meteor_strike'" in result.stderr


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("10.1.2.3", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
