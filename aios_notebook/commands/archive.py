"""The ``archive`` subcommand (its options are declared in ``aios_notebook.cli``):

- ``aios-notebook archive URL -o archive/``: append a server's stream to an archive, live;
- ``aios-notebook archive convert 'recordings/*.jsonl.gz' -o archive/``: convert recordings.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from ..client import AIOSClient
from ..exceptions import AIOSError
from ..history.convert import convert
from .streaming import (
    DiscardStore,
    connection_options,
    first_connection,
    follow,
    quiet_client_log,
    stop_on_signals,
)

__all__ = ["run_archive", "run_convert"]


def run_archive(args: argparse.Namespace) -> int:
    """``archive URL`` or ``archive convert GLOB...``: returns the exit code."""
    if args.target == "convert":
        return run_convert(args)
    if args.sources:
        print(f"aios-notebook archive: unexpected argument(s) after the URL: {' '.join(args.sources)} "
              f"(to convert recordings: aios-notebook archive convert 'recordings/*.jsonl.gz' -o DIR)",
              file=sys.stderr)
        return 2
    return _run_live(args)


def run_convert(args: argparse.Namespace) -> int:
    """``aios-notebook archive convert GLOB... -o DIR [--workers N]``."""
    if not args.sources:
        print("aios-notebook archive convert: name the recordings, e.g. 'recordings/*.jsonl.gz'", file=sys.stderr)
        return 2
    try:
        result = convert(args.sources, args.output, workers=args.workers, progress=not args.quiet,
                         on_error=args.on_error)
    except (AIOSError, OSError) as exc:
        print(f"aios-notebook archive convert: {exc}", file=sys.stderr)
        return 1
    for path in result.skipped:
        print(f"skipped {path}: converted into {args.output} before", file=sys.stderr)
    print(f"converted {len(result.converted)} recording(s), {result.events:,} events "
          f"({result.events_per_second:,.0f} events/s), {result.rows:,} rows into {result.archive}",
          file=sys.stderr)
    return 0


def _run_live(args: argparse.Namespace) -> int:
    options = connection_options(args, "archive")
    if options is None:
        return 2
    token, types = options
    try:
        # frames only, as a recording: REST snapshots are not frames
        client = AIOSClient(args.target, token, types=types, store=DiscardStore(),
                            max_reconnects=args.max_reconnects, snapshots=False)
        archiver = client.archive(args.output, interval=args.interval, rows=args.rows)
    except (AIOSError, OSError) as exc:
        print(f"aios-notebook archive: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    code = 0
    print(f"archiving {client.url} ({', '.join(types)}) into {args.output}; Ctrl-C stops", file=sys.stderr)
    tty = sys.stderr.isatty()
    shown = 0.0

    def tick() -> None:
        nonlocal shown
        if not args.quiet and (tty or time.monotonic() - shown >= 10):  # a log gets a line every 10 s
            shown = time.monotonic()
            line = f"archived {archiver.frames:,} frames, {archiver.rows:,} rows written"
            sys.stderr.write(("\r\x1b[K" if tty else "") + line + ("" if tty else "\n"))
            sys.stderr.flush()

    with stop_on_signals(stop), quiet_client_log():
        client.start()
        try:
            failed = first_connection(client, wait=args.wait, stop=stop)
            if failed is not None:
                print(f"aios-notebook archive: {failed}; nothing archived", file=sys.stderr)
                return 1
            code = follow(client, stop, duration=args.duration, tick=tick, written=lambda: archiver.error,
                          token_env=args.token_env, token=token, command="archive")
        finally:
            client.stop()
            archiver.stop()
    print(f"\narchived {archiver.frames:,} frames ({archiver.rows:,} rows) into {args.output}", file=sys.stderr)
    return code
