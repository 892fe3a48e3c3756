"""``make demo``'s command: the reference server and JupyterLab start, answer, and stop together."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aios_notebook.demo import free_port

ROOT = Path(__file__).resolve().parent.parent


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.timeout(180)
def test_demo_starts_server_and_lab_prints_both_urls_and_stops_both(tmp_path: Path) -> None:
    lab_port = free_port()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    env.pop("AIOS_TOKEN", None)
    demo = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "demo", "--lab-port", str(lab_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert demo.stdout is not None
        lines = [demo.stdout.readline() for _ in range(2)]
        server_url = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", lines[0])
        lab_url = re.search(r"(http://127\.0\.0\.1:\d+/lab/tree/01_live_dashboard\.ipynb)\?token=(\w+)", lines[1])
        assert server_url and lab_url, lines
        server_port = int(server_url.group(1))
        # the server is up and wants a token
        assert _status(f"http://127.0.0.1:{server_port}/api/agents") == 401
        # JupyterLab serves the dashboard notebook with its token, and refuses without it
        assert _status(f"{lab_url.group(1)}?token={lab_url.group(2)}") == 200
        assert _status(f"http://127.0.0.1:{lab_port}/api/contents/01_live_dashboard.ipynb") == 403
        assert _status(f"http://127.0.0.1:{lab_port}/api/contents/01_live_dashboard.ipynb?token={lab_url.group(2)}") == 200
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server_port}/api/agents", timeout=2)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{lab_port}/api/status", timeout=2)
