"""``aios-notebook serve``: the reference server in the foreground until SIGINT / SIGTERM.

The options are declared in ``aios_notebook/cli.py``; this runs them. At start it prints the
WebSocket and REST URLs and the token (a random one; a token given with ``--token`` or
``AIOS_TOKEN`` is not printed). On SIGINT or SIGTERM every client gets
``connection_error server_shutdown`` and close 1001 before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from ..exceptions import ConfigurationError
from .simulator import Simulator, is_loopback

__all__ = ["run_serve"]


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT / SIGTERM; the process exit code."""
    given = args.token or os.environ.get("AIOS_TOKEN") or None
    try:
        simulator = Simulator(
            seed=args.seed,
            speed=args.speed,
            scenario=args.scenario,
            token=given,
            host=args.host,
            port=args.port,
            heartbeat=args.heartbeat,
            scenario_params=getattr(args, "scenario_params", None),
        )
    except ConfigurationError as exc:
        print(f"aios-notebook serve: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(
            f"aios-notebook serve: warning: binding {args.host}, not 127.0.0.1: other machines can reach "
            "this server, and the WebSocket and REST traffic is not encrypted",
            file=sys.stderr,
        )
    try:
        return asyncio.run(_serve(simulator, args, token_given=given is not None))
    except ConfigurationError as exc:
        print(f"aios-notebook serve: {exc}", file=sys.stderr)
        return 2


async def _serve(simulator: Simulator, args: argparse.Namespace, token_given: bool) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await simulator.start()
    try:
        if args.labels:
            path = Path(args.labels)
            text = json.dumps(simulator.labels_document(), indent=2) + "\n"
            try:
                await asyncio.to_thread(path.write_text, text, encoding="utf-8")
            except OSError as exc:
                raise ConfigurationError(f"cannot write the labels to {path}: {exc.strerror or exc}") from None
        shaped = "".join(f", {k}={v}" for k, v in simulator.shaped_scenario.given.items())
        print(f"AIOS v2 reference server: scenario {simulator.scenario}{shaped}, seed {simulator.seed}, "
              f"speed x{simulator.speed:g}")
        print(f"  WebSocket  {simulator.url}")
        print(f"  REST       {simulator.http_url}/api/")
        if token_given:  # the user has it already: a secret is not printed needlessly
            print("  token      as given (--token or AIOS_TOKEN)")
        else:
            print(f"  token      {simulator.token}")
        if args.labels:
            print(f"  labels     {args.labels}")
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        await stop.wait()
        print("shutting down: telling clients (connection_error server_shutdown, close 1001)", flush=True)
    finally:
        await simulator.close()
    return 0
