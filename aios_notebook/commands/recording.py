"""The ``record`` and ``replay`` subcommands (their options are declared in ``aios_notebook.cli``);
what ``record`` shares with ``archive URL`` is :mod:`.streaming`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from ..client import AIOSClient
from ..exceptions import AIOSError, ConfigurationError, CorruptLog
from .streaming import (
    FIRST_CONNECTION_TIMEOUT,
    DiscardStore,
    connection_options,
    first_connection,
    follow,
    quiet_client_log,
    stop_on_signals,
    stream_problem,
)

# the streaming names stay importable from here, where they were first
__all__ = ["FIRST_CONNECTION_TIMEOUT", "first_connection", "format_bytes", "quiet_client_log",
           "run_record", "run_replay", "stream_problem"]


def format_bytes(size: float) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


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


def _remove_empty(paths: list[Path]) -> None:
    """A recording that holds no event is not left behind to be mistaken for one."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def run_record(args: argparse.Namespace) -> int:
    """``aios-notebook record URL --token-env VAR -o FILE``: returns the exit code."""
    options = connection_options(args, "record")
    if options is None:
        return 2
    token, types = options
    rotate = int(args.rotate_mb * 1_000_000) if args.rotate_mb else None
    output = Path(args.output)
    if output.exists() and not args.force:
        print(f"aios-notebook record: {output} is already there: --force replaces it, "
              f"or choose another -o", file=sys.stderr)
        return 2
    try:
        # no REST snapshots: they are not frames, and a recording holds frames only
        client = AIOSClient(args.url, token, types=types, store=DiscardStore(),
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
    with stop_on_signals(stop), quiet_client_log():
        client.start()
        try:
            failed = first_connection(client, wait=args.wait, stop=stop)
            if failed is not None:
                client.stop()
                recorder.stop()
                _remove_empty(recorder.paths)
                print(f"aios-notebook record: {failed}; nothing recorded", file=sys.stderr)
                return 1
            code = follow(client, stop, duration=args.duration,
                          tick=lambda: progress.update(recorder.events, recorder.bytes),
                          written=lambda: recorder.error, token_env=args.token_env, token=token, command="record")
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
    with stop_on_signals(stop):
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
