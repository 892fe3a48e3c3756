"""The ``record`` and ``replay`` subcommands (their options are declared in ``aios_notebook.cli``).

:func:`first_connection` is shared by every command that streams from a server (``record``,
``archive``): the first connection must succeed within seconds, or the command says why and exits
non-zero, instead of retrying in silence for its whole duration (``--wait`` keeps trying).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..exceptions import AIOSError, ConfigurationError, CorruptLog

__all__ = ["FIRST_CONNECTION_TIMEOUT", "first_connection", "format_bytes", "quiet_client_log",
           "run_record", "run_replay", "stream_problem"]

#: seconds the first connection may take before a command gives up (without --wait)
FIRST_CONNECTION_TIMEOUT = 15.0
#: the paths an AIOS server answers WebSockets on (the DAG app: /ws/dag-updates)
_WS_PATHS = ("/ws", "/ws/dag-updates")


def format_bytes(size: float) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


class _DiscardStore:
    """The client wants a ``StreamSink`` to feed; a recording needs no store (and should not grow
    in memory)."""

    def ingest_frame(self, frame: Any, received_at: Any = None, *, received_ns: int | None = None) -> None:
        pass

    def add_gap(self, *args: Any, **kwargs: Any) -> None:
        pass

    def add_error(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (and SIGINT) end the recording cleanly: flushed, gzip trailer written."""
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


class _Progress:
    """One line on stderr: events, rate and file size; rewritten in place on a terminal."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last = (time.monotonic(), 0)
        self._printed_at = 0.0

    def update(self, events: int, size: int, final: bool = False) -> None:
        now = time.monotonic()
        then, before = self._last
        rate = (events - before) / (now - then) if now > then else 0.0
        self._last = (now, events)
        if not self.enabled:
            return
        # on a terminal every second; in a log every 10 s, so a long recording stays readable
        if not final and not self.tty and now - self._printed_at < 10.0:
            return
        self._printed_at = now
        line = f"recorded {events:,} events  {rate:,.1f} events/s  {format_bytes(size)}"
        end = "\n" if final or not self.tty else ""
        self.stream.write(("\r\x1b[K" if self.tty else "") + line + end)
        self.stream.flush()


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


def _remove_empty(paths: list[Path]) -> None:
    """A recording that holds no event is not left behind to be mistaken for one."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


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


def run_record(args: argparse.Namespace) -> int:
    """``aios-notebook record URL --token-env VAR -o FILE``: returns the exit code."""
    from ..client import AIOSClient
    from ..protocol.models import SUBSCRIPTION_TYPES

    token = os.environ.get(args.token_env) or None
    if token is None and args.token_env != "AIOS_TOKEN":
        print(f"aios-notebook record: the environment variable {args.token_env} is not set "
              f"(it must hold the token)", file=sys.stderr)
        return 2
    if token is None:  # a server without auth (the AIOS v2 backend's own app); one that wants a token says so
        print("no AIOS_TOKEN set: connecting without a token", file=sys.stderr)
    types = list(args.types) if args.types else list(SUBSCRIPTION_TYPES)
    unknown = sorted(set(types) - set(SUBSCRIPTION_TYPES))
    if unknown:
        print(f"aios-notebook record: unknown type(s) {', '.join(unknown)}; "
              f"known: {', '.join(SUBSCRIPTION_TYPES)}", file=sys.stderr)
        return 2
    rotate = int(args.rotate_mb * 1_000_000) if args.rotate_mb else None
    output = Path(args.output)
    if output.exists() and not args.force:
        print(f"aios-notebook record: {output} is already there: --force replaces it, "
              f"or choose another -o", file=sys.stderr)
        return 2
    try:
        # no REST snapshots: they are not frames, and a recording holds frames only
        client = AIOSClient(args.url, token, types=types, store=_DiscardStore(),
                            max_reconnects=args.max_reconnects, snapshots=False)
        # the recorder listens before the first connection, so not a frame is missed
        recorder = client.record(args.output, rotate_bytes=rotate, flush_interval=args.flush_interval,
                                 overwrite=args.force)
    except (AIOSError, OSError) as exc:
        print(f"aios-notebook record: {exc}", file=sys.stderr)
        return 2
    progress = _Progress(sys.stderr, enabled=not args.quiet)
    stop = threading.Event()
    code = 0
    print(f"recording {client.url} ({', '.join(types)}) into {recorder.path}; Ctrl-C stops",
          file=sys.stderr)
    with _stop_on_signals(stop), quiet_client_log():
        client.start()
        try:
            failed = first_connection(client, wait=args.wait, stop=stop)
            if failed is not None:
                client.stop()
                recorder.stop()
                _remove_empty(recorder.paths)
                print(f"aios-notebook record: {failed}; nothing recorded", file=sys.stderr)
                return 1
            # the duration counts from the first connection: waiting for a server is not recording
            deadline = time.monotonic() + args.duration if args.duration else None
            while not stop.is_set():
                timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                if stop.wait(timeout):
                    break
                progress.update(recorder.events, recorder.bytes)
                problem = stream_problem(client, recorder.error, args.token_env, token)
                if problem is not None:
                    print(f"\naios-notebook record: {problem}", file=sys.stderr)
                    code = 1
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            client.stop()
            recorder.stop()
    progress.update(recorder.events, recorder.bytes, final=True)
    if recorder.events == 0:
        _remove_empty(recorder.paths)
        print(f"aios-notebook record: no event arrived from {client.url}; nothing recorded "
              f"(removed the empty {recorder.path})", file=sys.stderr)
        return code or 1
    parts = f" in {len(recorder.paths)} parts" if len(recorder.paths) > 1 else ""
    print(f"wrote {recorder.path}{parts}: {recorder.events:,} events", file=sys.stderr)
    return code


def run_replay(args: argparse.Namespace) -> int:
    """``aios-notebook replay FILE --speed X``: serve a recording over the protocol until stopped."""
    # a recording of another dialect is served as it was sent
    from ..server.replay_dialect import open_replay

    try:
        server = open_replay(args.file, speed=args.speed, loop=args.loop, token=args.token,
                              host=args.host, port=args.port, heartbeat=args.heartbeat,
                              on_error=args.on_error, wait_for_client=not args.no_wait)
    except CorruptLog as exc:
        hint = "; --on-error skip leaves damaged lines out" if exc.line and args.on_error == "raise" else ""
        print(f"aios-notebook replay: {exc}{hint}", file=sys.stderr)
        return 2
    except (AIOSError, ConfigurationError) as exc:
        print(f"aios-notebook replay: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            server.start_in_thread()
        except (AIOSError, OSError, RuntimeError) as exc:
            print(f"aios-notebook replay: {exc}", file=sys.stderr)
            return 2
        try:
            source = server.source
            print(f"replaying {args.file} ({source.frames:,} frames, {source.duration_ms / 1000:,.1f} s recorded) "
                  f"at {args.speed:g}x on {server.url}", file=sys.stderr)
            # like `serve`: a token made up here must be shown, or nobody could connect
            if server.token is None:
                print("no token: the recorded server had no auth (dialect "
                      f"{server.dialect.name!r}, served as it sent its frames)", file=sys.stderr)
            else:
                print(f"token: {server.token}" if args.token is None else "token: as given", file=sys.stderr)
            if not args.no_wait:
                print("the recording starts when a client subscribes; Ctrl-C stops", file=sys.stderr)
            announced = False
            while not stop.wait(0.5):
                if server.finished and not announced:
                    announced = True  # keep serving: clients may still resync or ask REST
                    print(f"the recording is over ({server.sent:,} events sent); still serving, Ctrl-C stops",
                          file=sys.stderr)
        finally:
            server.stop()
    return 0
