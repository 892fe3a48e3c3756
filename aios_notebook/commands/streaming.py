"""What the commands that stream from a server share (``record``, ``archive URL``): the token and
types they connect with, a first connection that must succeed within seconds or say why (instead
of retrying in silence for the whole duration; ``--wait`` keeps trying), and the loop that follows
the stream until a duration, Ctrl-C or a problem ends it, in command-line terms.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ..protocol.models import SUBSCRIPTION_TYPES

__all__ = ["FIRST_CONNECTION_TIMEOUT", "DiscardStore", "connection_options", "first_connection", "follow",
           "quiet_client_log", "stop_on_signals", "stream_problem"]

#: seconds the first connection may take before a command gives up (without --wait)
FIRST_CONNECTION_TIMEOUT = 15.0
#: the paths an AIOS server answers WebSockets on (the DAG app: /ws/dag-updates)
_WS_PATHS = ("/ws", "/ws/dag-updates")


def connection_options(args: argparse.Namespace, command: str) -> tuple[str | None, list[str]] | None:
    """The token (from ``--token-env``) and the event types (``--types``) a command connects
    with; None after saying on stderr what is wrong (the command then exits 2).

    With the default ``AIOS_TOKEN`` unset it connects without a token (the AIOS v2 backend's own
    apps take none; a server that wants one says so at once); a variable named with
    ``--token-env`` must be set."""
    token = os.environ.get(args.token_env) or None
    if token is None and args.token_env != "AIOS_TOKEN":
        print(f"aios-notebook {command}: the environment variable {args.token_env} is not set "
              f"(it must hold the token)", file=sys.stderr)
        return None
    if token is None:
        print("no AIOS_TOKEN set: connecting without a token", file=sys.stderr)
    types = list(args.types) if args.types else list(SUBSCRIPTION_TYPES)
    unknown = sorted(set(types) - set(SUBSCRIPTION_TYPES))
    if unknown:
        print(f"aios-notebook {command}: unknown type(s) {', '.join(unknown)}; "
              f"known: {', '.join(SUBSCRIPTION_TYPES)}", file=sys.stderr)
        return None
    return token, types


class DiscardStore:
    """The client wants a ``StreamSink`` to feed; a recording needs no store (and should not grow
    in memory)."""

    def ingest_frame(self, frame: Any, received_at: Any = None, *, received_ns: int | None = None) -> None:
        pass

    def add_gap(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_error(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (and SIGINT) end the command cleanly: a recording flushed (its gzip trailer written), an archive's last rows written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _connection_hint(url: str, problem: str) -> str:
    """What to try, in the terms of the command line."""
    path = urlsplit(url).path.rstrip("/") or "/"
    if "HTTP" in problem and path not in _WS_PATHS and "/ws" not in problem:
        parts = urlsplit(url)
        return f"AIOS servers take WebSockets on /ws: try {parts.scheme}://{parts.netloc}/ws"
    if "ConnectionRefused" in problem or "Connect call failed" in problem:
        return "nothing listens there: is the server running, on this host and port?"
    return ""


def first_connection(client: Any, *, wait: bool = False, timeout: float = FIRST_CONNECTION_TIMEOUT,
                     stop: threading.Event | None = None,
                     say: Callable[[str], None] | None = None) -> str | None:
    """Wait for a started client's first connection; None once its WebSocket is open, else why not.

    Without ``wait`` the first failed attempt (refused, handshake answered 403/404 or without an
    upgrade, no handshake within ``timeout`` s) ends the wait, and the returned text names the
    cause with a hint (the ``/ws`` path, a server that is not running). With ``wait`` it keeps
    trying until connected, the token is refused, or ``stop`` is set, telling ``say`` what it is
    waiting for at once and every 30 s.

    Args:
        client: an :class:`~aios_notebook.client.AIOSClient` after ``start()``.
        wait: keep trying after failures (``--wait``).
        timeout: seconds without a connection before giving up (without ``wait``).
        stop: set to end the wait early (Ctrl-C); then the text says it was stopped.
        say: where progress lines go (default: stderr).
    """
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    began = time.monotonic()
    told = -1e9
    while True:
        stats = client.stats
        state = client.state
        if stats.connections > 0:  # the socket opened: what the server says next is the caller's
            return None
        # the client's note of its next try is not news to someone told it gave up
        problem = re.sub(r"; reconnecting in [\d.]+ s$", "", stats.last_error or "")
        if state in ("auth_failed", "closed") and stats.connections == 0:
            problem = problem or f"the connection to {client.url} ended ({state})"
            hint = _connection_hint(client.url, problem)
            return f"{problem}{'; ' + hint if hint else ''}"
        if stats.failed_attempts and not wait:
            hint = _connection_hint(client.url, problem)
            return f"{problem}{'; ' + hint if hint else ''} (--wait keeps trying)"
        now = time.monotonic()
        if not wait and now - began >= timeout:
            return f"no connection to {client.url} within {timeout:g} s (--wait keeps trying)"
        if wait and now - told >= 30.0:
            told = now
            why = f" (last attempt: {problem})" if problem else ""
            say(f"waiting for {client.url} (--wait){why}; Ctrl-C stops")
        if stop is not None:
            if stop.wait(0.05):
                return f"stopped before {client.url} could be reached"
        else:
            time.sleep(0.05)


@contextmanager
def quiet_client_log() -> Iterator[None]:
    """The client's log lines off while a command reports the same failures in its own words."""
    logger = logging.getLogger("aios_notebook.client")
    handler = logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def stream_problem(client: Any, written: BaseException | None, token_env: str, token: str | None) -> str | None:
    """What ends a streaming command (``record``, ``archive``) early, in command-line terms: a
    refusal, giving up on reconnecting, or a failed write; None while all is well."""
    if client.state == "auth_failed":
        return f"{client.url} refused the token in {token_env}" if token is not None else (
            f"{client.url} wants a token: set {token_env}")
    if client.state == "closed":
        return f"gave up reconnecting to {client.url}"
    if written is not None:
        return f"writing failed: {written}"
    return None


def follow(client: Any, stop: threading.Event, *, duration: float | None, tick: Callable[[], None],
           written: Callable[[], BaseException | None], token_env: str, token: str | None, command: str) -> int:
    """Follow a connected client's stream until ``duration`` seconds have passed (from now: waiting
    for a server is not streaming), ``stop`` is set, or a problem ends it; ``tick`` every second
    (progress). Returns the exit code: 1 after saying what ended it early, else 0."""
    deadline = time.monotonic() + duration if duration else None
    while not stop.is_set():
        timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        if stop.wait(timeout):
            break
        tick()
        problem = stream_problem(client, written(), token_env, token)
        if problem is not None:
            print(f"\naios-notebook {command}: {problem}", file=sys.stderr)
            return 1
        if deadline is not None and time.monotonic() >= deadline:
            break
    return 0
