"""``aios-notebook demo`` when port 8888 is taken, and Ctrl-C (issue 18): a real subprocess.

Port 8888 is held by a socket of the test; the demo must move JupyterLab to a free port and say
so, announce every wait as it begins, and exit 0 on a terminal's Ctrl-C (SIGINT to its whole
process group, as a terminal sends it), leaving no child behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios_notebook.demo import DEFAULT_LAB_PORT, port_taken

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def port_8888_held() -> Iterator[socket.socket | None]:
    """A listening socket on 8888, like an analyst's own JupyterLab (skip if something else has it)."""
    if port_taken(DEFAULT_LAB_PORT):
        yield None  # already held by someone: just as good a test
        return
    sock = socket.socket()
    sock.bind(("127.0.0.1", DEFAULT_LAB_PORT))
    sock.listen()
    try:
        yield sock
    finally:
        sock.close()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    env.pop("AIOS_TOKEN", None)
    return env


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_taken_8888_moves_jupyterlab_says_so_and_ctrl_c_exits_0(port_8888_held: socket.socket | None,
                                                                  tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "demo"], cwd=ROOT, env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the SIGINT below is the terminal's Ctrl-C
    )
    assert demo.stdout is not None and demo.stderr is not None
    try:
        # every wait is announced as it begins: the server starting, then JupyterLab starting
        notes = [demo.stderr.readline()]
        while not notes[-1].startswith("starting JupyterLab"):
            notes.append(demo.stderr.readline())
            assert notes[-1], notes
        assert any(n.startswith("starting the reference server on port") for n in notes), notes
        moved = [n for n in notes if n.startswith(f"port {DEFAULT_LAB_PORT} is taken")]
        assert moved, notes
        new_port = int(re.search(r"uses port (\d+) instead", moved[0]).group(1))  # type: ignore[union-attr]
        assert new_port != DEFAULT_LAB_PORT and f"starting JupyterLab on port {new_port}" in notes[-1]
        lines = [demo.stdout.readline() for _ in range(2)]
        lab = re.search(rf"http://127\.0\.0\.1:{new_port}/lab/tree/01_live_dashboard\.ipynb\?token=(\w+)", lines[1])
        assert lab, lines
        with urllib.request.urlopen(f"http://127.0.0.1:{new_port}/api/status?token={lab.group(1)}",
                                    timeout=10) as response:
            assert response.status == 200
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        code = demo.wait(timeout=60)
        rest = demo.stderr.read()
    assert code == 0, rest
    assert "Traceback" not in rest
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{new_port}/api/status", timeout=2)


def test_a_lab_port_given_and_taken_is_refused_at_once(port_8888_held: socket.socket | None, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aios_notebook", "demo", "--lab-port", str(DEFAULT_LAB_PORT)], cwd=ROOT,
        env=_env(tmp_path), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert f"port {DEFAULT_LAB_PORT} is taken: choose another --lab-port" in result.stderr
