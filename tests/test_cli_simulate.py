"""``aios-notebook simulate`` and ``--param`` as real processes: a recording that loads, replays and
matches the generator, labels that record the magnitude, and bad parameters named as typed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from aios_notebook import AIOSClient
from aios_notebook.server.scenarios import SCENARIOS
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(120)


def aios(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aios_notebook", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_writes_a_recording_and_labels_that_match_the_generator(tmp_path: Path) -> None:
    recording, labels = tmp_path / "fb.jsonl", tmp_path / "labels.json"
    result = aios("simulate", "--scenario", "failure_burst", "--hours", "4", "--seed", "3", "-o", str(recording),
                  "--labels", str(labels), "--param", "magnitude=0.5", "--param", "length=45m")
    assert result.returncode == 0, result.stderr
    events = list(generate(seed=3, scenario="failure_burst", hours=4,
                           scenario_params={"magnitude": 0.5, "length": 0.75}))
    assert f"wrote {len(events):,} events" in result.stdout

    # frames exactly as the live server frames them: seq from 1, the generator's events in order
    lines = recording.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["aios_recording"] == 1 and header["simulated"]["params"]["magnitude"] == 0.5
    frames = [json.loads(json.loads(line)["frame"]) for line in lines[1:]]
    assert [f["seq"] for f in frames] == list(range(1, len(events) + 1))
    assert [(f["event"], f["data"]) for f in frames] == [(e, d) for _, e, d in events]

    store = EventStore.load(recording)
    assert store.counts["raw"] == len(events)
    assert store.counts["job_events"] > 100 and store.counts["errors"] > 0
    failed = store.job_events[store.job_events["event"] == "processing_job_failed"]
    assert len(failed) > 0

    document = json.loads(labels.read_text())
    assert document["scenario"] == "failure_burst" and document["seed"] == 3
    assert document["params"] == {"magnitude": 0.5, "first": 3.0, "length": 0.75, "period": 6.0}
    assert [label["magnitude"] for label in document["labels"]] == [0.5]
    assert document["labels"][0]["start"] == "2026-01-05T03:00:00.000Z"
    assert document["labels"][0]["end"] == "2026-01-05T03:45:00.000Z"

    # the same seed and parameters give the same bytes; an existing file needs --force
    again = aios("simulate", "--scenario", "failure_burst", "--hours", "4", "--seed", "3", "-o", str(recording),
                 "--param", "magnitude=0.5", "--param", "length=45m")
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    copy = tmp_path / "copy.jsonl"
    aios("simulate", "--scenario", "failure_burst", "--hours", "4", "--seed", "3", "-o", str(copy),
         "--param", "magnitude=0.5", "--param", "length=45m")
    assert copy.read_bytes() == recording.read_bytes()


def test_a_magnitude_of_zero_is_steady_and_a_gzip_recording_loads(tmp_path: Path) -> None:
    recording = tmp_path / "none.jsonl.gz"
    result = aios("simulate", "--scenario", "volume_spike", "--hours", "2", "--seed", "9", "-o", str(recording),
                  "--param", "magnitude=0")
    assert result.returncode == 0, result.stderr
    store = EventStore.load(recording)
    steady = list(generate(seed=9, scenario="steady", hours=2))
    assert store.counts["raw"] == len(steady)
    assert store.job_events["job_id"].tolist() == [d["job_id"] for _, e, d in steady if e.startswith("processing_job")]


def test_a_simulated_recording_replays_over_the_protocol(tmp_path: Path) -> None:
    recording = tmp_path / "outage.jsonl"
    assert aios("simulate", "--scenario", "agent_outage", "--hours", "0.5", "--seed", "2", "-o", str(recording),
                "--param", "first=10m", "--param", "agent=digest_agent_02").returncode == 0
    loaded = EventStore.load(recording)
    process = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "replay", str(recording), "--speed", "600", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "AIOS_TOKEN": "simulated-replay-token"},
    )
    try:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            match = re.search(r"on (ws://\S+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the replay did not say where it serves"
        client = AIOSClient(url, "simulated-replay-token", snapshots=False)
        client.start()
        try:
            client.wait_for(lambda s: s.counts["agent_events"] == loaded.counts["agent_events"]
                            and s.counts["job_events"] == loaded.counts["job_events"], timeout=60)
            agents = client.store.agent_events
        finally:
            client.stop()
        offline = agents[(agents["event"] == "agent_status_update") & (agents["status"] == "offline")]
        assert set(offline["agent_id"]) == {"digest_agent_02"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("scenario", "param", "expected"), [
    ("failure_burst", "nope=1", "unknown parameter 'nope' for scenario failure_burst; valid keys: magnitude, first, "
                                "length, period, step_failure_probability"),
    ("volume_spike", "magnitude=abc", "parameter magnitude='abc' of scenario volume_spike: expected a number"),
    ("volume_spike", "magnitude=-1", "expected a finite number >= 0"),
    ("volume_spike", "job_type=video", "expected a job type: pdf, audio, url"),
    ("agent_errors", "agent=nobody", "expected an agent id: content_mind_01"),
    ("slow_processing", "length=8", "period (6 h) must be at least the window length (8 h)"),
    ("stuck_jobs", "step=transcription", "step 'transcription' is not a step of pdf_processing"),
    ("volume_spike", "magnitude", "'magnitude' is not key=value (valid keys for volume_spike: magnitude"),
    ("steady", "magnitude=1", "scenario steady has no anomaly to reshape"),
])
def test_bad_params_are_named_with_the_flag_and_the_valid_keys(tmp_path: Path, scenario: str, param: str,
                                                               expected: str) -> None:
    output = tmp_path / "never.jsonl"
    result = aios("simulate", "--scenario", scenario, "--hours", "1", "-o", str(output), "--param", param)
    assert result.returncode == 2
    assert result.stderr.startswith("aios-notebook simulate: --param: ")
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not output.exists()


def test_bad_scenario_and_hours_are_named(tmp_path: Path) -> None:
    result = aios("simulate", "--scenario", "meteor_strike", "-o", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and "--scenario: unknown scenario 'meteor_strike'" in result.stderr
    result = aios("simulate", "--hours", "0", "-o", str(tmp_path / "x.jsonl"))
    assert result.returncode == 2 and "--hours: hours must be a positive number" in result.stderr


def test_serve_rejects_a_bad_param_before_listening() -> None:
    result = aios("serve", "--port", "0", "--scenario", "agent_outage", "--param", "agent=nobody")
    assert result.returncode == 2
    assert result.stderr.startswith("aios-notebook serve: --param: parameter agent='nobody'")


def test_serve_param_reshapes_the_live_anomaly_and_its_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "serve", "--port", "0", "--scenario", "dag_step_failures",
         "--param", "magnitude=0.25", "--param", "dag_id=pdf_processing", "--param", "step=analysis",
         "--labels", str(labels)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "scenario dag_step_failures, magnitude=0.25, dag_id=pdf_processing, step=analysis" in first
        document = json.loads(labels.read_text())
        assert document["params"]["magnitude"] == 0.25 and document["params"]["step"] == "analysis"
        assert {label["magnitude"] for label in document["labels"]} == {0.25}
        assert document["labels"][0]["entities"] == {"dag_id": "pdf_processing"}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    assert process.returncode == 0


@pytest.mark.parametrize("command", ["serve", "simulate"])
def test_help_lists_every_scenario_with_one_line_and_the_param_keys(command: str) -> None:
    result = aios(command, "--help")
    assert result.returncode == 0
    for name, scenario in SCENARIOS.items():
        assert re.search(rf"^  {name}\s+{re.escape(scenario.summary)}$", result.stdout, re.MULTILINE), name
    for key in ("magnitude", "first", "length", "period", "job_type", "agent", "dag_id", "step"):
        assert re.search(rf"^  {key}\s+\S", result.stdout, re.MULTILINE), key
