"""Command-line messages in command-line terms (issue 18), through real subprocesses.

A missing file is "no such file" naming the option; a torn recording suggests ``--on-error skip``,
whose warnings are one line each (no Python source line); backtest durations read "5m", "1h30m".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingWriter
from aios_notebook.server.scenarios import labels_document
from aios_notebook.server.workload import DEFAULT_START, generate

pytestmark = pytest.mark.timeout(180)
HOURS = 6.0


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aios_notebook", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("messages")
    path = folder / "burst.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for seq, (moment, event, data) in enumerate(generate(seed=3, scenario="failure_burst", hours=HOURS), 1):
            writer.write(encode(event, data, seq), moment)
    (folder / "labels.json").write_text(json.dumps(
        labels_document("failure_burst", 3, DEFAULT_START, DEFAULT_START + HOURS * 3600)))
    return path


@pytest.fixture
def torn(recording: Path, tmp_path: Path) -> Path:
    """The recording cut in the middle of a line, as kill -9 leaves it."""
    data = recording.read_bytes()
    path = tmp_path / "torn.jsonl"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("args, named", [
    (["backtest", "builtins", "--log", "nothere.jsonl"], "nothere.jsonl: no such file (--log)"),
    (["backtest", "my_rules.py", "--log", "nothere.jsonl"], "my_rules.py: no such file (RULES.py)"),
    (["replay", "nothere.jsonl", "--port", "0"], "nothere.jsonl: no such file"),
    (["report", "nothere.ipynb", "-o", "r.html"], "nothere.ipynb: no such notebook"),
])
def test_a_missing_file_is_no_such_file(args: list[str], named: str, tmp_path: Path) -> None:
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert named in result.stderr
    assert "CorruptLog" not in result.stderr and "Traceback" not in result.stderr


def test_a_labels_file_that_is_missing_is_named_with_its_flag(recording: Path, tmp_path: Path) -> None:
    result = _cli("backtest", "builtins", "--log", str(recording), "--labels", "nolabels.json", cwd=tmp_path)
    assert result.returncode == 1
    assert "nolabels.json: no such file (--labels)" in result.stderr


@pytest.mark.parametrize("command", [["replay", "--port", "0"], ["backtest", "builtins", "--log"]])
def test_a_torn_recording_suggests_on_error_skip(command: list[str], torn: Path) -> None:
    args = [*command[:1], str(torn), *command[1:]] if command[0] == "replay" else [*command, str(torn)]
    result = _cli(*args, cwd=torn.parent)
    assert result.returncode != 0
    assert "torn last line" in result.stderr
    assert "--on-error skip" in result.stderr


def test_skipping_damage_warns_in_one_line_and_the_backtest_runs(torn: Path) -> None:
    result = _cli("backtest", "builtins", "--log", str(torn), "--on-error", "skip", cwd=torn.parent)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert len(warned) == 1 and warned[0].startswith("aios-notebook: warning: skipped: "), result.stderr
    assert "warnings.warn" not in result.stderr and "AIOSWarning" not in result.stderr
    assert "fired" in result.stdout


def test_backtest_durations_read_like_rule_declarations(recording: Path) -> None:
    labels = recording.parent / "labels.json"
    result = _cli("backtest", "builtins", "--log", str(recording), "--labels", str(labels), cwd=recording.parent)
    assert result.returncode == 0, result.stderr
    assert not re.search(r"\d days", result.stdout), result.stdout  # pandas' "0 days 00:05:00"
    rules = [line for line in result.stdout.splitlines() if " every " in line]
    assert len(rules) >= 9 and all(re.search(r"every (\d+[dhms])+  window (\d+[dhms])+  fired", line)
                                   for line in rules), result.stdout
    scores = result.stdout.split("scores against", 1)[1].splitlines()
    burst = next(line for line in scores if line.split()[:1] == ["failure_burst"])
    assert re.search(r" \d+[hms](\d+[ms])? ", burst), burst  # its mean time to detect, e.g. "10m"
