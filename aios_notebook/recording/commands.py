"""The ``record`` and ``replay`` subcommands (their options are declared in ``aios_notebook.cli``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..exceptions import AIOSError, ConfigurationError

__all__ = ["format_bytes", "run_record", "run_replay"]


def format_bytes(size: float) -> str:
    """``1234567`` -> ``"1.2 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


class _DiscardStore:
    """The client wants a store to feed; a recording needs none (and should not grow in memory)."""

    def ingest_frame(self, frame: Any, received_at: Any = None) -> None:
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


def run_record(args: argparse.Namespace) -> int:
    """``aios-notebook record URL --token-env VAR -o FILE``: returns the exit code."""
    from ..client import AIOSClient
    from ..protocol.models import SUBSCRIPTION_TYPES

    token = os.environ.get(args.token_env) or None
    if token is None:
        print(f"aios-notebook record: the environment variable {args.token_env} is not set "
              f"(it must hold the token)", file=sys.stderr)
        return 2
    types = list(args.types) if args.types else list(SUBSCRIPTION_TYPES)
    unknown = sorted(set(types) - set(SUBSCRIPTION_TYPES))
    if unknown:
        print(f"aios-notebook record: unknown type(s) {', '.join(unknown)}; "
              f"known: {', '.join(SUBSCRIPTION_TYPES)}", file=sys.stderr)
        return 2
    rotate = int(args.rotate_mb * 1_000_000) if args.rotate_mb else None
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
    deadline = time.monotonic() + args.duration if args.duration else None
    with _stop_on_signals(stop):
        client.start()
        try:
            while not stop.is_set():
                timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
                if stop.wait(timeout):
                    break
                progress.update(recorder.events, recorder.bytes)
                if client.state == "auth_failed":
                    print(f"\naios-notebook record: {client.url} refused the token in {args.token_env}",
                          file=sys.stderr)
                    code = 1
                    break
                if client.state == "closed":
                    print(f"\naios-notebook record: gave up reconnecting to {client.url}", file=sys.stderr)
                    code = 1
                    break
                if recorder.error is not None:
                    print(f"\naios-notebook record: writing failed: {recorder.error}", file=sys.stderr)
                    code = 1
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            client.stop()
            recorder.stop()
    progress.update(recorder.events, recorder.bytes, final=True)
    parts = f" in {len(recorder.paths)} parts" if len(recorder.paths) > 1 else ""
    print(f"wrote {recorder.path}{parts}", file=sys.stderr)
    return code


def run_replay(args: argparse.Namespace) -> int:
    """``aios-notebook replay FILE --speed X``: serve a recording over the protocol until stopped."""
    from .replay import ReplayServer

    try:
        server = ReplayServer(args.file, speed=args.speed, loop=args.loop, token=args.token,
                              host=args.host, port=args.port, heartbeat=args.heartbeat,
                              on_error=args.on_error, wait_for_client=not args.no_wait)
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
