"""``aios-notebook demo`` (``make demo``): the reference server and JupyterLab on the live dashboard.

Both run as child processes so that Ctrl-C (or SIGTERM) stops them together: the server first
sends ``connection_error server_shutdown`` to the notebook's client, then JupyterLab shuts down.
The notebook finds the server through AIOS_URL / AIOS_TOKEN in JupyterLab's environment.

The children run in sessions of their own: a Ctrl-C in the terminal reaches this process only,
which stops them in order and exits 0 (``make demo`` then ends without ``Error 1``). When the
JupyterLab port (8888) is taken, another one is used and said so; every wait is announced on
stderr as it begins, and repeated while it lasts, so the demo is never silent.
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

__all__ = ["DEFAULT_LAB_PORT", "free_port", "port_taken", "run_demo"]

NOTEBOOK = "01_live_dashboard.ipynb"
#: JupyterLab's usual port; when something (often another Jupyter) holds it, any free port
DEFAULT_LAB_PORT = 8888
#: seconds between "still waiting" lines
_NAG = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something listens on, or holds, ``port`` of 127.0.0.1."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _nagging(what: str, began: float, last: list[float]) -> None:
    """A "still waiting" line every few seconds while a child starts."""
    now = time.monotonic()
    if now - last[0] >= _NAG:
        last[0] = now
        _say(f"  still waiting for {what} ({now - began:.0f} s)")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    began = time.monotonic()
    deadline, last = began + timeout, [began]
    while time.monotonic() < deadline:
        _nagging("the reference server", began, last)
        if process.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _wait_for_lab(port: int, token: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    began = time.monotonic()
    deadline, last = began + timeout, [began]
    url = f"http://127.0.0.1:{port}/api/status?token={token}"
    while time.monotonic() < deadline:
        _nagging("JupyterLab", began, last)
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


def _lab_port(asked: int | None) -> int | None:
    """The JupyterLab port: ``--lab-port`` as given (None if taken), else 8888 or a free one."""
    if asked:
        return None if port_taken(asked) else asked
    if not port_taken(DEFAULT_LAB_PORT):
        return DEFAULT_LAB_PORT
    port = free_port()
    _say(f"port {DEFAULT_LAB_PORT} is taken (another JupyterLab?): JupyterLab uses port {port} instead")
    return port


def run_demo(args: argparse.Namespace) -> int:
    """Start both processes, print both URLs, wait for Ctrl-C, stop both."""
    # SIGTERM (e.g. from a process manager) stops both children like Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[subprocess.Popen[bytes]] = []
    try:
        return _run(args, children)
    except KeyboardInterrupt:
        return 0
    finally:
        # a second Ctrl-C while stopping must not leave the children behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop(children)


def _run(args: argparse.Namespace, children: list[subprocess.Popen[bytes]]) -> int:
    root = Path(__file__).resolve().parent.parent
    notebooks = root / "notebooks"
    lab_port = None if args.no_lab else _lab_port(args.lab_port)
    if not args.no_lab and lab_port is None:
        _say(f"aios-notebook demo: port {args.lab_port} is taken: choose another --lab-port, "
             f"or leave it out for a free one")
        return 2
    port = args.port or free_port()
    token = secrets.token_urlsafe(16)
    env = {**os.environ, "AIOS_URL": f"ws://127.0.0.1:{port}/ws", "AIOS_TOKEN": token}
    _say(f"starting the reference server on port {port} ...")
    server = subprocess.Popen(
        [sys.executable, "-m", "aios_notebook", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--speed", str(args.speed), "--scenario", args.scenario, "--seed", str(args.seed)],
        env=env,  # serve takes its token from AIOS_TOKEN: it never shows in the process list
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # the terminal's Ctrl-C is ours to pass on, in order
    )
    children.append(server)
    if not _wait_for_port(port, server, timeout=30):
        _say("aios-notebook demo: the reference server did not start")
        return 1
    print(f"reference server  ws://127.0.0.1:{port}/ws  (REST http://127.0.0.1:{port}/api, "
          f"speed x{args.speed:g}, scenario {args.scenario})", flush=True)
    if args.no_lab:
        print("Ctrl-C stops it.", flush=True)
        server.wait()
        return 0
    assert lab_port is not None  # checked above: narrowed for the type checker
    lab_token = secrets.token_hex(16)
    lab_cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1",
        # port_retries=0: JupyterLab must not move to another port behind our back
        "--port", str(lab_port), "--ServerApp.port_retries=0", f"--IdentityProvider.token={lab_token}",
        f"--ServerApp.root_dir={notebooks}", f"--LabApp.default_url=/lab/tree/{NOTEBOOK}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lab_cmd.append("--allow-root")
    _say(f"starting JupyterLab on port {lab_port} (about 5 to 20 s) ...")
    lab = subprocess.Popen(lab_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    children.append(lab)
    if not _wait_for_lab(lab_port, lab_token, lab, timeout=90):
        _say(f"aios-notebook demo: JupyterLab did not start on port {lab_port}")
        return 1
    print(f"JupyterLab        http://127.0.0.1:{lab_port}/lab/tree/{NOTEBOOK}?token={lab_token}")
    print("Open the JupyterLab URL and run all cells. Ctrl-C stops both.", flush=True)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    stopped = next(child for child in children if child.poll() is not None)
    _say(f"aios-notebook demo: {'the reference server' if stopped is server else 'JupyterLab'} stopped "
         f"(exit {stopped.returncode}); stopping the other")
    return 1


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """The server first (it tells the notebook's client), then JupyterLab."""
    if any(child.poll() is None for child in children):
        _say("stopping ...")
    for index, child in enumerate(children):
        if child.poll() is None:
            child.send_signal(signal.SIGINT if index == 0 else signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
