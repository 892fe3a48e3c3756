"""The ``aios-notebook`` command: serve | simulate | record | replay | backtest | report | demo.

The only module that wires every layer together. Each subcommand has an ``_add_<name>`` that
declares its options and a ``_run_<name>`` that imports its layer lazily (so ``aios-notebook
--help`` stays fast) and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the reference AIOS v2 server (WebSocket + REST)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--token", default=None,
                   help="auth token (default: $AIOS_TOKEN, else a random one, printed at start)")
    p.add_argument("--seed", type=int, default=7, help="workload seed (default 7)")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    p.add_argument("--heartbeat", type=float, default=30.0, help="ping interval in wall seconds (default 30)")
    p.add_argument("--scenario", default="steady", help="workload scenario (default steady; listed below)")
    _add_param(p)
    p.add_argument("--labels", default=None, metavar="FILE", help="write the scenario's ground-truth labels (JSON) here")
    p.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    import os

    from .server.cli import run_serve  # owned by the server layer: argument handling stays here

    if args.token is None:
        args.token = os.environ.get("AIOS_TOKEN") or None
    params = _scenario_params(args, "serve")
    if params is None:
        return 2
    args.scenario_params = params
    return run_serve(args)


def _scenario_epilog() -> str:
    """The scenarios, one line each, and the --param keys (for serve and simulate --help)."""
    from .server.scenarios import COMMON_PARAMS, SCENARIOS, TARGET_PARAMS

    width = max(map(len, SCENARIOS))
    lines = ["scenarios:"]
    lines += [f"  {name:<{width}}  {scenario.summary}" for name, scenario in SCENARIOS.items()]
    lines += ["", "--param KEY=VALUE (repeatable) reshapes the anomaly of any scenario but steady:"]
    lines += [f"  {key:<{width}}  {text}" for key, text in COMMON_PARAMS.items()]
    targets: dict[str, list[str]] = {}
    for name, keys in TARGET_PARAMS.items():
        for key in keys:
            targets.setdefault(key, []).append(name)
    lines += [f"  {key:<{width}}  the target ({', '.join(names)})" for key, names in targets.items()]
    lines.append(f"  {'...':<{width}}  and each scenario's own numbers (arrival_factor, failure_factor ...),"
                 " scaled by magnitude")
    return "\n".join(lines)


def _add_param(p: argparse.ArgumentParser) -> None:
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="reshape the scenario's anomaly, e.g. magnitude=0.5, length=2, job_type=audio (repeatable)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _scenario_epilog()


def _scenario_params(args: argparse.Namespace, command: str) -> dict[str, str] | None:
    """``--param`` items as a dict, checked against ``--scenario``; None (and a message) if bad."""
    from .exceptions import ConfigurationError
    from .server.scenarios import get_scenario, parse_param_assignments

    try:
        scenario = get_scenario(args.scenario)
    except ConfigurationError as exc:
        print(f"aios-notebook {command}: --scenario: {exc}", file=sys.stderr)
        return None
    try:
        params = parse_param_assignments(args.param)
        scenario.reshape(params)
    except ValueError as exc:  # ConfigurationError is a ValueError too
        valid = ", ".join(scenario.param_keys())
        message = str(exc)
        if valid and "valid keys" not in message:
            message += f" (valid keys for {scenario.name}: {valid})"
        print(f"aios-notebook {command}: --param: {message}", file=sys.stderr)
        return None
    return params


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a scenario's recording and labels offline, in seconds")
    p.add_argument("--scenario", default="steady", help="workload scenario (default steady; listed below)")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    p.add_argument("--seed", type=int, default=7, help="workload seed (default 7)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the recording (.jsonl, or .jsonl.gz to compress)")
    p.add_argument("--labels", default=None, metavar="FILE", help="write the ground-truth labels (JSON) here")
    p.add_argument("--force", action="store_true", help="replace existing files")
    _add_param(p)
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from .server.simulate import run_simulate

    params = _scenario_params(args, "simulate")
    if params is None:
        return 2
    return run_simulate(args, params)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the reference server + JupyterLab on the live dashboard")
    p.add_argument("--port", type=int, default=0, help="reference server port (default: a free one)")
    p.add_argument("--lab-port", type=int, default=None,
                   help="JupyterLab port (default 8888, or a free one when 8888 is taken)")
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    p.add_argument("--scenario", default="steady", help="workload scenario (default steady)")
    p.add_argument("--seed", type=int, default=7, help="workload seed (default 7)")
    p.add_argument("--no-lab", action="store_true", help="start only the reference server")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def _add_record(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a server's stream into a JSONL file (lossless, frames as received)")
    p.add_argument("url", help="the server's WebSocket, e.g. ws://127.0.0.1:8000/ws")
    p.add_argument("--token-env", default="AIOS_TOKEN", metavar="VAR",
                   help="environment variable holding the token (default AIOS_TOKEN; never pass a token on the command line)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the recording (.jsonl, or .jsonl.gz to compress)")
    p.add_argument("--types", nargs="+", default=None, metavar="TYPE", help="subscription types (default: all)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--rotate-mb", type=float, default=None, metavar="MB", help="start a new part every MB megabytes")
    p.add_argument("--flush-interval", type=float, default=0.5, metavar="S", help="seconds between flushes to disk (default 0.5)")
    p.add_argument("--max-reconnects", type=int, default=None, metavar="N", help="give up after N failed reconnects in a row")
    p.add_argument("--force", action="store_true", help="replace an existing recording")
    p.add_argument("--wait", action="store_true",
                   help="keep trying until the server answers (default: fail within seconds when the first "
                        "connection cannot be made)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(run=_run_record)


def _run_record(args: argparse.Namespace) -> int:
    from .commands.recording import run_record

    return run_record(args)


def _add_replay(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="serve a recording over the AIOS v2 protocol, like the reference server")
    p.add_argument("file", help="the recording (a file or a glob of rotated parts)")
    p.add_argument("--speed", type=float, default=1.0, help="recorded seconds per wall second (default 1)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--token", default=None, help="auth token (default: AIOS_TOKEN, else a random one, printed at start)")
    p.add_argument("--loop", action="store_true", help="start again from the beginning when the recording ends")
    p.add_argument("--no-wait", action="store_true", help="start the recording at once (default: when a client subscribes)")
    p.add_argument("--heartbeat", type=float, default=30.0, help="ping interval in wall seconds (default 30)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="a damaged recording: stop (raise) or skip the damage")
    p.set_defaults(run=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    import os

    from .commands.recording import run_replay

    if args.token is None:
        args.token = os.environ.get("AIOS_TOKEN") or None
    return run_replay(args)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="execute a notebook with parameters and write a self-contained HTML report")
    p.add_argument("notebook", help="the notebook, e.g. notebooks/04_weekly_report.ipynb")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML report to write")
    p.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="a value for the notebook's parameters cell (repeatable)")
    p.add_argument("--show-code", action="store_true", help="include the code cells (default: outputs only)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="seconds one cell may run (default 600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from .reports import run_report

    return run_report(args)


def _add_backtest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="evaluate insight rules on a recording, as they would have run live")
    p.add_argument("rules", metavar="RULES.py",
                   help="a Python file defining rules (@rule, or a RULES list); 'builtins' for the built-in library")
    p.add_argument("--log", default=None, metavar="FILE", help="the recording (JSONL, .gz, or a glob of parts)")
    p.add_argument("--archive", default=None, metavar="DIR",
                   help="a Parquet archive instead of --log: backtested in chunks on Dask workers")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --archive: Dask worker processes on this machine (default: every core)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="with --archive: a Dask scheduler's address (tcp://host:8786) instead of local workers")
    p.add_argument("--labels", default=None, metavar="FILE", help="ground-truth labels (JSON): print the scores")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the firings here (CSV)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="a damaged recording: stop (raise) or leave the damaged lines out (skip)")
    p.set_defaults(run=_run_backtest)


def _missing(command: str, paths: dict[str, str | None]) -> str | None:
    """``"aios-notebook backtest: my_rules.py: no such file (RULES.py)"`` for the first file not there."""
    from pathlib import Path

    for what, path in paths.items():
        if path and not any(ch in path for ch in "*?[") and not Path(path).exists():
            return f"aios-notebook {command}: {path}: no such file ({what})"
    return None


def _run_backtest(args: argparse.Namespace) -> int:
    from .rules.command import run_backtest

    rules = None if args.rules == "builtins" else args.rules
    missing = _missing("backtest", {"RULES.py": rules, "--log": args.log, "--labels": args.labels})
    if missing:
        print(missing, file=sys.stderr)
        return 1
    return run_backtest(args)


def _add_archive(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="append a server's stream (or convert recordings) to a Parquet archive",
                       description="aios-notebook archive URL -o DIR: archive a live stream; "
                                   "aios-notebook archive convert 'recordings/*.jsonl.gz' -o DIR: convert recordings")
    p.add_argument("target", metavar="URL|convert", help="the server's WebSocket (ws://.../ws), or 'convert'")
    p.add_argument("sources", nargs="*", metavar="RECORDING", help="with convert: recordings (files or globs)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the archive's folder (made when missing)")
    p.add_argument("--token-env", default="AIOS_TOKEN", metavar="VAR",
                   help="environment variable holding the token (default AIOS_TOKEN; never pass a token on the command line)")
    p.add_argument("--types", nargs="+", default=None, metavar="TYPE", help="subscription types (default: all)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between writes (default 60)")
    p.add_argument("--rows", type=int, default=100_000, metavar="N", help="write sooner at N frames (default 100000)")
    p.add_argument("--max-reconnects", type=int, default=None, metavar="N", help="give up after N failed reconnects in a row")
    p.add_argument("--wait", action="store_true",
                   help="keep trying until the server answers (default: fail when the first connection cannot be made)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="convert: processes (default: every core)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="convert: a damaged recording stops the conversion (raise) or its damage is skipped")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(run=_run_archive)


def _run_archive(args: argparse.Namespace) -> int:
    from .commands.archive import run_archive

    return run_archive(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``aios-notebook`` command."""
    parser = argparse.ArgumentParser(
        prog="aios-notebook",
        description="Jupyter kit for the AIOS v2 event stream.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_serve(sub)
    _add_simulate(sub)
    _add_demo(sub)
    _add_record(sub)
    _add_replay(sub)
    _add_report(sub)
    _add_backtest(sub)
    _add_archive(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """The kit's warnings on the command line: one line, no Python source line under it."""
    from .exceptions import AIOSWarning

    if issubclass(category, AIOSWarning):
        return f"aios-notebook: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m aios_notebook``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    finally:
        warnings.formatwarning = _python_format


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
