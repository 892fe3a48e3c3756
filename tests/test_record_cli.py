"""``aios-notebook record`` in a real subprocess against the reference server: progress, signals, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_notebook.exceptions import CorruptLog
from aios_notebook.protocol.codec import parse_timestamp
from aios_notebook.recording import RecordingReader
from aios_notebook.server import Simulator
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(speed=900, heartbeat=0.2, seed=5).start_in_thread()
    yield sim
    sim.stop()


def _record(simulator: Simulator, output: Path, *args: str, token: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "REC_TOKEN": simulator.token if token is None else token}
    env.pop("AIOS_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "record", simulator.url, "--token-env", "REC_TOKEN",
         "-o", str(output), *args],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_size(path: Path, size: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_size >= size):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, f"{path} did not reach {size} bytes"
        time.sleep(0.02)


def test_a_timed_recording_shows_its_progress_and_loads(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "rec.jsonl"
    process = _record(simulator, output, "--duration", "1.5", "--types", "processing_jobs", "agents")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"into {output}" in stderr
    progress = [line for line in stderr.splitlines() if line.startswith("recorded ")]
    assert progress, stderr
    events, rate, size = progress[-1].split("  ")
    assert int(events.split()[1].replace(",", "")) > 100
    assert rate.endswith("events/s") and size.endswith(("kB", "MB"))
    assert simulator.token not in stderr
    store = EventStore.load(output)
    assert len(store.jobs) > 0 and len(store.dag_runs) == 0  # only the types asked for
    (header,) = RecordingReader(output).headers
    assert header.types == ["agents", "processing_jobs"] and header.url == simulator.url
    assert simulator.token not in output.read_text()


def test_sigterm_ends_the_recording_cleanly(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "rec.jsonl.gz"
    process = _record(simulator, output)
    _wait_for_size(output, 20_000, process)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"wrote {output}" in stderr
    # closed properly: the gzip trailer is there, so a strict load finds nothing wrong
    assert EventStore.load(output, on_error="raise").frames > 100


def test_kill_9_loses_at_most_the_last_second(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "rec.jsonl"
    process = _record(simulator, output)
    _wait_for_size(output, 200_000, process)  # well into the stream: frames arrive every few ms
    killed_at = time.time()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # a torn last line is reported (or the cut fell between lines)
        reader = RecordingReader(output, on_error="skip")
        frames = list(reader)
    for problem in reader.problems:  # a torn line can only be the last one, and is said to be
        assert "torn last line" in problem.reason
        assert problem.line == len(frames) + 2
    last = parse_timestamp(frames[-1].received_at)
    assert last is not None
    assert killed_at - last.timestamp() < 1.0
    for frame in frames:  # nothing half-written was read as a frame
        assert isinstance(json.loads(frame.frame), dict)


def test_a_torn_recording_is_reported_when_loaded_strictly(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    path.write_text('{"aios_recording": 1, "url": null}\n{"t": "2026-01-05T00:00:00.000000Z", "frame": "{\\"ev')
    with pytest.raises(CorruptLog, match="torn last line") as info:
        EventStore.load(path)
    assert (info.value.path, info.value.line) == (str(path), 2)


def test_a_missing_token_variable_is_named_not_guessed(simulator: Simulator, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NOPE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "record", simulator.url, "--token-env", "NOPE_TOKEN",
         "-o", str(tmp_path / "r.jsonl")], env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "NOPE_TOKEN is not set" in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_a_refused_token_stops_the_recording_without_showing_it(simulator: Simulator, tmp_path: Path) -> None:
    process = _record(simulator, tmp_path / "r.jsonl", token="wrong-token-4f9d2a")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "refused the token in REC_TOKEN" in stderr
    assert "wrong-token-4f9d2a" not in stderr


def test_an_existing_recording_is_kept_unless_forced(simulator: Simulator, tmp_path: Path) -> None:
    output = tmp_path / "r.jsonl"
    output.write_text("precious\n")
    process = _record(simulator, output, "--duration", "0.5")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and "already there" in stderr
    assert output.read_text() == "precious\n"
    process = _record(simulator, output, "--duration", "0.5", "--force")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert EventStore.load(output).frames > 0
