"""``aios-notebook backtest RULES.py --log FILE [--labels FILE] [-o firings.csv]``.

Its options are declared in :mod:`aios_notebook.cli`; this module runs it: load the rules, replay
the recording through them, print what fired (and the scores when labels are given), write the
firings as CSV.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import pandas as pd

from ..exceptions import AIOSError, CorruptLog
from ..store import EventStore
from .api import format_duration

__all__ = ["firings_csv", "run_backtest"]


def firings_csv(firings: pd.DataFrame, path: str) -> None:
    """Write firings as CSV: times in ISO 8601, evidence and metadata as JSON text."""
    out = firings.copy()
    for column in ("evidence", "metadata"):
        out[column] = [json.dumps(v, sort_keys=True, default=str) for v in out[column]]
    out.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")


def _table(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_timedelta64_dtype(shown[column]):  # "5m", "1h30m", not "0 days 00:05:00"
            shown[column] = shown[column].map(lambda v: "-" if pd.isna(v) else format_duration(v.value))
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "-" if v != v else f"{v:.2f}")
    return shown.to_string(index=False)


def run_backtest(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the ``backtest`` subcommand; 0 on success, 1 when something could not be done."""
    from .backtest import backtest, load_rules
    from .scoring import score

    out = out or sys.stdout
    began = time.perf_counter()
    on_error = getattr(args, "on_error", "raise")
    try:
        rules = load_rules(args.rules)
        archive = getattr(args, "archive", None)
        if (archive is None) == (args.log is None):
            print("aios-notebook backtest: give the history as --log FILE (a recording) or --archive DIR "
                  "(a Parquet archive), one of them", file=sys.stderr)
            return 2
        if archive is not None:  # chunks on Dask workers: local processes, or a scheduler's
            from ..history import Archive

            firings = backtest(rules, Archive(archive), engine="dask", client=getattr(args, "scheduler", None),
                               workers=getattr(args, "workers", None), progress=out is sys.stdout)
        else:
            # with --on-error skip the damaged lines are left out (one warning per file) before the run
            source = args.log if on_error == "raise" else EventStore.load(args.log, on_error="skip")
            firings = backtest(rules, source)
        scores = score(firings, args.labels, rules=rules) if args.labels else None
    except CorruptLog as exc:
        hint = "; --on-error skip leaves damaged lines out" if exc.line else ""
        print(f"aios-notebook backtest: {exc}{hint}", file=sys.stderr)
        return 1
    except (AIOSError, OSError) as exc:
        print(f"aios-notebook backtest: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - began
    attrs: dict[str, Any] = firings.attrs
    span = f"{attrs.get('start')} .. {attrs.get('end')}" if attrs.get("start") is not None else "no events"
    print(f"{attrs.get('events', 0):,} events ({span}), {len(rules)} rules, "
          f"{attrs.get('evaluations', 0):,} evaluations, {len(firings)} firings in {elapsed:.1f} s", file=out)
    counts = firings["rule"].value_counts() if len(firings) else pd.Series(dtype=int)
    for r in rules:
        print(f"  {r.name:<24} every {format_duration(r.every_ns)}  window {format_duration(r.window_ns)}  "
              f"fired {int(counts.get(r.name, 0))}", file=out)
    for message in attrs.get("errors", [])[:10]:
        print(f"  rule error: {message}", file=out)
    if scores is not None:
        print(f"\nscores against {args.labels}:", file=out)
        print(_table(scores.drop(columns=["detects"])), file=out)
    if args.output:
        try:
            firings_csv(firings, args.output)
        except OSError as exc:
            print(f"aios-notebook backtest: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"\nwrote {len(firings)} firings to {args.output}", file=out)
    return 0
