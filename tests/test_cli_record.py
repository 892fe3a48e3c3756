"""``aios-notebook record`` fails loudly (issue 18): through a real subprocess, against real sockets.

The first connection must succeed, or the command says why and exits non-zero at once instead of
recording nothing for its whole ``--duration``; ``--wait`` keeps trying. At the end it says how
many events it wrote, and a recording of nothing is an error.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.server import ServerConnection, serve

from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(180)

# far longer than the subprocess may take: a command that waits out its duration fails the test
LONG = "600"
TOKEN = "record-test-token-7f3a9c"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(speed=600, seed=3, token=TOKEN).start_in_thread()
    yield sim
    sim.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record(url: str, output: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REC_TOKEN": TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "aios_notebook", "record", url, "--token-env", "REC_TOKEN", "-o", str(output), *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_a_port_nothing_listens_on_fails_at_once_naming_the_cause(tmp_path: Path) -> None:
    output = tmp_path / "r.jsonl"
    result = _record(f"ws://127.0.0.1:{_free_port()}/ws", output, "--duration", LONG)
    assert result.returncode == 1, result.stderr
    assert "ConnectionRefused" in result.stderr and "is the server running" in result.stderr
    assert "--wait keeps trying" in result.stderr and "nothing recorded" in result.stderr
    assert not output.exists()  # no empty recording left to be mistaken for one
    assert "Traceback" not in result.stderr


def test_a_url_without_ws_is_named_with_the_path_to_try(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "r.jsonl"
    result = _record(f"ws://127.0.0.1:{simulator.port}", output, "--duration", LONG)
    assert result.returncode == 1, result.stderr
    assert f"try ws://127.0.0.1:{simulator.port}/ws" in result.stderr
    assert not output.exists()


def test_a_handshake_refused_with_404_is_named(simulator: Simulator, tmp_path: Path) -> None:
    result = _record(f"ws://127.0.0.1:{simulator.port}/stream", tmp_path / "r.jsonl", "--duration", LONG)
    assert result.returncode == 1, result.stderr
    assert "HTTP 404" in result.stderr and "/ws" in result.stderr
    assert TOKEN not in result.stderr


def test_wait_keeps_trying_until_the_server_comes(tmp_path: Path) -> None:
    port = _free_port()
    output = tmp_path / "r.jsonl"
    env = {**os.environ, "REC_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "record", f"ws://127.0.0.1:{port}/ws", "--token-env", "REC_TOKEN",
         "-o", str(output), "--duration", "1.5", "--wait"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    for line in process.stderr:  # the command says what it waits for before the server exists
        lines.append(line)
        if line.startswith("waiting for"):
            break
    assert lines and lines[-1].startswith(f"waiting for ws://127.0.0.1:{port}/ws (--wait)"), lines
    assert process.poll() is None
    sim = Simulator(speed=600, seed=4, token=TOKEN, port=port).start_in_thread()
    try:
        _, rest = process.communicate(timeout=60)
    finally:
        sim.stop()
    assert process.returncode == 0, "".join(lines) + rest
    store = EventStore.load(output)
    assert store.frames > 0
    assert f"wrote {output}: {store.frames:,} events" in rest


def test_a_server_that_sends_nothing_gives_a_non_zero_exit_and_no_file(tmp_path: Path) -> None:
    # a WebSocket that accepts and stays silent: connected, but not a frame to record
    def silent(connection: ServerConnection) -> None:
        for _ in connection:
            pass

    with serve(silent, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        output = tmp_path / "r.jsonl"
        result = _record(f"ws://127.0.0.1:{port}/ws", output, "--duration", "1")
        server.shutdown()
    assert result.returncode == 1, result.stderr
    assert "no event arrived" in result.stderr and "nothing recorded" in result.stderr
    assert not output.exists()


def test_an_existing_file_names_the_flag_not_the_python_argument(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "r.jsonl"
    output.write_text("precious\n")
    result = _record(simulator.url, output, "--duration", "0.5")
    assert result.returncode == 2
    assert "--force replaces it" in result.stderr and "overwrite" not in result.stderr
    assert output.read_text() == "precious\n"


def test_the_end_says_how_many_events_were_written(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "r.jsonl"
    result = _record(simulator.url, output, "--duration", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    frames = EventStore.load(output).frames
    assert frames > 0
    assert f"wrote {output}: {frames:,} events" in result.stderr
