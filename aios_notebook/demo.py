"""``aios-notebook demo`` (``make demo``): the reference server and JupyterLab on the live dashboard.

Both run as child processes so that Ctrl-C (or SIGTERM) stops them together: the server first
sends ``connection_error server_shutdown`` to the notebook's client, then JupyterLab shuts down.
The notebook finds the server through AIOS_URL / AIOS_TOKEN in JupyterLab's environment.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["free_port", "run_demo"]

NOTEBOOK = "01_live_dashboard.ipynb"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _wait_for_lab(port: int, token: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(args: argparse.Namespace) -> int:
    """Start both processes, print both URLs, wait for Ctrl-C, stop both."""
    # SIGTERM (e.g. from a process manager) stops both children like Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(__file__).resolve().parent.parent
    notebooks = root / "notebooks"
    port = args.port or free_port()
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "AIOS_URL": f"ws://127.0.0.1:{port}/ws", "AIOS_TOKEN": token}
    server = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--speed", str(args.speed), "--scenario", args.scenario, "--seed", str(args.seed)],
        env=env,  # serve takes its token from AIOS_TOKEN: it never shows in the process list
        stdout=subprocess.DEVNULL,
    )
    children = [server]
    try:
        if not _wait_for_port(port, server, timeout=30):
            print("aios-notebook demo: the reference server did not start", file=sys.stderr)
            return 1
        print(f"reference server  ws://127.0.0.1:{port}/ws  (REST http://127.0.0.1:{port}/api, "
              f"speed x{args.speed:g}, scenario {args.scenario})")
        if args.no_lab:
            print("Ctrl-C stops it.")
            server.wait()
            return 0
        lab_token = secrets.token_hex(16)
        lab_cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
            "--port", str(args.lab_port), f"--IdentityProvider.token={lab_token}",
            f"--ServerApp.root_dir={notebooks}", f"--LabApp.default_url=/lab/tree/{NOTEBOOK}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lab_cmd.append("--allow-root")
        lab = subprocess.Popen(lab_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        children.append(lab)
        if not _wait_for_lab(args.lab_port, lab_token, lab, timeout=90):
            print(f"aios-notebook demo: JupyterLab did not start on port {args.lab_port} "
                  "(is the port in use? try --lab-port)", file=sys.stderr)
            return 1
        print(f"JupyterLab        http://127.0.0.1:{args.lab_port}/lab/tree/{NOTEBOOK}?token={lab_token}")
        print("Open the JupyterLab URL and run all cells. Ctrl-C stops both.")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT if child is server else signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
